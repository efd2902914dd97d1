"""Every client command against the in-process API: output, JSON, exit codes, error lines."""

import hashlib
import json
import re

from tests.cli.conftest import WORKER
from tests.factories import dataset_members, write_zip

METRICS = {"train_loss": 0.9, "train_accuracy": 0.6, "val_loss": 1.0, "val_accuracy": 0.5}


def _running_job(client, auth, ds_id: str) -> tuple[str, int]:  # noqa: ANN001
    spec = {"dataset_id": ds_id, "base_model": {"arch": "resnet18", "weights": "none"},
            "hyperparameters": {"epochs": 2, "image_size": 32}}
    job_id = client.post("/v1/jobs", headers=auth, json=spec).json()["id"]
    attempt = client.post(f"/internal/jobs/{job_id}/claim", headers=WORKER, json={}).json()["attempt"]
    for epoch in (1, 2):
        client.post(f"/internal/jobs/{job_id}/metrics", headers=WORKER,
                    json={"attempt": attempt, "epoch": epoch, "metrics": METRICS})
    return job_id, attempt


def test_upload_prints_progress_and_the_validation_summary(taas, tmp_path):
    path = write_zip(tmp_path / "colours.zip", dataset_members(classes=3, per_class=6, size=8))
    res = taas("datasets", "upload", str(path), "--name", "colours")
    assert res.exit_code == 0, res.output
    assert "upload colours.zip" in res.output and "uploaded ds_" in res.output  # the progress bar, on stderr
    ds_id = re.search(r"uploaded (ds_\w+)", res.stderr).group(1)
    assert f"dataset {ds_id}" in res.stdout and "ready" in res.stdout and "3 classes" in res.stdout
    for name in ("red", "green", "blue"):
        assert re.search(rf"^ *{name} +6 *$", res.stdout, re.M), res.stdout
    assert "train" in res.stdout and "val" in res.stdout
    assert ds_id in taas("datasets", "ls").stdout
    shown = json.loads(taas("datasets", "show", ds_id, "--json").stdout)
    assert shown["id"] == ds_id and shown["class_counts"] == {"blue": 6, "green": 6, "red": 6}


def test_a_refused_upload_is_one_error_line_and_exit_1(taas, tmp_path):
    path = write_zip(tmp_path / "one.zip", dataset_members(classes=1, per_class=4, size=8))
    res = taas("datasets", "upload", str(path))
    assert res.exit_code == 1
    assert "error 4" in res.stderr and "Traceback" not in res.output
    assert taas("datasets", "show", "ds_nothere").stderr.startswith("error 404 dataset_not_found")


def test_jobs_create_dry_run_ls_show_and_cancel(taas, ready_dataset):
    ds = ready_dataset["id"]
    plan = taas("jobs", "create", "--dataset", ds, "--arch", "resnet18", "--weights", "none", "--policy", "until",
                "--until", "layer2", "--epochs", "2", "--dry-run")
    assert plan.exit_code == 0, plan.output
    assert "trainable" in plan.stdout and "layer2" in plan.stdout and "head" in plan.stdout
    bad = taas("jobs", "create", "--dataset", ds, "--epochs", "0")
    assert bad.exit_code == 1 and "validation_error" in bad.stderr and "hyperparameters.epochs" in bad.stderr

    created = taas("jobs", "create", "--dataset", ds, "--arch", "resnet18", "--weights", "none", "--epochs", "2",
                   "--lr", "0.01", "--image-size", "32", "--idempotency-key", "cli-1")
    assert created.exit_code == 0, created.output
    job_id = created.stdout.strip()
    again = taas("jobs", "create", "--dataset", ds, "--arch", "resnet18", "--weights", "none", "--epochs", "2",
                 "--lr", "0.01", "--image-size", "32", "--idempotency-key", "cli-1")
    assert again.stdout.strip() == job_id
    job = json.loads(taas("jobs", "show", job_id, "--json").stdout)
    assert job["spec"]["hyperparameters"]["learning_rate"] == 0.01 and job["spec"]["base_model"]["arch"] == "resnet18"
    assert job_id in taas("jobs", "ls", "--status", "queued").stdout
    assert "queued" in taas("jobs", "show", job_id).stdout
    assert taas("jobs", "cancel", job_id).stdout.strip() == f"{job_id} cancelled"
    twice = taas("jobs", "cancel", job_id)
    assert twice.exit_code == 1 and "job_finished" in twice.stderr


