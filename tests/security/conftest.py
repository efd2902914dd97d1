"""Security tests: a module-scoped API client with low limits, so hostile input is cheap to build and to refuse."""

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import auth, make_key, ready_dataset, upload, wait_for  # noqa: F401
from tests.conftest import reset_caches
from tests.procs import app_in_thread

MiB = 1024**2
LIMITS = {
    "TAAS_MAX_UPLOAD_BYTES": str(2 * MiB),
    "TAAS_MAX_MEMBERS": "200",
    "TAAS_MAX_UNPACKED_BYTES": str(3 * MiB),
    "TAAS_MAX_IMAGE_PIXELS": "1000000",
    "TAAS_MAX_REQUEST_BYTES": str(MiB),
}
WORKER = {"Authorization": "Bearer test-worker-token"}


@pytest.fixture(scope="module")
def client(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data = tmp_path_factory.mktemp("data")
    mp = pytest.MonkeyPatch()
    for name, value in {"TAAS_DATA_DIR": str(data), "TAAS_DATABASE_URL": pg_url, "TAAS_SECRET_KEY": "test-pepper",
                        "TAAS_WORKER_TOKEN": "test-worker-token", **LIMITS}.items():
        mp.setenv(name, value)
    mp.delenv("TAAS_BROKER_URL", raising=False)
    reset_caches()
    from app.main import create_app

    with TestClient(create_app()) as c:
        yield c
    mp.undo()
    reset_caches()


@pytest.fixture(scope="module")
def server(client: TestClient) -> Iterator[tuple[str, int]]:
    """A real uvicorn server in this process (same settings and database as client), for raw-socket tests."""
    with app_in_thread() as address:
        yield address


def storage_root() -> Path:
    from app.storage import get_storage

    return get_storage().root


def processing_idle(timeout: float = 30.0) -> None:
    """Wait until no dataset stored under this module's data dir is still being processed in the background."""
    from sqlalchemy import select

    from app.db import get_sessionmaker
    from app.models import Dataset

    def idle() -> bool:
        here = [p.name for p in (storage_root() / "datasets").glob("*")] if (storage_root() / "datasets").exists() \
            else []
        with get_sessionmaker()() as s:
            return s.scalars(select(Dataset.id).where(Dataset.status == "processing",
                                                      Dataset.id.in_(here))).first() is None

    wait_for(idle, timeout=timeout)


def leftovers() -> list[str]:
    """Files under tmp/ and dataset folders without a dataset row: what a refused request must not leave."""
    from sqlalchemy import select

    from app.db import get_sessionmaker
    from app.models import Dataset

    root = storage_root()
    with get_sessionmaker()() as s:
        known = set(s.scalars(select(Dataset.id)))
    tmp = [str(p.relative_to(root)) for p in (root / "tmp").glob("*")] if (root / "tmp").exists() else []
    orphans = [str(p.relative_to(root)) for p in (root / "datasets").glob("*")
               if p.name not in known] if (root / "datasets").exists() else []
    return tmp + orphans


def assert_nothing_left(deadline: float = 10.0) -> None:
    """Poll (with a deadline) until refused requests have cleaned up after themselves."""
    processing_idle()
    end = time.monotonic() + deadline
    while (left := leftovers()) and time.monotonic() < end:
        time.sleep(0.05)
    assert not left, f"left behind: {left}"
