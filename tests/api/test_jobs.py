"""Jobs: validation, lifecycle through the internal worker routes, idempotency, pagination."""

import hashlib
from concurrent.futures import ThreadPoolExecutor

WORKER = {"Authorization": "Bearer test-worker-token"}


def spec(ds_id: str, **over) -> dict:
    body = {"dataset_id": ds_id, "base_model": {"arch": "resnet18", "weights": "none"},
            "hyperparameters": {"epochs": 2, "image_size": 32}}
    body.update(over)
    return body


def test_create_get_list_and_cancel(client, auth, ready_dataset):
    resp = client.post("/v1/jobs", headers=auth, json=spec(ready_dataset["id"]))
    assert resp.status_code == 201, resp.text
    job = resp.json()
    assert job["status"] == "queued" and job["attempt"] == 0
    assert job["spec"]["freeze"]["policy"] == "head_only"  # defaults are filled in
    assert job["progress"] == {"epoch": 0, "epochs": 2}
    assert client.get(f"/v1/jobs/{job['id']}", headers=auth).json()["id"] == job["id"]
    cancelled = client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth).json()
    assert cancelled["status"] == "cancelled"
    again = client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_finished"
    events = client.get(f"/v1/jobs/{job['id']}/events", headers=auth).json()["data"]
    assert [e["seq"] for e in events] == [1, 2]
    assert events[-1]["data"]["to"] == "cancelled"
    # A cancelled job was never claimable.
    claim = client.post(f"/internal/jobs/{job['id']}/claim", headers=WORKER, json={})
    assert claim.status_code == 409 and claim.json()["error"]["code"] == "job_not_claimable"


def test_list_filters_and_paginates(client, auth, ready_dataset):
    ids = [client.post("/v1/jobs", headers=auth, json=spec(ready_dataset["id"])).json()["id"] for _ in range(5)]
    client.post(f"/v1/jobs/{ids[0]}/cancel", headers=auth)
    first = client.get("/v1/jobs?limit=2", headers=auth).json()
    assert [j["id"] for j in first["data"]] == ids[::-1][:2] and first["has_more"]
    rest = client.get(f"/v1/jobs?limit=10&after={first['data'][-1]['id']}", headers=auth).json()
    assert [j["id"] for j in rest["data"]] == ids[::-1][2:] and not rest["has_more"]
    cancelled = client.get("/v1/jobs?status=cancelled", headers=auth).json()["data"]
    assert [j["id"] for j in cancelled] == [ids[0]]
    assert client.get("/v1/jobs?status=bogus", headers=auth).status_code == 422


def test_invalid_specs_are_clear_4xx(client, auth, ready_dataset):
    ds = ready_dataset["id"]
    cases = [
        (spec(ds, base_model={"arch": "vgg_nope", "weights": "none"}), 422, "validation_error"),
        (spec(ds, hyperparameters={"epochs": 100000}), 422, "validation_error"),
        (spec(ds, hyperparameters={"image_size": 4096}), 422, "validation_error"),
        (spec(ds, freeze={"policy": "until", "until": "nope"}), 422, "validation_error"),
        (spec(ds, surprise=1), 422, "validation_error"),
        (spec("ds_doesnotexist"), 404, "dataset_not_found"),
        (spec(ds, base_model={"arch": "resnet18", "weights": "imagenet"}), 422, "weights_unavailable"),
        (spec(ds, base_model={"arch": "resnet18", "weights": "bm_nope"}), 422, "weights_unavailable"),
    ]
    for body, status, code in cases:
        resp = client.post("/v1/jobs", headers=auth, json=body)
        assert resp.status_code == status, (body, resp.text)
        assert resp.json()["error"]["code"] == code, (body, resp.text)
    assert client.post("/v1/jobs", headers={**auth, "Content-Type": "application/json"},
                       content=b"{not json").status_code == 422


def test_dry_run_returns_plan_without_queueing(client, auth, ready_dataset):
    body = spec(ready_dataset["id"], freeze={"policy": "until", "until": "layer2"})
    resp = client.post("/v1/jobs?dry_run=true", headers=auth, json=body)
    assert resp.status_code == 200, resp.text
    plan = resp.json()["plan"]
    groups = {g["name"]: g for g in plan["block_groups"]}
    assert groups["layer2"]["trainable_params"] == 0 and groups["layer3"]["frozen_params"] == 0
    assert groups["head"]["trainable_params"] > 0
    assert client.get("/v1/jobs", headers=auth).json()["data"] == []


def test_dataset_not_ready_is_409(client, auth, tmp_path):
    from app.db import get_sessionmaker
    from app.models import Dataset
    from tests.api.conftest import upload
    from tests.factories import dataset_members, write_zip

    resp = upload(client, auth, write_zip(tmp_path / "d.zip", dataset_members(classes=2, per_class=3, size=8)))
    ds_id = resp.json()["id"]
    with get_sessionmaker()() as s:  # hold it in processing deterministically
        s.get(Dataset, ds_id).status = "failed"
        s.commit()
    resp = client.post("/v1/jobs", headers=auth, json=spec(ds_id))
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "dataset_not_ready"


def test_idempotency_key_on_jobs(client, auth, ready_dataset):
    body = spec(ready_dataset["id"])
    h = {**auth, "Idempotency-Key": "job-1"}
    a, b = client.post("/v1/jobs", headers=h, json=body), client.post("/v1/jobs", headers=h, json=body)
    assert a.status_code == b.status_code == 201 and a.json()["id"] == b.json()["id"]
    c = client.post("/v1/jobs", headers=h, json=spec(ready_dataset["id"], hyperparameters={"epochs": 3}))
    assert c.status_code == 409 and c.json()["error"]["code"] == "idempotency_mismatch"
    assert len(client.get("/v1/jobs", headers=auth).json()["data"]) == 1


