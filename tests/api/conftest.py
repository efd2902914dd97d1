"""The API in-process (TestClient) on real PostgreSQL; each test gets its own tenant, so no cleanup is needed."""

import secrets
import time
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from tests.conftest import reset_caches
from tests.factories import dataset_members, write_zip


@pytest.fixture(scope="module")
def client(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data = tmp_path_factory.mktemp("data")
    mp = pytest.MonkeyPatch()
    mp.setenv("TAAS_DATA_DIR", str(data))
    mp.setenv("TAAS_DATABASE_URL", pg_url)
    mp.setenv("TAAS_SECRET_KEY", "test-pepper")
    mp.setenv("TAAS_WORKER_TOKEN", "test-worker-token")
    mp.setenv("TAAS_MAX_UPLOAD_BYTES", str(2 * 1024 * 1024))
    mp.delenv("TAAS_BROKER_URL", raising=False)
    reset_caches()
    from app.main import create_app

    with TestClient(create_app()) as c:
        yield c
    mp.undo()
    reset_caches()


@pytest.fixture
def make_key(client: TestClient) -> Callable[..., dict[str, str]]:
    """Headers with a fresh key of a fresh (or given) tenant."""
    from app.db import get_sessionmaker
    from app.keys.service import create_key

    def make(scopes: tuple[str, ...] = ("admin",), tenant: str | None = None) -> dict[str, str]:
        with get_sessionmaker()() as session:
            _, key = create_key(session=session, tenant=tenant or f"t{secrets.token_hex(4)}", scopes=list(scopes))
        return {"Authorization": f"Bearer {key}"}

    return make


@pytest.fixture
def auth(make_key: Callable[..., dict[str, str]]) -> dict[str, str]:
    return make_key()


def wait_for(fn: Callable[[], object], timeout: float = 30.0, interval: float = 0.05) -> object:
    """Poll fn until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def upload(client: TestClient, auth: dict[str, str], path, **headers: str):  # noqa: ANN001
    with open(path, "rb") as f:
        return client.post("/v1/datasets", headers={**auth, **headers}, files={"file": (path.name, f)},
                           data={"name": path.stem})


@pytest.fixture
def ready_dataset(client: TestClient, auth: dict[str, str], tmp_path) -> dict:  # noqa: ANN001
    path = write_zip(tmp_path / "colours.zip", dataset_members(classes=3, per_class=6, size=8))
    resp = upload(client, auth, path)
    assert resp.status_code == 201, resp.text
    ds_id = resp.json()["id"]
    return wait_for(lambda: (r := client.get(f"/v1/datasets/{ds_id}", headers=auth).json())["status"] == "ready"
                    and r)
