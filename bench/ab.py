"""Two commits' service benchmarks side by side: `python -m bench.ab OLD [NEW] [--runs 3]`.

A refactor must not slow the service, but this machine is shared and noisy, and a ratio measured an hour ago on
another CPU says little. This checks both commits out as git worktrees (in a temporary directory), runs each one's
own `bench.service` (full mode, results to the temporary directory, README untouched) alternately, OLD first, and
prints, per line, the median over the runs of each commit's ratio to its in-run baseline, and the median absolute
figures. NEW defaults to the working tree (uncommitted changes included). Both runs use this venv, whose editable
install is shadowed by the worktree (each run starts with the worktree as its working directory and PYTHONPATH).
Writes bench/results/ab.json.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "ab.json"
# line id -> (the figure compared, higher is better)
FIGURES = {"api_get_job": ("ratio", True), "api_dry_run": ("ratio", True),
           "queue_to_start": ("delta_p50_ms", False), "upload_to_201": ("ratio", True),
           "metric_ingest": ("ratio", True)}
ABSOLUTE = {"api_get_job": ("req_per_s", "req/s"), "api_dry_run": ("req_per_s", "req/s"),
            "queue_to_start": ("p50_ms", "ms p50"), "upload_to_201": ("mib_per_s", "MiB/s"),
            "metric_ingest": ("req_per_s", "req/s")}


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def _run(tree: Path, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run([sys.executable, "-m", "bench.service", "--out", str(out), "--no-readme"], cwd=tree, env=env,
                   check=True)
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("old")
    ap.add_argument("new", nargs="?", help="a commit (default: the working tree)")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="taas-ab-"))
    trees = {}
    for label, ref in (("old", args.old), ("new", args.new)):
        if ref is None:
            trees[label] = (ROOT, "working tree")
            continue
        path = tmp / label
        _git("worktree", "add", "--detach", str(path), ref)
        trees[label] = (path, _git("rev-parse", "--short", ref))
    results: dict[str, list[dict]] = {"old": [], "new": []}
    try:
        for i in range(args.runs):
            for label in ("old", "new"):
                tree, name = trees[label]
                print(f"== run {i + 1}/{args.runs}: {label} ({name})", flush=True)
                results[label].append(_run(tree, tmp / f"{label}-{i}.json"))
    finally:
        for tree, _ in trees.values():
            if tree != ROOT:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    summary = {}
    print(f"\n{'line':16} {'old':>22} {'new':>22}   (median of {args.runs} runs; old {trees['old'][1]}, "
          f"new {trees['new'][1]})")
    for line_id, (figure, higher) in FIGURES.items():
        row = {}
        for label in ("old", "new"):
            lines = [next(x for x in r["lines"] if x["id"] == line_id) for r in results[label]]
            key, _ = ABSOLUTE[line_id]
            row[label] = {figure: statistics.median(x[figure] for x in lines),
                          key: statistics.median(x["service"][key] for x in lines),
                          "runs": [x[figure] for x in lines]}
        summary[line_id] = {**row, "higher_is_better": higher}
        key, unit = ABSOLUTE[line_id]

        def cell(r: dict, figure: str = figure, key: str = key, unit: str = unit) -> str:
            value = f"{r[figure]:.0%}" if figure == "ratio" else f"{r[figure]:+.1f} ms"
            return f"{value} ({r[key]:,.0f} {unit})"

        print(f"{line_id:16} {cell(row['old']):>22} {cell(row['new']):>22}")
    OUT.write_text(json.dumps({"date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "old": trees["old"][1],
                               "new": trees["new"][1], "runs": args.runs, "lines": summary,
                               "machine": results["new"][-1]["machine"]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