def test_watch_follows_a_job_and_exits_by_its_outcome(client, auth, taas, ready_dataset):  # noqa: ANN001
    failing, attempt = _running_job(client, auth, ready_dataset["id"])
    client.post(f"/internal/jobs/{failing}/fail", headers=WORKER, json={"attempt": attempt, "message": "out of luck"})
    res = taas("jobs", "watch", failing)
    assert res.exit_code == 1, res.output
    assert "epoch 1/2: loss 0.9000 acc 0.600" in res.stderr and "epoch 2/2" in res.stderr
    assert res.stdout.strip() == f"{failing} failed: training_error: out of luck"

    cancelled, _ = _running_job(client, auth, ready_dataset["id"])
    client.post(f"/v1/jobs/{cancelled}/cancel", headers=auth)
    client.post(f"/internal/jobs/{cancelled}/cancelled", headers=WORKER, json={"attempt": 1})
    assert taas("jobs", "watch", cancelled).exit_code == 2

    ok, attempt = _running_job(client, auth, ready_dataset["id"])
    weights = b"not really safetensors"
    client.put(f"/internal/jobs/{ok}/artifacts/safetensors?attempt={attempt}", headers=WORKER, content=weights)
    result = {"config": {"classes": ready_dataset["classes"]}, "metrics": {"val_accuracy": 0.5}}
    model_id = client.post(f"/internal/jobs/{ok}/succeed", headers=WORKER,
                           json={"attempt": attempt, "result": result}).json()["model_id"]
    res = taas("jobs", "watch", ok)
    assert res.exit_code == 0 and res.stdout.strip() == f"{ok} succeeded: model {model_id}", res.output
    assert model_id in taas("models", "ls").stdout
    shown = taas("models", "show", model_id)
    assert hashlib.sha256(weights).hexdigest() in shown.stdout and "val_accuracy" in shown.stdout


def test_models_download_checks_the_sha256(client, auth, taas, ready_dataset, tmp_path):  # noqa: ANN001
    job_id, attempt = _running_job(client, auth, ready_dataset["id"])
    weights = b"\x00weights\x01" * 1000
    client.put(f"/internal/jobs/{job_id}/artifacts/safetensors?attempt={attempt}", headers=WORKER, content=weights)
    model_id = client.post(f"/internal/jobs/{job_id}/succeed", headers=WORKER,
                           json={"attempt": attempt, "result": {"config": {"classes": ready_dataset["classes"]}}}
                           ).json()["model_id"]
    out = tmp_path / "out"
    out.mkdir()
    dest = out / "m.safetensors"
    res = taas("models", "download", model_id, "--format", "safetensors", "-o", str(dest))
    sha = hashlib.sha256(weights).hexdigest()
    assert res.exit_code == 0 and f"sha256 {sha}, verified" in res.stdout, res.output
    assert dest.read_bytes() == weights and list(out.iterdir()) == [dest]  # no partial file left
    missing = taas("models", "download", model_id, "--format", "onnx", "-o", str(out / "m.onnx"))
    assert missing.exit_code == 1 and "404" in missing.stderr and list(out.iterdir()) == [dest]


def test_configuration_errors(taas):
    res = taas("jobs", "ls", TAAS_API_KEY="")
    assert res.exit_code == 2 and "--api-key" in res.output
    assert taas("jobs", "ls", "--api-key", "taas_nope_nope").stderr.startswith("error 401")
