"""What the service itself costs, each line against a baseline taken in the same run (`make bench`).

Production mode on real components: a private PostgreSQL database (created here, migrated, dropped at the end), a
private Redis queue, `taas api --workers <nproc>` (uvicorn, one process per core) and a real Celery worker. HTTP
load comes from `wrk`, pinned to CPU 1. Lines:

- API: GET /v1/jobs/{id} and POST /v1/jobs?dry_run=true at 32 connections vs a bare FastAPI endpoint that
  returns a constant (bench/service_bare.py, same uvicorn settings). Target: >= 40% of the bare req/s.
- Queue to start: N jobs one at a time, each after the worker finished the previous one; submit (client clock,
  before the POST) -> claim (the job's `running` event) vs a raw Celery round trip of a no-op task on the same
  Redis with the same settings (bench/service_celery.py), interleaved. Target: p50 within 20 ms of the raw one.
- Upload: a large archive of JPEGs through `curl -F` (pinned to CPU 1): MiB/s to the 201 and to `ready`, the API
  worker processes' peak RSS growth, and validation images per CPU-second, vs a plain file copy (fsynced, as
  the service fsyncs before its 201) and a plain Pillow decode loop. Targets: 201 throughput >= 30% of the copy's,
  RSS growth < 64 MiB, validation >= 500 images/s per core.
- Metric ingest: 8 fake workers (one wrk connection each) posting per-epoch metrics for jobs they really claimed
  through /internal (so every post passes the attempt fence), every 10th post an idempotent retry, vs the bare
  app's route that parses the same body.

    python -m bench.service [--quick] [--out PATH] [--no-readme] [--upload-mib N] [--queue-jobs N] [--seconds S]

Prints one table, writes bench/results/latest.json (with the machine, date and commit) and rewrites the README's
"## Performance" section from it. `--quick` is for debugging: small sizes, results to a temporary file, README
untouched. Everything started here is stopped and removed at the end, also on Ctrl-C or SIGTERM.
"""

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.migrate import upgrade  # noqa: E402
from bench import service_report, service_upload  # noqa: E402
from bench import service_wrk as wrk  # noqa: E402
from bench.service_celery import PING_TASK, reply_key  # noqa: E402
from core.broker import celery_config  # noqa: E402
from core.settings import SharedSettings  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.factories import dataset_members, write_zip  # noqa: E402
from tests.procs import Proc, poll, taas, wait_healthy  # noqa: E402

# The servers: TAAS_TEST_PG (an admin URL; a database of the run's own is created and dropped there) and
# TAAS_TEST_REDIS, else the local ones on their default ports (not the test suite's private, fsync-less ones).
PG_ADMIN = os.environ.get("TAAS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TAAS_TEST_REDIS", "redis://127.0.0.1:6379/0")

RESULTS = ROOT / "bench" / "results" / "latest.json"
MiB = 1024**2
API_CONNECTIONS = 32
INGEST_WORKERS = 8
INGEST_EPOCHS = 200  # the spec's maximum: a fake worker posts epochs 1..200 of a job, then takes its next job
RETRY_EVERY = 10  # every 10th post repeats the previous one verbatim
PAUSE_S = 0.25  # between one queue sample and the next, after the worker reported the previous one finished
TERMINAL = ("succeeded", "failed", "cancelled")

FULL = {"seconds": 10.0, "warmup": 3.0, "rounds": 3, "queue_jobs": 100, "upload_mib": 500, "ingest_jobs": 3,
        "decode_images": 3000}
QUICK = {"seconds": 3.0, "warmup": 1.0, "rounds": 1, "queue_jobs": 6, "upload_mib": 24, "ingest_jobs": 1,
         "decode_images": 300}

TINY_SPEC = {"base_model": {"arch": "resnet18", "weights": "none"}, "freeze": {"policy": "none"},
             "hyperparameters": {"epochs": 1, "image_size": 16, "batch_size": 4}}
QUEUE_SPEC = {**TINY_SPEC, "base_model": {"arch": "mobilenet_v3_small", "weights": "none"}}
QUEUE_LEASE_S = "3"  # the queue phase's lease: a worker hears of a cancel at its next heartbeat (lease / 4)
# The README walk-through's job: Lite0 with ImageNet weights, head only.
DRY_RUN_SPEC = {"base_model": {"arch": "efficientnet_lite0", "weights": "imagenet"}, "freeze": {"policy": "head_only"},
                "hyperparameters": {"epochs": 3, "image_size": 64, "learning_rate": 0.01}}


