"""The client commands end to end on the real stack: upload, train with --wait, models, download, predict."""

import hashlib
import json
import random
import re

from typer.testing import CliRunner, Result

from tests.factories import COLOURS, dataset_members, image_bytes, write_zip
from tests.integration.conftest import FAULT_SEED
from tests.procs import poll


def _taas(stack, *args: str) -> Result:  # noqa: ANN001
    from client.cli import cli

    env = {"TAAS_API_URL": stack.url, "TAAS_API_KEY": stack.headers["Authorization"].split()[1], "COLUMNS": "200"}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def _upload(stack, path) -> str:  # noqa: ANN001
    res = _taas(stack, "datasets", "upload", str(path))
    assert res.exit_code == 0, res.output
    return re.search(r"dataset (ds_\w+)", res.stdout).group(1)


def test_cli_upload_train_download_and_predict(stack, tmp_path):
    path = write_zip(tmp_path / "colours.zip", dataset_members(classes=3, per_class=16, size=16))
    res = _taas(stack, "datasets", "upload", str(path), "--name", "colours")
    assert res.exit_code == 0, res.output
    assert "upload colours.zip" in res.stderr and "ready" in res.stdout and "3 classes" in res.stdout
    assert all(re.search(rf"^ *{c} +16 *$", res.stdout, re.M) for c in ("red", "green", "blue")), res.stdout
    ds_id = re.search(r"dataset (ds_\w+)", res.stdout).group(1)

    res = _taas(stack, "jobs", "create", "--dataset", ds_id, "--arch", "efficientnet_lite0", "--weights", "imagenet",
                "--policy", "head_only", "--epochs", "3", "--batch-size", "16", "--lr", "0.01", "--image-size", "32",
                "--wait")
    assert res.exit_code == 0, (res.output, stack.worker.tail())
    assert [int(e) for e in re.findall(r"epoch (\d)/3:", res.stderr)] == [1, 2, 3]
    job_id, model_id = re.search(r"(job_\w+) succeeded: model (model_\w+)", res.stdout).groups()
    assert job_id in _taas(stack, "jobs", "ls").stdout and model_id in _taas(stack, "models", "ls").stdout

    model = json.loads(_taas(stack, "models", "show", model_id, "--json").stdout)
    sha = next(a["sha256"] for a in model["artifacts"] if a["format"] == "safetensors")
    assert sha in _taas(stack, "models", "show", model_id).stdout
    dest = tmp_path / "model.safetensors"
    res = _taas(stack, "models", "download", model_id, "--format", "safetensors", "--output", str(dest))
    assert res.exit_code == 0 and f"sha256 {sha}, verified" in res.stdout, res.output
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == sha

    # Predictions run on the ONNX artifact, which is exported after the job has succeeded.
    http = stack.client()
    poll(lambda: any(a["format"] == "onnx" for a in http.get(f"/v1/models/{model_id}").json()["artifacts"]), 120,
         "the ONNX artifact")
    rng = random.Random(99)  # other images than the training set's
    images = []
    for colour in ("red", "green", "blue"):
        images.append(tmp_path / f"{colour}.png")
        images[-1].write_bytes(image_bytes(COLOURS[colour], 16, rng))
    res = _taas(stack, "predict", model_id, *map(str, images), "--top-k", "2")
    assert res.exit_code == 0, res.output
    rows = [line for line in res.stdout.splitlines() if ".png" in line]
    assert len(rows) == 3, res.stdout
    for colour, row in zip(("red", "green", "blue"), rows, strict=True):  # the top label is the right colour
        assert row.split()[:2] == [f"{colour}.png", colour], res.stdout


def test_cli_watch_exits_non_zero_when_the_job_fails(stack, tmp_path):
    ds_id = _upload(stack, write_zip(tmp_path / "small.zip", dataset_members(classes=2, per_class=6, size=8)))
    res = _taas(stack, "jobs", "create", "--dataset", ds_id, "--arch", "resnet18", "--weights", "none",
                "--epochs", "3", "--image-size", "16", "--seed", str(FAULT_SEED))
    assert res.exit_code == 0, res.output
    job_id = res.stdout.strip()
    res = _taas(stack, "jobs", "watch", job_id)
    assert res.exit_code == 1, res.output
    assert "epoch 1/3" in res.stderr and "epoch 2/3" not in res.stderr
    assert res.stdout.startswith(f"{job_id} failed: training_error:") and "injected fault after epoch 1" in res.stdout
