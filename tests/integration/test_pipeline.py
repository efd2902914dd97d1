"""Upload → job → worker → model, in production mode on real PostgreSQL, Redis and a Celery worker process."""

import io
import random

from PIL import Image

from tests.factories import COLOURS, dataset_members, image_bytes, write_zip
from tests.procs import poll


def held_out(classes: list[str], n: int = 8) -> list[tuple[Image.Image, str]]:
    rng = random.Random(1234)  # other images than the training set's
    return [(Image.open(io.BytesIO(image_bytes(COLOURS[c], 16, rng))), c) for c in classes for _ in range(n)]


def test_head_only_job_from_upload_to_a_model_that_predicts(stack, tmp_path):
    from worker.training.artifact import load_model, predict

    http = stack.client()
    path = write_zip(tmp_path / "colours.zip", dataset_members(classes=3, per_class=16, size=16))
    with open(path, "rb") as f:
        ds = http.post("/v1/datasets", files={"file": ("colours.zip", f)}).json()
    ds = poll(lambda: (d := http.get(f"/v1/datasets/{ds['id']}").json())["status"] == "ready" and d, 60,
              "dataset ready")
    spec = {"dataset_id": ds["id"], "base_model": {"arch": "efficientnet_lite0", "weights": "imagenet"},
            "freeze": {"policy": "head_only"},
            "hyperparameters": {"epochs": 3, "batch_size": 16, "learning_rate": 0.01, "image_size": 32}}
    resp = http.post("/v1/jobs", json=spec)
    assert resp.status_code == 201, resp.text
    job_id = resp.json()["id"]
    job = poll(lambda: (j := http.get(f"/v1/jobs/{job_id}").json())["status"] in ("succeeded", "failed",
                                                                                   "cancelled") and j,
               300, "job to finish")
    assert job["status"] == "succeeded", (job, stack.worker.tail())
    assert job["attempt"] == 1 and job["progress"] == {"epoch": 3, "epochs": 3}

    rows = http.get(f"/v1/jobs/{job_id}/metrics").json()["data"]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert all(r["images_per_second"] > 0 and r["seconds"] > 0 and r["train_loss"] is not None for r in rows)
    events = http.get(f"/v1/jobs/{job_id}/events").json()["data"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))

    # The ONNX export runs after the job has succeeded, so it never delays it: wait for it here.
    model = poll(lambda: (m := http.get(f"/v1/models/{job['model_id']}").json())
                 and any(a["format"] == "onnx" for a in m["artifacts"]) and m, 60, "the ONNX artifact")
    onnx = next(a for a in model["artifacts"] if a["format"] == "onnx")
    assert onnx["meta"]["max_abs_diff"] < 1e-3
    assert model["classes"] == ds["classes"] and model["arch"] == "efficientnet_lite0"
    assert model["lineage"]["base_weights_sha256"] and model["lineage"]["dataset_sha256"] == ds["sha256"]
    assert {a["format"] for a in model["artifacts"]} >= {"safetensors", "config"}
    for fmt, name in (("safetensors", "model.safetensors"), ("config", "config.json")):
        dl = http.get(f"/v1/models/{model['id']}/artifacts/{fmt}")
        assert dl.status_code == 200
        (tmp_path / name).write_bytes(dl.content)
        sha = next(a["sha256"] for a in model["artifacts"] if a["format"] == fmt)
        assert dl.headers["x-checksum-sha256"] == sha
    net, config = load_model((tmp_path / "model.safetensors", tmp_path / "config.json"))
    samples = held_out(config["classes"])
    preds = predict(net, config, [img for img, _ in samples], top_k=1)
    accuracy = sum(p[0][0] == label for p, (_, label) in zip(preds, samples, strict=True)) / len(samples)
    assert accuracy >= 0.8, accuracy  # chance is 1/3


def test_an_exception_in_training_fails_the_job_with_a_readable_error(stack, tmp_path):
    from tests.integration.conftest import FAULT_SEED

    http = stack.client()
    path = write_zip(tmp_path / "small.zip", dataset_members(classes=2, per_class=6, size=8))
    with open(path, "rb") as f:
        ds = http.post("/v1/datasets", files={"file": ("small.zip", f)}).json()
    poll(lambda: http.get(f"/v1/datasets/{ds['id']}").json()["status"] == "ready", 60, "dataset ready")
    spec = {"dataset_id": ds["id"], "base_model": {"arch": "resnet18", "weights": "none"},
            "hyperparameters": {"epochs": 3, "image_size": 16, "seed": FAULT_SEED}}
    job_id = http.post("/v1/jobs", json=spec).json()["id"]
    job = poll(lambda: (j := http.get(f"/v1/jobs/{job_id}").json())["status"] not in ("queued", "running") and j,
               120, "job to finish")
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "training_error"
    assert "injected fault after epoch 1" in job["error"]["message"]
    assert job["model_id"] is None and job["finished_at"]
    assert [r["epoch"] for r in http.get(f"/v1/jobs/{job_id}/metrics").json()["data"]] == [1]
