"""Bring-your-own backbone weights: safetensors checked against the catalogue, never unpickled."""

import pickle

import numpy as np
from safetensors.numpy import save

from core import catalog

ARCH, OTHER = "mobilenet_v3_small", "resnet18"  # small weights keep the test fast
FIRST = next(iter(catalog.get_arch(ARCH)["weights"]))


def weights_bytes(arch: str, *, break_tensor: str | None = None, extra: bool = False) -> bytes:
    tensors = {name: np.zeros(shape, dtype=np.float32) for name, shape in catalog.get_arch(arch)["weights"].items()}
    if break_tensor:
        tensors[break_tensor] = np.zeros([3], dtype=np.float32)
    if extra:
        tensors["features.0.1.num_batches_tracked"] = np.zeros([], dtype=np.int64)  # a plain state_dict() carries it
    return save(tensors)


def post(client, auth, data: bytes, arch: str = ARCH):  # noqa: ANN001
    return client.post("/v1/base-models", headers=auth, files={"file": ("w.safetensors", data)},
                       data={"arch": arch, "name": "mine"})


def test_upload_list_use_and_delete(client, auth, ready_dataset):
    resp = post(client, auth, weights_bytes(ARCH, extra=True))
    assert resp.status_code == 201, resp.text
    bm = resp.json()
    assert bm["id"].startswith("bm_") and bm["arch"] == ARCH and bm["source"] == "upload"
    assert bm["id"] in [b["id"] for b in client.get("/v1/base-models", headers=auth).json()["data"]]
    spec = {"dataset_id": ready_dataset["id"], "base_model": {"arch": ARCH, "weights": bm["id"]}}
    job = client.post("/v1/jobs", headers=auth, json=spec)
    assert job.status_code == 201, job.text
    assert client.delete(f"/v1/base-models/{bm['id']}", headers=auth).status_code == 409  # a queued job uses it
    client.post(f"/v1/jobs/{job.json()['id']}/cancel", headers=auth)
    assert client.delete(f"/v1/base-models/{bm['id']}", headers=auth).status_code == 204
    assert client.get(f"/v1/base-models/{bm['id']}", headers=auth).status_code == 404


def test_wrong_arch_for_the_job_is_invalid_combination(client, auth, ready_dataset):
    bm = post(client, auth, weights_bytes(ARCH)).json()
    spec = {"dataset_id": ready_dataset["id"], "base_model": {"arch": OTHER, "weights": bm["id"]}}
    resp = client.post("/v1/jobs", headers=auth, json=spec)
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_combination"


def test_refusals_name_the_problem(client, auth):
    resp = post(client, auth, weights_bytes(ARCH, break_tensor=FIRST))
    assert resp.status_code == 422
    err = resp.json()["error"]
    assert err["code"] == "weights_mismatch" and err["details"]["tensor"] == FIRST
    resp = post(client, auth, weights_bytes(ARCH), arch=OTHER)
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "weights_mismatch"
    resp = post(client, auth, pickle.dumps({"conv1.weight": [1.0, 2.0]}))  # a pickle disguised as safetensors
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_safetensors"
    resp = post(client, auth, weights_bytes(ARCH), arch="alexnet")
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "unknown_arch"
    resp = client.post("/v1/base-models", headers=auth, files={"file": ("w.safetensors", b"x" * 100)})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_upload"
    assert client.get("/v1/base-models", headers=auth).json()["data"] == []


def test_other_tenants_cannot_use_or_see_my_base_model(client, auth, make_key, tmp_path):
    bm = post(client, auth, weights_bytes(ARCH)).json()
    other = make_key()
    assert client.get(f"/v1/base-models/{bm['id']}", headers=other).status_code == 404
    assert client.delete(f"/v1/base-models/{bm['id']}", headers=other).status_code == 404
