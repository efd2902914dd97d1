"""Helpers shared by the security tests: raw multipart bodies, raw HTTP, resources made without training."""

import re
import socket

from tests.factories import dataset_members, write_zip
from tests.security.conftest import WORKER, upload, wait_for

MULTIPART_CT = "multipart/form-data; boundary=b"


def multipart(*parts: bytes, boundary: str = "b", end: bool = True) -> bytes:
    """A multipart body of the given parts (each its headers, a blank line and data)."""
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts)
    return body + (b"--" + boundary.encode() + b"--\r\n" if end else b"")


def file_part(data: bytes, field: str = "file") -> bytes:
    return (f'Content-Disposition: form-data; name="{field}"; filename="d.zip"\r\n'
            "Content-Type: application/zip\r\n\r\n").encode() + data


def name_part(value: bytes) -> bytes:
    return b'Content-Disposition: form-data; name="name"\r\n\r\n' + value


def upload_head(auth: dict[str, str], extra: str) -> bytes:
    """The request line and headers of a raw dataset upload; extra ends each header with CRLF."""
    return (f"POST /v1/datasets HTTP/1.1\r\nHost: test\r\nAuthorization: {auth['Authorization']}\r\n"
            f"Content-Type: {MULTIPART_CT}\r\n{extra}\r\n").encode()


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Read one HTTP response (status, body) until it is complete or the server closes."""
    data = b""
    sock.settimeout(10)
    while b"\r\n\r\n" not in data or not _complete(data):
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.search(rb"content-length: *(\d+)", head, re.I)
    return bool(m) and len(body) >= int(m.group(1))


def ready_dataset(client, headers: dict[str, str], folder) -> dict:  # noqa: ANN001
    """Upload a small two-class dataset and wait until it is ready."""
    path = write_zip(folder / "ds.zip", dataset_members(classes=2, per_class=3, size=8))
    resp = upload(client, headers, path)
    assert resp.status_code == 201, resp.text
    ds_id = resp.json()["id"]
    return wait_for(lambda: (r := client.get(f"/v1/datasets/{ds_id}", headers=headers).json())["status"]
                    == "ready" and r)


def job_spec(ds_id: str, **over) -> dict:
    return {"dataset_id": ds_id, "base_model": {"arch": "resnet18", "weights": "none"},
            "hyperparameters": {"epochs": 1, "image_size": 32}, **over}


def succeeded_job(client, headers: dict[str, str], dataset: dict, artifact: bytes = b"weights") -> tuple[str, str]:  # noqa: ANN001
    """A job finished through the worker protocol without training; returns (job id, model id)."""
    job = client.post("/v1/jobs", headers=headers, json=job_spec(dataset["id"])).json()
    claim = client.post(f"/internal/jobs/{job['id']}/claim", headers=WORKER, json={"worker": "w"})
    assert claim.status_code == 200, claim.text
    attempt = claim.json()["attempt"]
    up = client.put(f"/internal/jobs/{job['id']}/artifacts/safetensors?attempt={attempt}", headers=WORKER,
                    content=artifact)
    assert up.status_code == 200, up.text
    done = client.post(f"/internal/jobs/{job['id']}/succeed", headers=WORKER,
                       json={"attempt": attempt, "result": {"config": {"classes": dataset["classes"]}}})
    assert done.status_code == 200, done.text
    return job["id"], done.json()["model_id"]


def base_model(tenant: str, data: bytes = b"not really weights") -> str:
    """A base-model row of the tenant, inserted directly (the upload route checks real weights)."""
    from app.db import get_sessionmaker
    from app.models import BaseWeights
    from app.storage import get_storage
    from core.ids import new_id

    bm_id = new_id("bm")
    key = f"base_models/{bm_id}.safetensors"
    size, sha = get_storage().put_bytes(key, data)
    with get_sessionmaker()() as s:
        s.add(BaseWeights(id=bm_id, tenant=tenant, arch="resnet18", source="upload", sha256=sha, bytes=size,
                          blob_key=key))
        s.commit()
    return bm_id
