"""Job schemas."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic_core import to_json

from app.models import Job
from app.schemas import Out, Stamp, rfc3339


class JobError(BaseModel):
    code: str
    message: str


class Progress(BaseModel):
    epoch: int
    epochs: int


_SPEC = {"dataset_id": "ds_01jdr1x8b2n4m6q8s0t2w4y6a8",
         "base_model": {"arch": "efficientnet_lite0", "weights": "imagenet"},
         "freeze": {"policy": "head_only", "batch_norm": "frozen"}, "head": {"dropout": 0.0},
         "hyperparameters": {"epochs": 10, "batch_size": 32, "learning_rate": 0.001, "optimizer": "adam",
                             "image_size": 224, "seed": 0},
         "regularization": {"kind": "none", "alpha": 0.0}}
_METRICS = {"epoch": 4, "train_loss": 0.21, "train_accuracy": 0.93, "val_loss": 0.25, "val_accuracy": 0.91,
            "learning_rate": 0.001, "images_per_second": 412.5, "seconds": 2.3}


class JobRead(Out):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "job_01jdr1y3h5s8p2w7d4f6g9k0m1", "status": "running", "dataset_id": _SPEC["dataset_id"], "spec": _SPEC,
        "attempt": 1, "progress": {"epoch": 4, "epochs": 10}, "latest_metrics": _METRICS, "model_id": None,
        "error": None, "cancel_requested_at": None, "created_at": "2026-11-28T09:02:00.000000Z",
        "started_at": "2026-11-28T09:02:01.000000Z", "finished_at": None}]})

    id: str
    status: str
    dataset_id: str
    spec: dict[str, Any]
    attempt: int
    progress: Progress
    latest_metrics: dict[str, Any] | None
    model_id: str | None
    error: JobError | None
    cancel_requested_at: Stamp | None
    created_at: Stamp
    started_at: Stamp | None
    finished_at: Stamp | None

    @classmethod
    def of(cls, job: Job) -> "JobRead":
        err = JobError(code=job.error_code, message=job.error_message or "") if job.error_code else None
        return cls(id=job.id, status=job.status, dataset_id=job.dataset_id, spec=job.spec, attempt=job.attempt,
                   progress=Progress(epoch=job.progress_epoch, epochs=job.epochs),
                   latest_metrics=job.latest_metrics, model_id=job.model_id, error=err,
                   cancel_requested_at=job.cancel_requested_at, created_at=job.created_at,
                   started_at=job.started_at, finished_at=job.finished_at)


def job_json(job: Any) -> bytes:
    """JobRead.of(job).model_dump_json(), byte for byte, without building the models (the hot GET: about a third
    of the time); tests/api/test_read_paths.py compares the two."""
    stamp = _stamp
    return to_json({
        "id": job.id, "status": job.status, "dataset_id": job.dataset_id, "spec": job.spec, "attempt": job.attempt,
        "progress": {"epoch": job.progress_epoch, "epochs": job.epochs}, "latest_metrics": job.latest_metrics,
        "model_id": job.model_id,
        "error": {"code": job.error_code, "message": job.error_message or ""} if job.error_code else None,
        "cancel_requested_at": stamp(job.cancel_requested_at), "created_at": stamp(job.created_at),
        "started_at": stamp(job.started_at), "finished_at": stamp(job.finished_at)})


def _stamp(value: datetime | None) -> str | None:
    return None if value is None else rfc3339(value)


class EventRead(Out):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "evt_01jdr1z0a2b4c6d8e0f2g4h6j8", "seq": 7, "type": "metrics", "message": "epoch 4/10",
        "data": _METRICS, "created_at": "2026-11-28T09:02:10.000000Z"}]})

    id: str
    seq: int
    type: str
    message: str | None
    data: dict[str, Any] | None
    created_at: Stamp


class MetricRead(Out):
    model_config = ConfigDict(json_schema_extra={"examples": [_METRICS]})

    epoch: int
    train_loss: float | None
    train_accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    val_top5_accuracy: float | None = None  # with more than 5 classes
    learning_rate: float | None
    images_per_second: float | None
    seconds: float | None


class EventPage(BaseModel):
    data: list[EventRead]
    has_more: bool


class MetricList(BaseModel):
    data: list[MetricRead]


class PlanGroup(BaseModel):
    name: str
    trainable_params: int
    frozen_params: int
    learning_rate: float
    trainable_from_epoch: int | None  # None: frozen in every epoch


class PlanPhase(BaseModel):
    first_epoch: int
    last_epoch: int
    frozen_groups: list[str]
    trainable_groups: list[str]


class Plan(BaseModel):
    block_groups: list[PlanGroup]
    trainable_params: int
    frozen_params: int
    phases: list[PlanPhase]
    backbone_features_cached: bool


class DryRunRead(BaseModel):
    """POST /v1/jobs?dry_run=true: the spec as a job would run it (defaults filled in) and its plan."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "spec": _SPEC, "weights_id": "bm_01jdr0m3a6c9e2g5j8l1n4q7s0", "dataset_status": "ready",
        "plan": {"block_groups": [
            {"name": "stem", "trainable_params": 0, "frozen_params": 928, "learning_rate": 0.0,
             "trainable_from_epoch": None},
            {"name": "head", "trainable_params": 2562, "frozen_params": 0, "learning_rate": 0.001,
             "trainable_from_epoch": 1}],
            "trainable_params": 2562, "frozen_params": 928,
            "phases": [{"first_epoch": 1, "last_epoch": 10, "frozen_groups": ["stem"], "trainable_groups": ["head"]}],
            "backbone_features_cached": True}}]})

    spec: dict[str, Any]
    weights_id: str | None
    dataset_status: str
    plan: Plan