def httpx_client_ms() -> float:
    """What building one httpx.Client costs here (the worker builds one per job): median of 7, in ms."""
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        httpx.Client(base_url="http://127.0.0.1:1", headers={"Authorization": "Bearer x"},
                     timeout=httpx.Timeout(60.0, connect=5.0)).close()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _ts(rfc3339: str) -> float:
    return datetime.strptime(rfc3339, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def _pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank on the sorted values, interpolated)."""
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


class Bench:
    """Owns every resource of one run; cleanup() removes them all."""

    def __init__(self, args: argparse.Namespace, cfg: dict):
        self.args, self.cfg = args, cfg
        self.tmp = Path(tempfile.mkdtemp(prefix="taas-bench-"))
        self.procs: list[Proc] = []
        self.db = f"taas_bench_{secrets.token_hex(4)}"
        self.db_created = False
        self.queue = f"taas-bench-{secrets.token_hex(4)}"
        self.raw_queue = f"{self.queue}-raw"
        self.redis = redis.Redis.from_url(REDIS_URL)
        self.nproc = os.cpu_count() or 1
        self.port, self.bare_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.bare_url = f"http://127.0.0.1:{self.bare_port}"
        self.worker_token = secrets.token_hex(16)
        self.api: Proc | None = None
        self.http: httpx.Client | None = None
        self.internal: httpx.Client | None = None
        self.key = ""
        self.overrides: dict[str, str] = {}
        self.bare: Proc | None = None

    # -- resources ---------------------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("TAAS_")}
        return {**base, **self.overrides, "TAAS_DATA_DIR": str(self.tmp / "data"), "TAAS_DATABASE_URL": self.db_url,
                "TAAS_BROKER_URL": REDIS_URL, "TAAS_QUEUE_NAME": self.queue, "TAAS_HOST": "127.0.0.1",
                "TAAS_SECRET_KEY": self.secret_key, "TAAS_WORKER_TOKEN": self.worker_token,
                "TAAS_PORT": str(self.port), "TAAS_API_URL": self.url, "TAAS_CACHE_DIR": str(self.tmp / "cache"),
                "TAAS_RUN_REAPER": "1", "TAAS_MAX_UPLOAD_BYTES": str(max(2 * 1024**3, 2 * self.upload_bytes)),
                "PYTHONUNBUFFERED": "1"}

    def setup(self, **overrides: str) -> None:
        self.secret_key = secrets.token_hex(16)
        self.upload_bytes = int(self.cfg["upload_mib"] * MiB)
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db}"')
        self.db_created = True
        self.db_url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{self.db}"
        upgrade(self.db_url)
        (self.tmp / "data").mkdir()
        env = self.env()
        log("importing EfficientNet-Lite0's ImageNet weights (the dry run resolves them)")
        subprocess.run(taas("weights", "import", "efficientnet_lite0"), env=env, cwd=ROOT, check=True,
                       capture_output=True)
        out = subprocess.run(taas("keys", "create", "--tenant", "bench", "--scopes", "read,write"), env=env,
                             cwd=ROOT, check=True, capture_output=True, text=True).stdout
        self.key = out.strip().splitlines()[-1]
        self.start_api(**overrides)
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=60)
        self.internal = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.worker_token}"},
                                     timeout=60)

    def start_api(self, **overrides: str) -> None:
        """(Re)start `taas api --workers <nproc>` with these TAAS_* settings on top of the run's."""
        if self.api is not None:
            self.stop(self.api)
        self.overrides = overrides
        log(f"starting the API: uvicorn with {self.nproc} worker processes" + (f", {overrides}" if overrides else ""))
        self.api = self.start(taas("api", "--workers", str(self.nproc)), f"api{len(self.procs)}")
        wait_healthy(self.url, self.api)

    def start(self, args: list[str], name: str, env: dict[str, str] | None = None) -> Proc:
        proc = Proc(args, env or self.env(), self.tmp / f"{name}.log")
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        self.procs.remove(proc)

    def clear_queues(self) -> None:
        """Drop this run's Redis keys (kombu's queue lists and bindings, the pings' reply lists)."""
        for pattern in (f"*{self.queue}*",):
            for key in self.redis.scan_iter(match=pattern, count=1000):
                self.redis.delete(key)

    def cleanup(self) -> None:
        for closeable in (self.http, self.internal):
            if closeable is not None:
                closeable.close()
        for proc in reversed(self.procs):
            try:
                proc.stop()
            except Exception as exc:  # keep cleaning
                log(f"could not stop a process: {exc}")
        self.procs.clear()
        if self.db_created:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
        try:
            self.clear_queues()
        except redis.RedisError as exc:
            log(f"could not clear the Redis keys: {exc}")
        shutil.rmtree(self.tmp, ignore_errors=True)

    def fail_log(self, proc: Proc, what: str) -> str:
        return f"{what}; last lines of {proc.log.name}:\n{proc.tail(3000)}"

    # -- helpers -----------------------------------------------------------------------------------------------

    def tiny_dataset(self) -> str:
        path = write_zip(self.tmp / "tiny.zip", dataset_members(classes=2, per_class=6, size=8))
        with open(path, "rb") as f:
            resp = self.http.post("/v1/datasets", files={"file": ("tiny.zip", f)}, data={"name": "tiny"})
        resp.raise_for_status()
        ds = resp.json()["id"]
        poll(lambda: self.http.get(f"/v1/datasets/{ds}").json()["status"] == "ready", 60, "tiny dataset ready")
        return ds

    def submit(self, spec: dict) -> dict:
        resp = self.http.post("/v1/jobs", json=spec)
        if resp.status_code != 201:
            raise RuntimeError(f"submit failed: {resp.status_code} {resp.text}")
        return resp.json()

    def wrk_once(self, url: str, script: str, conns: int, seconds: float, server: Proc) -> dict:
        """One wrk run, with the CPU time the server's uvicorn workers spent per request."""
        pids = service_upload.uvicorn_workers(server.p.pid)
        cpu0 = service_upload.cpu_seconds(pids)
        res = wrk.run(url, script, self.tmp, connections=conns, threads=2 if conns > 8 else conns, seconds=seconds)
        res["server_cpu_ms_per_req"] = (service_upload.cpu_seconds(pids) - cpu0) * 1e3 / max(res["requests"], 1)
        return res

    def wrk_many(self, targets: dict[str, tuple[str, str, int, Proc]], unit: str = "req/s") -> dict[str, list[dict]]:
        """Each target (url, script, connections, server): one warm-up, then `rounds` interleaved measured runs."""
        for url, script, conns, server in targets.values():
            self.wrk_once(url, script, conns, self.cfg["warmup"], server)
        out: dict[str, list[dict]] = {name: [] for name in targets}
        for r in range(self.cfg["rounds"]):
            for name, (url, script, conns, server) in targets.items():
                res = self.wrk_once(url, script, conns, self.cfg["seconds"], server)
                log(f"  round {r + 1} {name}: {res['req_per_s']:.0f} {unit}, p50 {res['p50_ms']:.1f} ms, "
                    f"p99 {res['p99_ms']:.1f} ms, {res['server_cpu_ms_per_req']:.2f} ms server CPU per request, "
                    f"retries {res['retries']}, non-2xx {res['non_2xx']}, socket errors {res['socket_errors']}")
                out[name].append(res)
        return out

    # -- lines -------------------------------------------------------------------------------------------------

    def api_and_ingest(self, tiny_ds: str) -> dict:
        log("API and metric ingest: starting the bare FastAPI app")
        bare = self.start([sys.executable, "-m", "bench.service_bare", "--port", str(self.bare_port), "--workers",
                           str(self.nproc)], "bare")
        wait_healthy(self.bare_url, bare)
        job = self.submit({"dataset_id": tiny_ds, **TINY_SPEC})  # stays queued: no worker runs yet
        auth = {"Authorization": f"Bearer {self.key}"}
        dry_body = json.dumps({"dataset_id": tiny_ds, **DRY_RUN_SPEC})
        check = self.http.post("/v1/jobs", params={"dry_run": "true"}, content=dry_body,
                               headers={"Content-Type": "application/json"})
        assert check.status_code == 200, check.text
        log(f"API lines: {API_CONNECTIONS} connections, {self.cfg['rounds']} × {self.cfg['seconds']:.0f} s each")
        api = self.wrk_many({
            "bare": (f"{self.bare_url}/v1/jobs/{job['id']}", wrk.get_script({}), API_CONNECTIONS, bare),
            "bare_sync": (f"{self.bare_url}/sync/v1/jobs/{job['id']}", wrk.get_script({}), API_CONNECTIONS, bare),
            "get_job": (f"{self.url}/v1/jobs/{job['id']}", wrk.get_script(auth), API_CONNECTIONS, self.api),
            "dry_run": (f"{self.url}/v1/jobs?dry_run=true", wrk.post_script(dry_body, auth), API_CONNECTIONS,
                        self.api),
        })

        log(f"metric ingest: {INGEST_WORKERS} fake workers claiming their jobs through /internal")
        ingest_spec = {"dataset_id": tiny_ds, **TINY_SPEC,
                       "hyperparameters": {**TINY_SPEC["hyperparameters"], "epochs": INGEST_EPOCHS}}
        claimed: list[tuple[str, int]] = []

        def claim_groups(per_worker: int) -> list[list[tuple[str, int]]]:
            groups = []
            for w in range(INGEST_WORKERS):
                group = []
                for _ in range(per_worker):
                    job_id = self.submit(ingest_spec)["id"]
                    resp = self.internal.post(f"/internal/jobs/{job_id}/claim", json={"worker": f"bench-fake-{w}"})
                    if resp.status_code != 200:
                        raise RuntimeError(f"claim failed: {resp.status_code} {resp.text}")
                    group.append((job_id, resp.json()["attempt"]))
                claimed.extend(group)
                groups.append(group)
            return groups

        # Fresh jobs for the warm-up and for every round, so every round posts first-time epochs (plus retries).
        def script() -> str:
            return wrk.ingest_script(claim_groups(self.cfg["ingest_jobs"]), self.worker_token,
                                     epochs=INGEST_EPOCHS, retry_every=RETRY_EVERY)

        bare_script = wrk.ingest_script([[("job_bare", 1)]] * INGEST_WORKERS, self.worker_token,
                                        epochs=INGEST_EPOCHS, retry_every=RETRY_EVERY)
        self.wrk_once(self.bare_url, bare_script, INGEST_WORKERS, self.cfg["warmup"], bare)
        self.wrk_once(self.url, script(), INGEST_WORKERS, self.cfg["warmup"], self.api)
        ingest: dict[str, list[dict]] = {"bare": [], "service": []}
        for r in range(self.cfg["rounds"]):
            for name, url, sc, server in (("bare", self.bare_url, bare_script, bare),
                                          ("service", self.url, script(), self.api)):
                res = self.wrk_once(url, sc, INGEST_WORKERS, self.cfg["seconds"], server)
                log(f"  round {r + 1} ingest {name}: {res['req_per_s']:.0f} posts/s, p50 {res['p50_ms']:.1f} ms, "
                    f"p99 {res['p99_ms']:.1f} ms, {res['server_cpu_ms_per_req']:.2f} ms server CPU per post, "
                    f"retries {res['retries']}, non-2xx {res['non_2xx']}")
                ingest[name].append(res)

        # What the fake workers stored: one metrics row per epoch, one metrics event per (attempt, epoch).
        rows = sum(len(self.http.get(f"/v1/jobs/{j}/metrics").json()["data"]) for j, _ in claimed)
        with psycopg.connect(self.db_url.replace("+psycopg", "")) as conn:
            dupes = conn.execute("SELECT count(*) FROM (SELECT job_id, dedup_key FROM job_events WHERE type = "
                                 "'metrics' GROUP BY 1, 2 HAVING count(*) > 1) d").fetchone()[0]
            events = conn.execute("SELECT count(*) FROM job_events WHERE type = 'metrics'").fetchone()[0]
        # The fake workers end their jobs; the API line's job is cancelled; their queue messages are dropped.
        for job_id, attempt in claimed:
            self.internal.post(f"/internal/jobs/{job_id}/fail",
                               json={"attempt": attempt, "code": "bench", "message": "fake worker finished"})
        self.http.post(f"/v1/jobs/{job['id']}/cancel")
        self.bare = bare  # kept for the upload line's HTTP sink
        return {"api": api, "ingest": ingest, "ingest_check": {"jobs": len(claimed), "metric_rows": rows,
                                                               "metric_events": events, "duplicate_events": dupes}}

    def wait_worker_idle(self, job_id: str, timeout: float = 300) -> list[dict]:
        """The job's events once it is terminal and, if it succeeded, its worker reported the ONNX export (the
        last thing a worker does for a job)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.http.get(f"/v1/jobs/{job_id}/events", params={"limit": 1000}).json()["data"]
            status = [e for e in events if e["type"] == "status"]
            last = status[-1]["data"]["to"] if status else None
            if last in TERMINAL and (last != "succeeded" or any("onnx" in (e["message"] or "").lower()
                                                                for e in events if e["type"] == "message")):
                return events
            time.sleep(0.05)
        raise TimeoutError(f"job {job_id} did not finish in {timeout}s")

    def queue_to_start(self, tiny_ds: str) -> dict:
        """Jobs one at a time; each is cancelled as soon as the worker claimed it (the figure is the queue's, not
        the training's), and the next is submitted once the worker reported it cancelled."""
        log("queue to start: starting a taas worker and a raw Celery worker")
        worker = self.start(taas("worker"), "worker", {**self.env(), "TAAS_WORKER_NAME": "bench-worker"})
        raw = self.start([sys.executable, "-m", "celery", "-A", "bench.service_celery", "worker", "--loglevel=INFO",
                          "--concurrency=1", "--without-gossip", "--without-mingle", "-Q", self.raw_queue], "raw",
                         {**self.env(), "TAAS_BENCH_BROKER": REDIS_URL, "TAAS_BENCH_QUEUE": self.raw_queue})
        producer = __import__("celery").Celery("taas-bench-producer")
        producer.conf.update(celery_config(SharedSettings(broker_url=REDIS_URL, data_dir=self.tmp,
                                                             queue_name=self.raw_queue)))
        spec = {"dataset_id": tiny_ds, **QUEUE_SPEC}

        def service_once(timeout: float = 60) -> dict:
            t0 = time.time()
            job = self.submit(spec)
            t1 = time.time()
            deadline = time.monotonic() + timeout
            while (status := self.http.get(f"/v1/jobs/{job['id']}").json()["status"]) == "queued":
                if time.monotonic() > deadline:
                    raise TimeoutError(f"job {job['id']} was not claimed in {timeout}s")
                time.sleep(0.02)
            if status == "running":
                self.http.post(f"/v1/jobs/{job['id']}/cancel")
            events = self.wait_worker_idle(job["id"])
            status_events = [e for e in events if e["type"] == "status"]
            running = next((e for e in status_events if e["data"]["to"] == "running"), None)
            if running is None:
                raise RuntimeError(f"job {job['id']} never ran: {events}")
            claim = _ts(running["created_at"])
            queued = _ts(next(e for e in status_events if e["data"]["to"] == "queued")["created_at"])
            return {"submit_to_claim_ms": (claim - t0) * 1e3, "queued_to_claim_ms": (claim - queued) * 1e3,
                    "post_ms": (t1 - t0) * 1e3, "status": status_events[-1]["data"]["to"]}

        def raw_once(timeout: float = 30) -> float:
            token = secrets.token_hex(8)
            key = reply_key(self.raw_queue, token)
            t0 = time.time()
            producer.send_task(PING_TASK, args=[token], queue=self.raw_queue)
            got = self.redis.blpop([key], timeout=timeout)
            if got is None:
                raise TimeoutError("the raw Celery ping did not run")
            self.redis.delete(key)
            return (float(got[1]) - t0) * 1e3

        log("  warming up (the worker imports torch; the first jobs build kernels)")
        try:
            service_once(timeout=300)
            service_once()
            raw_once(timeout=120)
            raw_once()
        except Exception as exc:
            raise RuntimeError(self.fail_log(worker, f"warm-up failed: {exc}")) from exc
        service, rawv = [], []
        n = self.cfg["queue_jobs"]
        t_start = time.monotonic()
        for i in range(n):
            time.sleep(PAUSE_S)
            service.append(service_once())
            time.sleep(PAUSE_S)
            rawv.append(raw_once())
            if (i + 1) % 10 == 0 or i + 1 == n:
                log(f"  {i + 1}/{n}: service p50 {statistics.median(s['submit_to_claim_ms'] for s in service):.1f} ms,"
                    f" raw p50 {statistics.median(rawv):.1f} ms ({time.monotonic() - t_start:.0f} s)")
        self.stop(worker)
        self.stop(raw)
        return {"service": service, "raw_ms": rawv, "httpx_client_ms": httpx_client_ms()}

    def upload(self, archive: Path, info: dict) -> dict:
        size = archive.stat().st_size
        log(f"upload: plain copy baseline of {size / MiB:.0f} MiB (3 runs, fsynced)")
        copies = [service_upload.copy_seconds(archive, self.tmp / "copy.bin") for _ in range(3)]
        copy_s = statistics.median(copies)
        sink = []
        if self.bare is not None:  # context: curl and uvicorn alone, the body read and dropped
            for _ in range(2):
                t0 = time.perf_counter()
                subprocess.run([*wrk.pin_prefix(1), "curl", "-sS", "-o", "/dev/null", "-H", "Expect:", "-F",
                                f"file=@{archive};type=application/zip", f"{self.bare_url}/upload-sink"],
                               check=True, capture_output=True)
                sink.append(time.perf_counter() - t0)
            self.stop(self.bare)
            self.bare = None
        pids = service_upload.uvicorn_workers(self.api.p.pid)
        if len(pids) != self.nproc:
            raise RuntimeError(f"expected {self.nproc} uvicorn workers under {self.api.p.pid}, found {pids}")
        log(f"upload: {size / MiB:.0f} MiB, {info['images']} images through curl")
        probe = service_upload.RssProbe(pids)
        cpu0 = service_upload.cpu_seconds(pids)
        cmd = [*wrk.pin_prefix(1), "curl", "-sS", "-o", str(self.tmp / "upload.json"), "-w", "%{http_code}",
               "-H", f"Authorization: Bearer {self.key}", "-H", "Expect:",
               "-F", f"file=@{archive};type=application/zip", "-F", "name=bench-upload", f"{self.url}/v1/datasets"]
        t0 = time.perf_counter()
        code = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
        t1 = time.perf_counter()
        cpu1 = service_upload.cpu_seconds(pids)
        body = json.loads((self.tmp / "upload.json").read_text())
        if code != "201":
            probe.stop()
            raise RuntimeError(f"upload answered {code}: {body}")
        ds_id = body["id"]
        while True:
            ds = self.http.get(f"/v1/datasets/{ds_id}").json()
            if ds["status"] != "processing":
                break
            time.sleep(0.25)
        t2 = time.perf_counter()
        cpu2 = service_upload.cpu_seconds(pids)
        rss = probe.stop()
        if ds["status"] != "ready":
            raise RuntimeError(f"the upload ended {ds['status']}: {ds.get('error')}")
        log(f"upload: 201 after {t1 - t0:.1f} s, ready after {t2 - t0:.1f} s; plain decode baseline")
        decode = service_upload.decode_rate(archive, self.cfg["decode_images"])
        return {"bytes": size, "archive": info, "copy_seconds": copies, "copy_mib_s": size / MiB / copy_s,
                "http_sink_seconds": sink, "http_sink_mib_s": size / MiB / min(sink) if sink else None,
                "to_201_s": t1 - t0, "to_ready_s": t2 - t0, "processing_s": t2 - t1,
                "upload_cpu_s": cpu1 - cpu0, "processing_cpu_s": cpu2 - cpu1,
                "to_201_mib_s": size / MiB / (t1 - t0), "to_ready_mib_s": size / MiB / (t2 - t0),
                "num_images": ds["num_images"], "images_per_cpu_s": ds["num_images"] / max(cpu2 - cpu1, 1e-9),
                "images_per_wall_s": ds["num_images"] / (t2 - t1), "rss": rss, "decode_baseline": decode}


# -- results ---------------------------------------------------------------------------------------------------


def _agg(runs: list[dict]) -> dict:
    """Median of the rounds' figures (req/s, p50, p99), with the rounds kept."""
    return {"req_per_s": statistics.median(r["req_per_s"] for r in runs),
            "p50_ms": statistics.median(r["p50_ms"] for r in runs),
            "p99_ms": statistics.median(r["p99_ms"] for r in runs),
            "server_cpu_ms_per_req": statistics.median(r["server_cpu_ms_per_req"] for r in runs),
            "non_2xx": sum(r["non_2xx"] for r in runs), "socket_errors": sum(r["socket_errors"] for r in runs),
            "rounds": runs}


def _http_text(a: dict, unit: str = "req/s") -> str:
    return f"{a['req_per_s']:,.0f} {unit}, p50 {a['p50_ms']:.1f} ms, p99 {a['p99_ms']:.1f} ms"


def build_lines(m: dict, cfg: dict) -> list[dict]:
    lines = []
    bare = _agg(m["api"]["bare"])
    bare["sync_endpoint"] = _agg(m["api"]["bare_sync"])
    for key, label in (("get_job", "API: GET /v1/jobs/{id}"), ("dry_run", "API: POST /v1/jobs?dry_run=true")):
        svc = _agg(m["api"][key])
        ratio = svc["req_per_s"] / bare["req_per_s"]
        valid = svc["non_2xx"] == 0 and svc["socket_errors"] == 0
        lines.append({"id": f"api_{key}", "line": f"{label} ({API_CONNECTIONS} conns)", "service": svc,
                      "baseline": {"name": "bare FastAPI constant endpoint", **bare}, "ratio": ratio,
                      "target": {"min_ratio": 0.40, "text": ">= 40% of bare req/s"}, "met": valid and ratio >= 0.40,
                      "service_text": _http_text(svc), "baseline_text": "bare: " + _http_text(bare),
                      "ratio_text": f"{ratio:.0%}", "target_text": ">= 40% of bare req/s"})

    q = m["queue"]
    claims = [s["submit_to_claim_ms"] for s in q["service"]]
    queued = [s["queued_to_claim_ms"] for s in q["service"]]
    svc = {"p50_ms": _pct(claims, 50), "p95_ms": _pct(claims, 95), "queued_event_to_claim_p50_ms": _pct(queued, 50),
           "submit_post_p50_ms": _pct([s["post_ms"] for s in q["service"]], 50), "jobs": len(claims),
           "statuses": {st: sum(1 for s in q["service"] if s["status"] == st) for st in TERMINAL},
           "new_httpx_client_ms": q["httpx_client_ms"],
           "samples_ms": [round(x, 2) for x in claims]}
    raw = {"name": "raw Celery round trip (send_task -> task starts)", "p50_ms": _pct(q["raw_ms"], 50),
           "p95_ms": _pct(q["raw_ms"], 95), "samples_ms": [round(x, 2) for x in q["raw_ms"]]}
    delta = svc["p50_ms"] - raw["p50_ms"]
    lines.append({"id": "queue_to_start", "line": f"Queue to start: submit -> claim ({len(claims)} jobs)",
                  "service": svc, "baseline": raw, "delta_p50_ms": delta,
                  "target": {"max_delta_p50_ms": 20.0, "text": "p50 <= raw + 20 ms"}, "met": delta <= 20.0,
                  "service_text": f"p50 {svc['p50_ms']:.1f} ms, p95 {svc['p95_ms']:.1f} ms",
                  "baseline_text": f"raw Celery: p50 {raw['p50_ms']:.1f} ms, p95 {raw['p95_ms']:.1f} ms",
                  "ratio_text": f"p50 {delta:+.1f} ms", "target_text": "p50 <= raw + 20 ms"})

    u = m["upload"]
    size_text = f"{u['bytes'] / MiB:.0f} MiB, {u['num_images']:,} JPEGs"
    copy = {"name": "plain file copy, fsynced", "mib_per_s": u["copy_mib_s"], "seconds": u["copy_seconds"],
            "http_sink_mib_per_s": u["http_sink_mib_s"]}
    r201 = u["to_201_mib_s"] / u["copy_mib_s"]
    lines.append({"id": "upload_to_201", "line": f"Upload {size_text}: to 201 (streamed, checked, fsynced)",
                  "service": {"mib_per_s": u["to_201_mib_s"], "seconds": u["to_201_s"], "cpu_s": u["upload_cpu_s"]},
                  "baseline": copy, "ratio": r201, "target": {"min_ratio": 0.30, "text": ">= 30% of the copy's"},
                  "met": r201 >= 0.30, "service_text": f"{u['to_201_mib_s']:,.0f} MiB/s ({u['to_201_s']:.1f} s)",
                  "baseline_text": f"copy: {u['copy_mib_s']:,.0f} MiB/s", "ratio_text": f"{r201:.0%}",
                  "target_text": ">= 30% of the copy's"})
    rready = u["to_ready_mib_s"] / u["copy_mib_s"]
    lines.append({"id": "upload_to_ready", "line": "Upload: to ready (plus decoding every image and the split)",
                  "service": {"mib_per_s": u["to_ready_mib_s"], "seconds": u["to_ready_s"]}, "baseline": copy,
                  "ratio": rready, "target": None, "met": None,
                  "service_text": f"{u['to_ready_mib_s']:,.0f} MiB/s ({u['to_ready_s']:.1f} s)",
                  "baseline_text": f"copy: {u['copy_mib_s']:,.0f} MiB/s", "ratio_text": f"{rready:.0%}",
                  "target_text": "(reported; see validation)"})
    g = u["rss"]["growth_bytes"] / MiB
    lines.append({"id": "upload_rss", "line": "Upload: API process peak RSS growth",
                  "service": {"growth_mib": g, **u["rss"]},
                  "baseline": {"name": "the archive's size", "mib": u["bytes"] / MiB}, "ratio": g * MiB / u["bytes"],
                  "target": {"max_mib": 64, "text": "< 64 MiB"}, "met": g < 64,
                  "service_text": f"{g:.1f} MiB", "baseline_text": f"archive: {u['bytes'] / MiB:.0f} MiB",
                  "ratio_text": f"{g * MiB / u['bytes']:.1%}", "target_text": "< 64 MiB"})
    d = u["decode_baseline"]
    rv = u["images_per_cpu_s"] / d["images_per_cpu_s"]
    lines.append({"id": "validation", "line": "Validation: images/s per core (decode, count, split)",
                  "service": {"images_per_cpu_s": u["images_per_cpu_s"], "images_per_wall_s": u["images_per_wall_s"],
                              "processing_s": u["processing_s"], "processing_cpu_s": u["processing_cpu_s"]},
                  "baseline": {"name": "plain Pillow decode loop over the same zip", **d}, "ratio": rv,
                  "target": {"min_images_per_core_s": 500, "text": ">= 500 images/s per core"},
                  "met": u["images_per_cpu_s"] >= 500,
                  "service_text": f"{u['images_per_cpu_s']:,.0f} img/s per core ({u['images_per_wall_s']:,.0f}/s wall)",
                  "baseline_text": f"plain decode: {d['images_per_cpu_s']:,.0f} img/s per core",
                  "ratio_text": f"{rv:.0%}", "target_text": ">= 500 img/s per core"})

    ib, isv = _agg(m["ingest"]["bare"]), _agg(m["ingest"]["service"])
    ri = isv["req_per_s"] / ib["req_per_s"]
    retries = sum(r["retries"] for r in isv["rounds"])
    requests = sum(r["requests"] for r in isv["rounds"])
    lines.append({"id": "metric_ingest", "line": f"Metric ingest: {INGEST_WORKERS} fake workers, "
                  f"{100 // RETRY_EVERY}% retries", "service": {**isv, "retries": retries, "requests": requests,
                                                                "check": m["ingest_check"]},
                  "baseline": {"name": "bare endpoint parsing the same body", **ib}, "ratio": ri,
                  "target": None, "met": None,
                  "service_text": _http_text(isv, "posts/s"), "baseline_text": "bare: " + _http_text(ib, "posts/s"),
                  "ratio_text": f"{ri:.0%}", "target_text": "(none set; reported)"})
    return lines


def machine() -> dict:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem = next(int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines()
                   if x.startswith("MemTotal"))
    except (OSError, StopIteration):
        mem = 0
    return {"nproc": os.cpu_count(), "cpu_model": model, "memory_gib": round(mem / 1024**2),
            "kernel": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "loadavg_start": os.getloadavg()}


def git_info() -> dict:
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "HEAD") or "unknown", "dirty": bool(git("status", "--porcelain"))}