def test_worker_protocol_end_to_end_without_training(client, auth, ready_dataset):
    job = client.post("/v1/jobs", headers=auth, json=spec(ready_dataset["id"])).json()
    assert client.post(f"/internal/jobs/{job['id']}/claim", json={}).status_code == 401
    # Two workers race for the same message: exactly one wins.
    with ThreadPoolExecutor(4) as pool:
        claims = list(pool.map(lambda _: client.post(f"/internal/jobs/{job['id']}/claim", headers=WORKER,
                                                     json={"worker": "w"}), range(4)))
    winners = [c for c in claims if c.status_code == 200]
    assert len(winners) == 1, [c.text for c in claims]
    claim = winners[0].json()
    attempt = claim["attempt"]
    assert attempt == 1 and claim["dataset"]["sha256"] == ready_dataset["sha256"]
    archive = client.get(f"/internal/datasets/{ready_dataset['id']}/archive", headers=WORKER)
    assert hashlib.sha256(archive.content).hexdigest() == ready_dataset["sha256"]
    manifest = client.get(f"/internal/datasets/{ready_dataset['id']}/manifest", headers=WORKER).json()
    assert len(manifest["items"]) == ready_dataset["num_images"]

    hb = client.post(f"/internal/jobs/{job['id']}/heartbeat", headers=WORKER, json={"attempt": attempt})
    assert hb.json() == {"stop": False}
    stale = client.post(f"/internal/jobs/{job['id']}/heartbeat", headers=WORKER, json={"attempt": 7})
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "stale_attempt"
    m = {"train_loss": 1.0, "train_accuracy": 0.5, "val_loss": 1.1, "val_accuracy": 0.4, "learning_rate": 0.001,
         "images_per_second": 10.0, "seconds": 1.0}
    for epoch in (1, 1, 2):  # a retried post replaces, never doubles
        r = client.post(f"/internal/jobs/{job['id']}/metrics", headers=WORKER,
                        json={"attempt": attempt, "epoch": epoch, "metrics": m})
        assert r.status_code == 200, r.text
    rows = client.get(f"/v1/jobs/{job['id']}/metrics", headers=auth).json()["data"]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth).json()["cancel_requested_at"]
    assert client.post(f"/internal/jobs/{job['id']}/heartbeat", headers=WORKER,
                       json={"attempt": attempt}).json() == {"stop": True}

    base = f"/internal/jobs/{job['id']}"
    early = client.post(f"{base}/succeed", headers=WORKER, json={"attempt": attempt, "result": {}})
    assert early.status_code == 422 and early.json()["error"]["code"] == "artifact_missing"
    weights = b"pretend-safetensors"
    up = client.put(f"/internal/jobs/{job['id']}/artifacts/safetensors?attempt={attempt}", headers=WORKER,
                    content=weights)
    assert up.json()["sha256"] == hashlib.sha256(weights).hexdigest()
    result = {"config": {"classes": ready_dataset["classes"], "preprocessing": {"crop": 32}},
              "metrics": {"val_accuracy": 0.4}}
    done = client.post(f"{base}/succeed", headers=WORKER, json={"attempt": attempt, "result": result})
    model_id = done.json()["model_id"]
    again = client.post(f"{base}/succeed", headers=WORKER, json={"attempt": attempt, "result": result})
    assert again.json()["model_id"] == model_id  # a retried finish is idempotent
    final = client.get(f"/v1/jobs/{job['id']}", headers=auth).json()
    assert final["status"] == "succeeded" and final["model_id"] == model_id
    model = client.get(f"/v1/models/{model_id}", headers=auth).json()
    assert model["classes"] == ready_dataset["classes"]
    assert model["lineage"]["dataset_sha256"] == ready_dataset["sha256"]
    dl = client.get(f"/v1/models/{model_id}/artifacts/safetensors", headers=auth)
    assert dl.content == weights and dl.headers["x-checksum-sha256"] == hashlib.sha256(weights).hexdigest()
    assert client.get(f"/v1/models/{model_id}/artifacts/onnx", headers=auth).status_code == 404
    late = client.post(f"/internal/jobs/{job['id']}/fail", headers=WORKER,
                       json={"attempt": attempt, "message": "late"})
    assert late.status_code == 409
    statuses = [e["data"]["to"] for e in client.get(f"/v1/jobs/{job['id']}/events", headers=auth).json()["data"]
                if e["type"] == "status"]
    assert statuses == ["queued", "running", "succeeded"]


def test_meaningless_combinations_are_422_invalid_combination(client, auth, ready_dataset):
    ds = ready_dataset["id"]
    cases = [
        (spec(ds, regularization={"kind": "l2sp", "alpha": 0.5}), "regularization"),  # with head_only
        (spec(ds, freeze={"policy": "none", "head_epochs": 2}), "freeze"),
        (spec(ds, hyperparameters={"epochs": 2, "warmup_epochs": 2, "image_size": 32}), "hyperparameters"),
        (spec(ds, hyperparameters={"optimizer": "adam", "nesterov": True, "image_size": 32}), "hyperparameters"),
    ]
    for body, field in cases:
        for dry in ("", "?dry_run=true"):
            resp = client.post(f"/v1/jobs{dry}", headers=auth, json=body)
            assert resp.status_code == 422, (body, resp.text)
            err = resp.json()["error"]
            assert err["code"] == "invalid_combination" and err["details"]["field"].startswith(field), err
