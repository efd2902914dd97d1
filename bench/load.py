"""Load: 300 jobs from 30 concurrent clients against production mode (PostgreSQL, Redis, two workers).

Every job must reach a terminal state, none may be lost or run twice. Prints submit latency p50/p99 and jobs per
minute, writes bench/results/load.json, and deletes everything it created (database, processes, files).

Usage: make bench-load   (or: .venv/bin/python -m bench.load --jobs 300 --clients 30 --workers 2)
"""

import argparse
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.migrate import upgrade  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.factories import dataset_members, write_zip  # noqa: E402
from tests.procs import Proc, poll, taas, wait_healthy  # noqa: E402

# The servers: TAAS_TEST_PG (an admin URL; a database of the run's own is created and dropped there) and
# TAAS_TEST_REDIS, else the local ones on their default ports (not the test suite's private, fsync-less ones).
PG_ADMIN = os.environ.get("TAAS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TAAS_TEST_REDIS", "redis://127.0.0.1:6379/0")

TERMINAL = ("succeeded", "failed", "cancelled")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=300)
    ap.add_argument("--clients", type=int, default=30)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args()

    db = f"taas_load_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{db}"
    upgrade(url)
    tmp = Path(tempfile.mkdtemp(prefix="taas-load-"))
    port = free_port()
    env = {**os.environ, "TAAS_DATA_DIR": str(tmp / "data"), "TAAS_DATABASE_URL": url, "TAAS_BROKER_URL": REDIS_URL,
           "TAAS_QUEUE_NAME": f"load-{secrets.token_hex(4)}", "TAAS_SECRET_KEY": secrets.token_hex(16),
           "TAAS_WORKER_TOKEN": secrets.token_hex(16), "TAAS_PORT": str(port), "TAAS_RUN_REAPER": "1",
           "TAAS_API_URL": f"http://127.0.0.1:{port}", "TAAS_CACHE_DIR": str(tmp / "cache"),
           "TAAS_QUOTA_MAX_ACTIVE_JOBS": str(args.jobs + 10), "PYTHONUNBUFFERED": "1"}
    (tmp / "data").mkdir()
    procs: list[Proc] = []
    try:
        key = subprocess.run(taas("keys", "create", "--tenant", "load", "--scopes", "read,write"), env=env, cwd=ROOT,
                             check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        api = Proc(taas("api", "--workers", "2"), env, tmp / "api.log")
        procs.append(api)
        wait_healthy(env["TAAS_API_URL"], api)
        procs += [Proc(taas("worker"), {**env, "TAAS_WORKER_NAME": f"w{i}"}, tmp / f"worker{i}.log")
                  for i in range(args.workers)]
        result = run(env["TAAS_API_URL"], key, tmp, args)
    finally:
        for p in reversed(procs):
            p.stop()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
    print_table(result)
    out = ROOT / "bench" / "results" / "load.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if result["lost"] or result["run_twice"] or result["not_terminal"]:
        sys.exit(1)


def run(api_url: str, key: str, tmp: Path, args: argparse.Namespace) -> dict:
    http = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    path = write_zip(tmp / "twenty.zip", dataset_members(classes=2, per_class=10, size=16))
    with open(path, "rb") as f:
        ds = http.post("/v1/datasets", files={"file": (path.name, f)}).json()
    poll(lambda: http.get(f"/v1/datasets/{ds['id']}").json()["status"] == "ready", 60, "dataset ready")
    spec = {"dataset_id": ds["id"], "base_model": {"arch": "mobilenet_v3_small", "weights": "none"},
            "freeze": {"policy": "head_only"}, "hyperparameters": {"epochs": 1, "image_size": 32, "batch_size": 10}}

    def submit(i: int) -> tuple[str, float]:
        with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {key}",
                                                     "Idempotency-Key": f"load-{i}"}, timeout=60) as c:
            t = time.perf_counter()
            resp = c.post("/v1/jobs", json={**spec, "hyperparameters": {**spec["hyperparameters"], "seed": i}})
            elapsed = time.perf_counter() - t
        assert resp.status_code == 201, resp.text
        return resp.json()["id"], elapsed

    started = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        submitted = list(pool.map(submit, range(args.jobs)))
    ids = [i for i, _ in submitted]
    latencies = sorted(t for _, t in submitted)
    deadline = time.monotonic() + args.timeout
    statuses: dict[str, str] = {}
    while time.monotonic() < deadline:
        jobs = _all(http, "/v1/jobs")
        statuses = {j["id"]: j["status"] for j in jobs}
        if all(statuses.get(i) in TERMINAL for i in ids):
            break
        time.sleep(1.0)
    wall = time.perf_counter() - started
    runs = {i: [e for e in http.get(f"/v1/jobs/{i}/events", params={"limit": 1000}).json()["data"]
                if e["type"] == "status" and e["data"].get("to") == "running"] for i in ids}
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": _machine(),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                 text=True).stdout.strip(),
        "jobs": args.jobs, "clients": args.clients, "workers": args.workers,
        "submit_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "submit_p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 1),
        "wall_seconds": round(wall, 1), "jobs_per_minute": round(args.jobs / wall * 60, 1),
        "succeeded": sum(statuses.get(i) == "succeeded" for i in ids),
        "not_terminal": sum(statuses.get(i) not in TERMINAL for i in ids),
        "lost": len(set(ids) - set(statuses)),
        "run_twice": sum(len(r) > 1 for r in runs.values()),
    }
    for i in ids:  # delete what was created
        http.delete(f"/v1/jobs/{i}")
    for m in _all(http, "/v1/models"):
        http.delete(f"/v1/models/{m['id']}")
    http.delete(f"/v1/datasets/{ds['id']}")
    return result


def _all(http: httpx.Client, path: str) -> list[dict]:
    out, after = [], None
    while True:
        page = http.get(path, params={"limit": 100, **({"after": after} if after else {})}).json()
        out += page["data"]
        if not page["has_more"]:
            return out
        after = page["data"][-1]["id"]


def _machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return f"{os.cpu_count()} cores, {model}"


def print_table(r: dict) -> None:
    rows = [("jobs submitted", r["jobs"]), ("concurrent clients", r["clients"]), ("workers", r["workers"]),
            ("submit latency p50 (ms)", r["submit_p50_ms"]), ("submit latency p99 (ms)", r["submit_p99_ms"]),
            ("jobs per minute (end to end)", r["jobs_per_minute"]), ("succeeded", r["succeeded"]),
            ("not terminal", r["not_terminal"]), ("lost", r["lost"]), ("run twice", r["run_twice"])]
    print(f"\ntaas load: {r['machine']}, {r['date']}, commit {r['commit']}")
    for name, value in rows:
        print(f"  {name:<30} {value:>10}")


if __name__ == "__main__":
    main()
