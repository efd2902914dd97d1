"""The printed table of `make bench` and the README's "## Performance" section, both from the results JSON."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
HEADER = ("line", "service", "baseline", "ratio", "target", "met?")


def _met(line: dict) -> str:
    return {True: "yes", False: "NO", None: "n/a"}[line.get("met")]


def rows(result: dict) -> list[tuple[str, ...]]:
    return [(ln["line"], ln["service_text"], ln["baseline_text"], ln["ratio_text"], ln["target_text"], _met(ln))
            for ln in result["lines"]]


def table_text(result: dict) -> str:
    """A fixed-width table for the terminal."""
    body = rows(result)
    widths = [max(len(r[i]) for r in [HEADER, *body]) for i in range(len(HEADER))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*HEADER), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*r) for r in body]
    return "\n".join(out)


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|")


def table_markdown(result: dict) -> str:
    out = ["| " + " | ".join(HEADER) + " |", "| " + " | ".join("---" for _ in HEADER) + " |"]
    out += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows(result)]
    return "\n".join(out)


def section_markdown(result: dict) -> str:
    """The README's Performance section (a level-2 heading and everything up to the next one)."""
    m = result["machine"]
    commit = result["git"]["commit"][:12] + (" with local changes" if result["git"]["dirty"] else "")
    lines = [
        "## Performance",
        "",
        "`make bench` measures what the service itself costs, each line against a baseline taken in the same run "
        "(absolute times drift on a shared machine; the ratios are the point). It starts production mode on a "
        "private PostgreSQL database and Redis queue (uvicorn with one process per core, a Celery worker), drives "
        "HTTP load with `wrk` pinned to CPU 1, prints this table, writes `bench/results/latest.json`, rewrites "
        "this section from it and removes everything it started. `make bench-train` and `make bench-load` cover "
        "training speed and load.",
        "",
        f"Last run: {result['date']} on {m['nproc']} × {m['cpu_model']} ({m['memory_gib']} GiB, "
        f"{m['kernel']}), commit {commit}, {result['duration_s'] / 60:.1f} minutes"
        + (" (quick mode: smaller sizes, not comparable)" if result["mode"] == "quick" else "") + ".",
        "",
        table_markdown(result),
        "",
    ]
    lines += [f"- {note}" for note in result.get("notes", [])]
    return "\n".join(lines).rstrip() + "\n"


def update_readme(result: dict, readme: Path = README) -> None:
    """Replace (or insert before "## Architecture") the README's Performance section; nothing else changes."""
    text = readme.read_text()
    section = section_markdown(result)
    existing = re.search(r"^## Performance\n.*?(?=^## |\Z)", text, flags=re.S | re.M)
    if existing:
        text = text[: existing.start()] + section + "\n" + text[existing.end():].lstrip("\n")
    else:
        anchor = re.search(r"^## Architecture\n", text, flags=re.M)
        if anchor is None:
            text = text.rstrip("\n") + "\n\n" + section
        else:
            text = text[: anchor.start()] + section + "\n" + text[anchor.start():]
    readme.write_text(text)


def main() -> None:
    """`python -m bench.service_report [results.json]`: print the table and rewrite the README section."""
    import sys

    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "bench" / "results" / "latest.json"
    result = json.loads(path.read_text())
    print(table_text(result))
    update_readme(result)


if __name__ == "__main__":
    main()
