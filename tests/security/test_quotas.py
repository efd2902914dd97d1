"""Per-tenant quotas: queued plus running jobs, and stored bytes (checked before and after streaming)."""

import socket

import pytest

from tests.factories import dataset_members, write_zip
from tests.security.conftest import WORKER, assert_nothing_left, upload, wait_for
from tests.security.helpers import MULTIPART_CT, base_model, file_part, multipart, read_response


@pytest.fixture
def settings(client):  # noqa: ANN001
    from app.config import get_settings

    return get_settings()


def _spec(ds_id: str) -> dict:
    return {"dataset_id": ds_id, "base_model": {"arch": "resnet18", "weights": "none"}}


def test_active_job_quota(client, make_key, ready_dataset, auth, settings, monkeypatch):
    monkeypatch.setattr(settings, "quota_max_active_jobs", 2)
    ds = ready_dataset["id"]
    first = client.post("/v1/jobs", headers={**auth, "Idempotency-Key": "q-1"}, json=_spec(ds)).json()
    second = client.post("/v1/jobs", headers=auth, json=_spec(ds)).json()
    # A running job counts as much as a queued one.
    assert client.post(f"/internal/jobs/{second['id']}/claim", headers=WORKER, json={}).status_code == 200
    over = client.post("/v1/jobs", headers=auth, json=_spec(ds))
    assert over.status_code == 429, over.text
    err = over.json()["error"]
    assert err["code"] == "quota_exceeded" and err["details"] == {"quota": "max_active_jobs", "limit": 2,
                                                                   "used": 2}
    # A replay is no new job, so the quota does not refuse it; a dry run queues nothing.
    replay = client.post("/v1/jobs", headers={**auth, "Idempotency-Key": "q-1"}, json=_spec(ds))
    assert replay.status_code == 201 and replay.json()["id"] == first["id"]
    assert client.post("/v1/jobs?dry_run=true", headers=auth, json=_spec(ds)).status_code == 200
    # The refused request left nothing behind.
    assert len(client.get("/v1/jobs", headers=auth).json()["data"]) == 2
    # A finished job frees its place.
    assert client.post(f"/v1/jobs/{first['id']}/cancel", headers=auth).json()["status"] == "cancelled"
    assert client.post("/v1/jobs", headers=auth, json=_spec(ds)).status_code == 201
    assert client.post("/v1/jobs", headers=auth, json=_spec(ds)).status_code == 429


def test_job_quota_is_per_tenant(client, make_key, settings, monkeypatch, tmp_path):
    monkeypatch.setattr(settings, "quota_max_active_jobs", 1)
    for _ in range(2):
        auth = make_key()
        ds_id = upload(client, auth, write_zip(tmp_path / "d.zip", dataset_members(2, 3, 8))).json()["id"]
        wait_for(lambda: client.get(f"/v1/datasets/{ds_id}", headers=auth).json()["status"] == "ready")  # noqa: B023
        assert client.post("/v1/jobs", headers=auth, json=_spec(ds_id)).status_code == 201
        assert client.post("/v1/jobs", headers=auth, json=_spec(ds_id)).status_code == 429


def test_stored_bytes_quota_by_declared_length_and_after_streaming(client, server, make_key, settings,
                                                                    monkeypatch, tmp_path):
    auth = make_key()
    path = write_zip(tmp_path / "d.zip", dataset_members(classes=2, per_class=3, size=8))
    size = path.stat().st_size
    monkeypatch.setattr(settings, "quota_max_stored_bytes", size + size // 2)
    assert upload(client, auth, path).status_code == 201  # size bytes used, half of it left

    # Refused from the declared Content-Length alone: the server answers without waiting for the body.
    host, port = server
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall((f"POST /v1/datasets HTTP/1.1\r\nHost: t\r\nAuthorization: {auth['Authorization']}\r\n"
                      f"Content-Type: {MULTIPART_CT}\r\nContent-Length: {size}\r\n\r\n").encode())
        status, body = read_response(sock)
    assert status == 429 and b"quota_exceeded" in body

    # Without a Content-Length the real size is checked once streamed.
    data = path.read_bytes()

    def chunks():
        yield multipart(file_part(data))

    resp = client.post("/v1/datasets", headers={**auth, "Content-Type": MULTIPART_CT}, content=chunks())
    assert resp.status_code == 429, resp.text
    assert resp.json()["error"]["details"]["quota"] == "max_stored_bytes"
    assert len(client.get("/v1/datasets", headers=auth).json()["data"]) == 1
    assert_nothing_left()

    # Deleting frees the bytes.
    ds_id = client.get("/v1/datasets", headers=auth).json()["data"][0]["id"]
    wait_for(lambda: client.get(f"/v1/datasets/{ds_id}", headers=auth).json()["status"] != "processing")
    assert client.delete(f"/v1/datasets/{ds_id}", headers=auth).status_code == 204
    assert upload(client, auth, path).status_code == 201


def test_stored_bytes_count_datasets_base_models_and_artifacts(client, world_bytes):
    from app.db import get_sessionmaker
    from app.quotas import stored_bytes

    tenant, expected = world_bytes
    with get_sessionmaker()() as s:
        assert stored_bytes(session=s, tenant=tenant) == expected
        assert stored_bytes(session=s, tenant=tenant + "-nobody") == 0


@pytest.fixture
def world_bytes(client, make_key, tmp_path):  # noqa: ANN001
    """A tenant with a dataset, a base model of its own and a job artifact; returns (tenant, total bytes)."""
    from app.db import get_sessionmaker
    from app.keys.service import authenticate

    auth = make_key()
    with get_sessionmaker()() as s:
        tenant = authenticate(session=s, key=auth["Authorization"].split(" ", 1)[1]).tenant
    path = write_zip(tmp_path / "d.zip", dataset_members(classes=2, per_class=3, size=8))
    ds = upload(client, auth, path).json()
    wait_for(lambda: client.get(f"/v1/datasets/{ds['id']}", headers=auth).json()["status"] == "ready")
    base_model(tenant)  # 18 bytes
    job = client.post("/v1/jobs", headers=auth, json=_spec(ds["id"])).json()
    attempt = client.post(f"/internal/jobs/{job['id']}/claim", headers=WORKER, json={}).json()["attempt"]
    client.put(f"/internal/jobs/{job['id']}/artifacts/safetensors?attempt={attempt}", headers=WORKER,
               content=b"a" * 1000)
    return tenant, ds["bytes"] + 18 + 1000
