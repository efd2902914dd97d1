"""Production mode on real components: PostgreSQL, Redis, a uvicorn API process and a Celery worker process."""

import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import REDIS_URL, free_port
from tests.procs import ROOT, Proc, taas, wait_healthy

FAULT_SEED = 424242  # a job with this seed raises after its first epoch (worker fault injection)


@dataclass
class Stack:
    url: str
    env: dict[str, str]
    api: Proc
    worker: Proc
    headers: dict[str, str]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=30)


@pytest.fixture(scope="session")
def stack(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("stack")
    port = free_port()
    env = {**os.environ, "TAAS_DATA_DIR": str(tmp / "data"), "TAAS_DATABASE_URL": pg_url,
           "TAAS_BROKER_URL": REDIS_URL, "TAAS_QUEUE_NAME": f"taas-test-{secrets.token_hex(4)}",
           "TAAS_SECRET_KEY": secrets.token_hex(16), "TAAS_WORKER_TOKEN": secrets.token_hex(16),
           "TAAS_PORT": str(port), "TAAS_API_URL": f"http://127.0.0.1:{port}", "TAAS_CACHE_DIR": str(tmp / "cache"),
           "TAAS_RUN_REAPER": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
           "TAAS_TESTING": "1", "TAAS_FAULT_SEED": str(FAULT_SEED), "TAAS_FAULT_EPOCH": "1",
           "TAAS_WEBHOOK_ALLOW_HOSTS": "127.0.0.1"}  # the webhook receiver (loopback is refused by default)
    (tmp / "data").mkdir()
    subprocess.run(taas("weights", "import", "efficientnet_lite0"), env=env, cwd=ROOT, check=True,
                   capture_output=True)
    out = subprocess.run(taas("keys", "create", "--tenant", "integration", "--scopes", "read,write"), env=env,
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout
    key = out.strip().splitlines()[-1]
    api = Proc(taas("api"), env, tmp / "api.log")
    worker = Proc(taas("worker"), env, tmp / "worker.log")
    try:
        wait_healthy(env["TAAS_API_URL"], api)
        yield Stack(url=env["TAAS_API_URL"], env=env, api=api, worker=worker,
                    headers={"Authorization": f"Bearer {key}"})
    finally:
        worker.stop()
        api.stop()
