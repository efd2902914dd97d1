"""job_json (the hot GET's serialiser) writes exactly what JobRead does, byte for byte."""

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from app.jobs.schemas import JobRead, job_json

T0 = datetime(2026, 11, 28, 9, 2, 0, 0, tzinfo=UTC)  # microsecond 0: still written with six digits
T1 = datetime(2026, 11, 28, 9, 2, 1, 123456, tzinfo=UTC)


def job(**over: object) -> SimpleNamespace:
    base = {"id": "job_01jdr1y3h5s8p2w7d4f6g9k0m1", "status": "running", "dataset_id": "ds_x", "attempt": 1,
            "spec": {"base_model": {"arch": "resnet18", "weights": "none"}, "hyperparameters": {
                "learning_rate": 0.001, "epochs": 3, "mixup": None, "tiny": 1e-7, "big": 2**53 + 1}, "name": "zoë ✓"},
            "progress_epoch": 2, "epochs": 3, "model_id": None, "error_code": None, "error_message": None,
            "latest_metrics": {"val_accuracy": 0.1 + 0.2, "train_loss": 1.0, "seconds": 12},
            "cancel_requested_at": None, "created_at": T0, "started_at": T1, "finished_at": None}
    return SimpleNamespace(**{**base, **over})


@pytest.mark.parametrize("over", [
    {},
    {"status": "failed", "error_code": "worker_lost", "error_message": None, "finished_at": T1},
    {"status": "failed", "error_code": "bad", "error_message": "a \"quoted\"\nmessage"},
    {"status": "queued", "attempt": 0, "progress_epoch": 0, "latest_metrics": None, "started_at": None},
    {"status": "succeeded", "model_id": "model_x", "cancel_requested_at": T0, "finished_at": T0},
])
def test_job_json_is_jobread_byte_for_byte(over: dict):
    j = job(**over)
    assert job_json(j) == JobRead.of(j).model_dump_json().encode()
