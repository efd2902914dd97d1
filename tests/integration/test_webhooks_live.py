"""Webhooks in production mode: a real training job fails in a Celery worker, and the API process (the only one
with a database) delivers one signed job.failed to a receiver on 127.0.0.1."""

import subprocess

import httpx

from tests.factories import dataset_members, write_zip
from tests.procs import ROOT, poll, taas
from tests.webhook_receiver import serve


def test_a_job_that_fails_in_a_real_worker_is_delivered_once_signed(stack, tmp_path):
    from tests.integration.conftest import FAULT_SEED

    # Endpoints are an admin's to add: a key of the stack's tenant with that scope.
    out = subprocess.run(taas("keys", "create", "--tenant", "integration", "--scopes", "admin"), env=stack.env,
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout
    http = httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {out.strip().splitlines()[-1]}"},
                        timeout=30)
    with serve() as receiver:
        made = http.post("/v1/webhooks", json={"url": receiver.url("/live"), "events": [
            "job.succeeded", "job.failed", "job.cancelled"]})
        assert made.status_code == 201, made.text
        receiver.secrets["/live"] = made.json()["secret"]

        path = write_zip(tmp_path / "small.zip", dataset_members(classes=2, per_class=6, size=8))
        with open(path, "rb") as f:
            ds = http.post("/v1/datasets", files={"file": ("small.zip", f)}).json()
        poll(lambda: http.get(f"/v1/datasets/{ds['id']}").json()["status"] == "ready", 60, "dataset ready")
        spec = {"dataset_id": ds["id"], "base_model": {"arch": "resnet18", "weights": "none"},
                "hyperparameters": {"epochs": 3, "image_size": 16, "seed": FAULT_SEED}}
        job_id = http.post("/v1/jobs", json=spec).json()["id"]

        log = poll(lambda: (d := http.get(f"/v1/webhooks/{made.json()['id']}/deliveries").json()["data"])
                   and d[0]["status"] != "pending" and d, 180, "the delivery")
        assert len(log) == 1 and log[0]["status"] == "succeeded" and log[0]["attempts"] == 1, log
        [got] = receiver.at("/live")
        assert got.verified and got.headers["webhook-id"] == log[0]["id"]
        assert got.payload["type"] == "job.failed" and got.payload["data"]["id"] == job_id
        assert got.payload["data"]["error"]["code"] == "training_error"
