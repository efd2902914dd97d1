"""The live event stream on the embedded default's SQLite: a stream open between polls holds no lock."""

import threading
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import upload, wait_for
from tests.conftest import reset_caches
from tests.factories import dataset_members, write_zip

WORKER = {"Authorization": "Bearer test-worker-token"}


@pytest.fixture(scope="module")
def sqlite_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    mp = pytest.MonkeyPatch()
    mp.setenv("TAAS_DATA_DIR", str(tmp_path_factory.mktemp("sqlite")))
    mp.delenv("TAAS_DATABASE_URL", raising=False)
    mp.delenv("TAAS_BROKER_URL", raising=False)
    mp.setenv("TAAS_SECRET_KEY", "test-pepper")
    mp.setenv("TAAS_WORKER_TOKEN", "test-worker-token")
    mp.setenv("TAAS_EVENTS_POLL_SECONDS", "0.02")
    reset_caches()
    from app.main import create_app
    from app.migrate import upgrade

    upgrade()
    with TestClient(create_app()) as c:
        yield c
    mp.undo()
    reset_caches()


def test_writes_go_on_while_a_stream_is_open_on_sqlite(sqlite_client, tmp_path):
    from app.db import get_sessionmaker
    from app.keys.service import create_key

    client = sqlite_client
    with get_sessionmaker()() as session:
        _, key = create_key(session=session, tenant="lite", scopes=["write", "read"])
    auth = {"Authorization": f"Bearer {key}"}
    resp = upload(client, auth, write_zip(tmp_path / "d.zip", dataset_members(classes=2, per_class=5, size=8)))
    ds_id = resp.json()["id"]
    wait_for(lambda: client.get(f"/v1/datasets/{ds_id}", headers=auth).json()["status"] == "ready")
    spec = {"dataset_id": ds_id, "base_model": {"arch": "resnet18", "weights": "none"},
            "hyperparameters": {"epochs": 2, "image_size": 32}}
    job_id = client.post("/v1/jobs", headers=auth, json=spec).json()["id"]
    attempt = client.post(f"/internal/jobs/{job_id}/claim", headers=WORKER, json={}).json()["attempt"]

    slowest: list[float] = []

    def drive() -> None:
        time.sleep(0.3)  # let the stream start polling
        for path, body in ((f"/internal/jobs/{job_id}/metrics", {"attempt": attempt, "epoch": 1, "metrics": {}}),
                           (f"/internal/jobs/{job_id}/metrics", {"attempt": attempt, "epoch": 2, "metrics": {}}),
                           (f"/internal/jobs/{job_id}/fail", {"attempt": attempt, "message": "done"})):
            started = time.monotonic()
            assert client.post(path, headers=WORKER, json=body).status_code == 200
            slowest.append(time.monotonic() - started)
            time.sleep(0.1)

    driver = threading.Thread(target=drive)
    driver.start()
    try:
        resp = client.get(f"/v1/jobs/{job_id}/events", headers={**auth, "Accept": "text/event-stream"})
    finally:
        driver.join()
    ids = [int(line[3:]) for line in resp.text.splitlines() if line.startswith("id:")]
    assert ids == [1, 2, 3, 4, 5]
    # A stream that held SQLite's write lock would make each of these wait out the 30 s busy timeout.
    assert max(slowest) < 5, slowest
