"""A private cluster per test: its own PostgreSQL database, queue (or Redis), API process and worker processes.

Faults are injected deterministically through the worker's test-only settings (keyed by a job's seed), never by
racing timers; processes are killed as whole process groups.
"""

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REDIS_URL, free_port, temp_database
from tests.factories import dataset_members, write_zip
from tests.procs import ROOT, Proc, poll, taas, wait_healthy

FAULT_SEED = 777  # jobs with this seed meet the injected fault; others don't
# A lease short enough to keep the tests quick, long enough for a heartbeat on 2 busy cores.
FAST = {"TAAS_LEASE_SECONDS": "8", "TAAS_REAPER_INTERVAL_SECONDS": "0.3", "TAAS_ENQUEUE_RESEND_SECONDS": "2",
        "TAAS_ENQUEUE_GRACE_SECONDS": "1", "TAAS_MAX_ATTEMPTS": "3",
        "OMP_NUM_THREADS": "1", "TAAS_HTTP_RETRY_SECONDS": "120"}


class Cluster:
    """The API and workers of one test, sharing one environment."""

    def __init__(self, tmp: Path, db_url: str, broker_url: str):
        self.tmp, self.port = tmp, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **FAST, "TAAS_DATA_DIR": str(tmp / "data"), "TAAS_DATABASE_URL": db_url,
                    "TAAS_BROKER_URL": broker_url, "TAAS_QUEUE_NAME": f"faults-{secrets.token_hex(4)}",
                    "TAAS_SECRET_KEY": secrets.token_hex(16), "TAAS_WORKER_TOKEN": secrets.token_hex(16),
                    "TAAS_PORT": str(self.port), "TAAS_API_URL": self.url, "TAAS_RUN_REAPER": "1",
                    "TAAS_CACHE_DIR": str(tmp / "cache"), "PYTHONUNBUFFERED": "1", "TAAS_TESTING": "1"}
        (tmp / "data").mkdir()
        out = subprocess.run(taas("keys", "create", "--tenant", "faults", "--scopes", "read,write"), env=self.env,
                             cwd=ROOT, check=True, capture_output=True, text=True).stdout
        self.http = httpx.Client(base_url=self.url, timeout=30,
                                 headers={"Authorization": f"Bearer {out.strip().splitlines()[-1]}"})
        self.procs: list[Proc] = []
        self.api: Proc | None = None
        self.n = 0

    def start_api(self) -> Proc:
        self.n += 1
        self.api = Proc(taas("api"), self.env, self.tmp / f"api{self.n}.log")
        self.procs.append(self.api)
        wait_healthy(self.url, self.api)
        return self.api

    def start_worker(self, **faults: str) -> Proc:
        """A worker; faults are TAAS_FAULT_* settings, e.g. action="kill_group", epoch="2"."""
        self.n += 1
        env = {**self.env, **{f"TAAS_FAULT_{k.upper()}": v for k, v in faults.items()}}
        if faults:
            env["TAAS_FAULT_SEED"] = str(FAULT_SEED)
        proc = Proc(taas("worker"), env, self.tmp / f"worker{self.n}.log")
        self.procs.append(proc)
        return proc

    def dataset(self, per_class: int = 6) -> str:
        path = write_zip(self.tmp / f"ds{secrets.token_hex(2)}.zip", dataset_members(classes=2, per_class=per_class,
                                                                                     size=8))
        with open(path, "rb") as f:
            ds = self.http.post("/v1/datasets", files={"file": (path.name, f)}).json()
        poll(lambda: self.http.get(f"/v1/datasets/{ds['id']}").json()["status"] == "ready", 60, "dataset ready")
        return ds["id"]

    def submit(self, ds_id: str, *, epochs: int = 5, seed: int = 0, policy: str = "none") -> str:
        spec = {"dataset_id": ds_id, "base_model": {"arch": "resnet18", "weights": "none"},
                "freeze": {"policy": policy},
                "hyperparameters": {"epochs": epochs, "image_size": 16, "batch_size": 4, "seed": seed}}
        resp = self.http.post("/v1/jobs", json=spec)
        assert resp.status_code == 201, resp.text
        return resp.json()["id"]

    def job(self, job_id: str) -> dict:
        return self.http.get(f"/v1/jobs/{job_id}").json()

    def wait_status(self, job_id: str, statuses: tuple[str, ...], timeout: float = 180) -> dict:
        def check() -> dict | None:
            try:
                job = self.job(job_id)
            except httpx.TransportError:
                return None
            return job if job["status"] in statuses else None

        return poll(check, timeout, f"{job_id} in {statuses}", interval=0.3)

    def events(self, job_id: str) -> list[dict]:
        return self.http.get(f"/v1/jobs/{job_id}/events", params={"limit": 1000}).json()["data"]

    def metrics(self, job_id: str) -> list[dict]:
        return self.http.get(f"/v1/jobs/{job_id}/metrics").json()["data"]

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.http.close()


@pytest.fixture
def fresh_db() -> Iterator[str]:
    """A migrated PostgreSQL database of this test alone (so no other test's reaper touches its jobs)."""
    with temp_database("taas_fault") as url:
        yield url


@pytest.fixture
def cluster(tmp_path: Path, fresh_db: str) -> Iterator[Cluster]:
    c = Cluster(tmp_path, fresh_db, REDIS_URL)
    c.start_api()
    yield c
    c.close()


class PrivateRedis:
    """A redis-server of this test alone, on a free port, keeping nothing on disk (a restart loses messages)."""

    def __init__(self, tmp: Path):
        self.port, self.tmp, self.proc = free_port(), tmp, None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.proc = Proc([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                          "no", "--dir", str(self.tmp)], dict(os.environ), self.tmp / f"redis{self.port}.log")
        import redis

        poll(lambda: _ping(redis.Redis(port=self.port)), 20, "private redis")

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()
            self.proc = None


def _ping(client) -> bool:  # noqa: ANN001
    try:
        return bool(client.ping())
    except Exception:
        return False