def notes_for(lines: list[dict], m: dict, quick: bool) -> list[str]:
    by = {ln["id"]: ln for ln in lines}
    get, dry, q = by["api_get_job"], by["api_dry_run"], by["queue_to_start"]
    bare = get["baseline"]
    ingest = by["metric_ingest"]
    queue_head = q["service"]["p50_ms"] - q["service"]["queued_event_to_claim_p50_ms"]
    up = by["upload_to_201"]["baseline"]
    sink_text = (f"{up['http_sink_mib_per_s']:,.0f} MiB/s ({up['http_sink_mib_per_s'] / up['mib_per_s']:.0%} of the "
                 "copy's)" if up.get("http_sink_mib_per_s") else "(not measured)")
    missed = []
    for ln in lines:
        if ln["met"] is False:
            if "min_ratio" in ln["target"]:
                missed.append(f"{ln['line']}: {ln['ratio']:.0%} against {ln['target']['min_ratio']:.0%}")
            elif "max_delta_p50_ms" in ln["target"]:
                missed.append(f"{ln['line']}: p50 {ln['delta_p50_ms']:+.1f} ms against "
                              f"+{ln['target']['max_delta_p50_ms']:.0f} ms")
            else:
                missed.append(f"{ln['line']}: {ln['service_text']} against {ln['target_text']}")
    out = [("Missed: " + "; ".join(missed) + ". Why, below.") if missed else "Every target is met."]
    out += [
        f"Machine: {os.cpu_count()} cores shared by wrk (pinned to CPU 1), curl, the API's uvicorn workers, "
        "PostgreSQL, Redis and whatever else runs there (other people's tests, here); load average "
        f"{m['machine']['loadavg_start'][0]:.1f} at the start and {os.getloadavg()[0]:.1f} at the end. Absolute "
        "figures drift with that load; each ratio compares runs taken in the same conditions (API and ingest "
        "rounds interleaved with their baselines, queue samples alternating with raw Celery pings). Each API and "
        f"ingest figure is the median of {len(get['service']['rounds'])} rounds, so one round slowed by something "
        "else on the machine does not move it; every round is in bench/results/latest.json.",
        f"API: the GET costs {get['service']['server_cpu_ms_per_req']:.2f} ms of API CPU per request and the dry "
        f"run {dry['service']['server_cpu_ms_per_req']:.2f} ms, against {bare['server_cpu_ms_per_req']:.2f} ms for "
        f"the bare endpoint ({bare['sync_endpoint']['server_cpu_ms_per_req']:.2f} ms and "
        f"{bare['sync_endpoint']['req_per_s']:,.0f} req/s for the same constant from a sync `def`, i.e. one "
        "worker-thread hop). Both routes now read on the event loop through asyncpg (app/pg.py), with no worker "
        "thread and no ORM, and requests that arrive in the same pass of the event loop share one statement "
        "(app.pg.Coalesced: their arguments go as arrays, each gets the row of its ordinal), so under this load "
        "a round trip serves several requests on both sides of the connection. The GET's key and job come back "
        "from one such statement (app/deps.py KeyCheck); the dry run's key from one and its dataset and weights "
        "from another. Nothing is cached: every request reads the database after it arrived, so a revoked key "
        "fails its next request in every process. Before (3.11 ms of API CPU per GET at 527 req/s, 6%; the dry "
        "run 3.64 ms, 5%) each request took two worker-thread hops and two or three ORM queries. Also on the "
        "way: FastAPI 0.16x matches an included router's routes through per-route wrappers, about 5 us a route "
        "and twice per request, so the routes now join the app's own list, hottest first, the docs last "
        "(app/main.py add_routes: `/healthz` went from 553 to 94 us of CPU in process, the bare app's 80); "
        "timestamps serialise through a per-field type instead of a serializer on every field; successful GETs "
        "log at DEBUG (TAAS_LOG_REQUESTS=all logs them; /metrics times every request either way); asyncpg's "
        "reset round trip on every pool release is skipped (these connections hold no session state); the "
        "scope check and the key check are one dependency; the process's startup objects are frozen out of the "
        "garbage collector. The dry run misses: besides its two statements it reads and validates the spec "
        "(FastAPI's body, query and header handling cost about 35 us a request in process), computes the plan "
        "and serialises it (now with pydantic-core, a fifth of json.dumps's time), and its key check cannot "
        "join the dataset's statement: a wrong key must be refused (401) before the body is validated, and "
        "FastAPI validates the body after the dependencies. Its route no longer takes the session dependency "
        "(whose setup and teardown cost about as much as the dry run's own work; a submit opens its session in "
        "its worker thread). In the quick runs made while changing this (2026-11-28) the dry run read 25% to 35% of "
        "bare and the GET 42% to 49%; the bare endpoint itself moved between 7,100 and 13,200 req/s from round "
        "to round.",
        f"Queue to start: submit is the client's clock before `POST /v1/jobs`, claim is the `running` event's "
        "timestamp. Each job (MobileNetV3-small, 1 epoch on 12 images of 8 px) is cancelled once claimed unless "
        f"it finishes first, and the next is submitted {PAUSE_S * 1000:.0f} ms after the worker reported the "
        f"previous one finished; the phase runs the API with a {QUEUE_LEASE_S} s lease so that the worker hears "
        "a cancel at its next heartbeat. Of the p50, the POST takes "
        f"{q['service']['submit_post_p50_ms']:.1f} ms (key check, dataset, quota count, the job and its event, "
        f"commit, then the send and its record, one autocommit UPDATE; the `queued` event is written about "
        f"{queue_head:.0f} ms into it), and the `queued` event to the claim "
        f"{q['service']['queued_event_to_claim_p50_ms']:.1f} ms: the Celery delivery (the raw round trip), then "
        "the claim request (the worker token, the job's SELECT, the compare-and-set UPDATE ... RETURNING, the "
        "event's sequence UPDATE and INSERT, which timestamps the claim, and the dataset's SELECT, all in one "
        "transaction). The worker keeps one internal HTTP client per process "
        "(worker/runner.py _client): a new httpx client, with its SSL context and CA bundle, costs "
        f"{m['queue']['httpx_client_ms']:.1f} ms here, and when one was built per job this line read +73 to "
        "+85 ms. " + (
            "Under the target since the key check runs on the event loop (asyncpg, no worker thread, no ORM) and "
            "the worker token is checked inline on every internal request (it took a worker-thread hop); with "
            "both in threads this line read +20.3 to +24.1 ms." if q["met"] else
            "What remains over the target is the API's ORM work on those two requests, about 1 ms of wall time "
            "per statement on this machine under this load."),
        "Upload: across the runs of three sessions this line read 21% to 33% of the copy, on two different "
        "CPUs; the copy baseline and the HTTP-only sink move with the machine's load from run to run. "
        "A flat zip of stored 256 px JPEGs (about 33 KB each) is sent by `curl -F` (pinned to CPU 1); the "
        "copy baseline is `shutil.copyfile` (an in-kernel copy) plus `fsync` (the service fsyncs the archive "
        "before its 201). For context, curl into a bare uvicorn endpoint that reads the body and drops it "
        f"reaches {sink_text}: the ceiling of HTTP alone, before any parsing, hashing, writing, structural check "
        "(the zip's whole member list) and fsync; the service's per-byte work shares the GIL with the event "
        "loop's receiving. Fixed on the way: the upload path handed every 64 KiB socket read to a worker thread "
        "and now hands over 1 MiB at a time (app/datasets/upload.py receive_upload: about twice the "
        "throughput); the next MiB is received while the previous one is parsed, hashed and written (hashing and "
        "writing let go of the GIL), and each MiB reaches the parser, the file and the hash as one piece (in an "
        "A/B of 300 MiB uploads, 274-349 MiB/s before these two and 361-461 after); the fsync runs while the "
        "structure is checked (app/datasets/service.py create_dataset, app/storage.py BlobWriter.sync). `ready` "
        "also decodes every image (one background thread), hence its lower MiB/s. RSS growth is the largest "
        "peak-minus-start over the uvicorn worker processes (VmHWM reset through clear_refs, VmRSS also sampled "
        "every 20 ms); images per core are images over the CPU seconds the API processes used from the 201 to "
        "`ready`.",
        f"Metric ingest: each fake worker is one wrk connection posting epochs 1..{INGEST_EPOCHS} of jobs it "
        "claimed; every 10th post repeats the previous one (same attempt and epoch), which rewrites the row and "
        f"adds no event. After the runs: {m['ingest_check']['metric_events']:,} metric events, "
        f"{m['ingest_check']['duplicate_events']} duplicates, no non-2xx answers "
        f"({ingest['service']['non_2xx']}). A post costs {ingest['service']['server_cpu_ms_per_req']:.2f} ms of "
        f"API CPU (bare: {ingest['baseline']['server_cpu_ms_per_req']:.2f} ms). The issue sets no target here.",
    ]
    if quick:
        out.insert(0, "QUICK MODE: smaller sizes and shorter runs; for debugging only.")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes and short runs, for debugging")
    ap.add_argument("--out", type=Path, help=f"results JSON (default: {RESULTS.relative_to(ROOT)}; "
                                             "quick: a temporary file)")
    ap.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    ap.add_argument("--upload-mib", type=int)
    ap.add_argument("--queue-jobs", type=int)
    ap.add_argument("--seconds", type=float, help="seconds per measured wrk run")
    ap.add_argument("--api-only", action="store_true", help="only the API and ingest lines (for iterating on the "
                                                            "request path; results to a temporary file)")
    args = ap.parse_args()
    cfg = dict(QUICK if args.quick else FULL)
    for name in ("upload_mib", "queue_jobs", "seconds"):
        if getattr(args, name) is not None:
            cfg[name] = getattr(args, name)
    wrk.find_wrk()
    if shutil.which("curl") is None:
        raise SystemExit("curl is missing: apt-get install -y curl")

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    started, t_start = datetime.now(UTC), time.monotonic()
    bench = Bench(args, cfg)
    measured: dict = {"machine": machine()}
    try:
        if args.api_only:
            bench.setup()
            measured.update(bench.api_and_ingest(bench.tiny_dataset()))
            for name, runs in {**measured["api"], **{f"ingest_{k}": v for k, v in measured["ingest"].items()}}.items():
                agg = _agg(runs)
                print(f"{name:14} {agg['req_per_s']:8.0f} req/s  p50 {agg['p50_ms']:6.1f} ms  p99 "
                      f"{agg['p99_ms']:6.1f} ms  {agg['server_cpu_ms_per_req']:.2f} ms server CPU/req  "
                      f"non-2xx {agg['non_2xx']}")
            return
        archive = bench.tmp / "upload" / "archive.zip"
        archive.parent.mkdir()
        log(f"generating a {cfg['upload_mib']} MiB image archive")
        info = service_upload.make_archive(archive, cfg["upload_mib"] * MiB)
        bench.setup(TAAS_LEASE_SECONDS=QUEUE_LEASE_S)
        tiny = bench.tiny_dataset()
        measured["queue"] = bench.queue_to_start(tiny)
        bench.start_api()  # production defaults from here on
        measured.update(bench.api_and_ingest(tiny))
        measured["upload"] = bench.upload(archive, info)
    except BaseException:
        for proc in bench.procs:
            log(f"{proc.log.name} (tail):\n{proc.tail(1500)}")
        raise
    finally:
        log("cleaning up (processes, database, Redis keys, temporary files)")
        bench.cleanup()
    lines = build_lines(measured, cfg)
    result = {"date": started.strftime("%Y-%m-%dT%H:%M:%SZ"), "duration_s": time.monotonic() - t_start,
              "mode": "quick" if args.quick else "full", "git": git_info(), "machine": measured["machine"],
              "settings": {**cfg, "api_connections": API_CONNECTIONS, "ingest_workers": INGEST_WORKERS,
                           "uvicorn_workers": os.cpu_count(), "wrk_cpu": 1, "retry_every": RETRY_EVERY},
              "lines": lines}
    result["notes"] = notes_for(lines, measured, args.quick)
    out = args.out or (Path(tempfile.gettempdir()) / "taas-bench-quick.json" if args.quick else RESULTS)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(service_report.table_text(result))
    print()
    for note in result["notes"]:
        print(f"- {note}")
    print(f"\nresults: {out}")
    if not args.quick and not args.no_readme:
        service_report.update_readme(result)
        print("README.md: Performance section rewritten from the results")


if __name__ == "__main__":
    main()
