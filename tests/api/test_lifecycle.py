"""Data lifecycle: deleting models removes their files; a full disk is 507 with nothing half-written."""

from app.config import get_settings
from app.storage import get_storage
from tests.api.conftest import upload
from tests.factories import dataset_members, write_zip

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
    assert not any(p.exists() for p in files)


def test_full_disk_is_507_with_nothing_half_written(client, auth, tmp_path, monkeypatch):
    monkeypatch.setattr(get_settings(), "min_free_bytes", get_storage().free_bytes() + 1)  # "the disk is full"
    before = {p for p in get_storage().root.rglob("*") if p.is_file()}
    resp = upload(client, auth, write_zip(tmp_path / "d.zip", dataset_members(classes=2, per_class=3, size=8)))
    assert resp.status_code == 507, resp.text
    assert resp.json()["error"]["code"] == "insufficient_storage"
    assert {p for p in get_storage().root.rglob("*") if p.is_file()} == before
    assert client.get("/v1/datasets", headers=auth).json()["data"] == []
