"""Data lifecycle: deletes remove their files in the background, durably; a full disk is 507 with nothing
half-written."""

from sqlalchemy import func, select

from app import garbage
from app.config import get_settings
from app.db import get_sessionmaker
from app.models import BlobGarbage
from app.reaper import reap_once
from app.storage import get_storage
from tests.api.conftest import upload
from tests.factories import dataset_members, write_zip
from tests.procs import poll

WORKER = {"Authorization": "Bearer test-worker-token"}


def _model(client, auth, ds) -> str:  # noqa: ANN001
    """A model made through the worker routes, without training."""
    job = client.post("/v1/jobs", headers=auth, json={"dataset_id": ds["id"],
                                                      "base_model": {"arch": "resnet18", "weights": "none"}}).json()
    base = f"/internal/jobs/{job['id']}"
    attempt = client.post(f"{base}/claim", headers=WORKER, json={}).json()["attempt"]
    client.put(f"{base}/artifacts/safetensors?attempt={attempt}", headers=WORKER, content=b"weights")
    result = {"config": {"classes": ds["classes"], "preprocessing": {}}, "metrics": {}}
    done = client.post(f"{base}/succeed", headers=WORKER, json={"attempt": attempt, "result": result})
    return done.json()["model_id"]


def test_delete_model_removes_its_files_and_other_tenants_get_404(client, auth, make_key, ready_dataset):
    model_id = _model(client, auth, ready_dataset)
    art = client.get(f"/v1/models/{model_id}", headers=auth).json()["artifacts"][0]
    assert art["format"] == "safetensors"
    files = [p for p in get_storage().root.rglob("*") if p.is_file() and p.read_bytes() == b"weights"]
    assert files
    assert client.delete(f"/v1/models/{model_id}", headers=make_key()).status_code == 404
    assert client.delete(f"/v1/models/{model_id}", headers=auth).status_code == 204
    assert client.get(f"/v1/models/{model_id}", headers=auth).status_code == 404
    poll(lambda: not any(p.exists() for p in files), 10, "the model's files removed in the background")
    poll(lambda: _queued() == 0, 10, "the removal queue emptied")


def _queued() -> int:
    with get_sessionmaker()() as session:
        return session.scalar(select(func.count()).select_from(BlobGarbage))


def test_deleting_a_dataset_removes_its_archive_and_manifest(client, auth, ready_dataset):
    root = get_storage().root
    files = [p for p in root.rglob("*") if p.is_file() and ready_dataset["id"] in str(p)]
    assert len(files) >= 2  # the archive and the manifest
    assert client.delete(f"/v1/datasets/{ready_dataset['id']}", headers=auth).status_code == 204
    poll(lambda: not any(p.exists() for p in files), 10, "the dataset's files removed in the background")


def test_files_queued_before_a_crash_are_removed_by_the_reaper(client, auth, ready_dataset, monkeypatch):
    # The process dies after the delete commits and before its sweeper runs: simulated by a kick that does nothing.
    monkeypatch.setattr(garbage, "kick", lambda: None)
    files = [p for p in get_storage().root.rglob("*") if p.is_file() and ready_dataset["id"] in str(p)]
    assert client.delete(f"/v1/datasets/{ready_dataset['id']}", headers=auth).status_code == 204
    assert all(p.exists() for p in files) and _queued() >= len(files)  # queued durably, not yet removed
    assert reap_once()["files_removed"] >= len(files)
    assert not any(p.exists() for p in files) and _queued() == 0


def test_full_disk_is_507_with_nothing_half_written(client, auth, tmp_path, monkeypatch):
    monkeypatch.setattr(get_settings(), "min_free_bytes", get_storage().free_bytes() + 1)  # "the disk is full"
    before = {p for p in get_storage().root.rglob("*") if p.is_file()}
    resp = upload(client, auth, write_zip(tmp_path / "d.zip", dataset_members(classes=2, per_class=3, size=8)))
    assert resp.status_code == 507, resp.text
    assert resp.json()["error"]["code"] == "insufficient_storage"
    assert {p for p in get_storage().root.rglob("*") if p.is_file()} == before
    assert client.get("/v1/datasets", headers=auth).json()["data"] == []
