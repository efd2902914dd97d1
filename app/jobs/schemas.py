"""Job schemas."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from app.models import Job
from app.schemas import Out


class JobError(BaseModel):
    code: str
    message: str


class Progress(BaseModel):
    epoch: int
    epochs: int


class JobRead(Out):
    id: str
    status: str
    dataset_id: str
    spec: dict[str, Any]
    attempt: int
    progress: Progress
    latest_metrics: dict[str, Any] | None
    model_id: str | None
    error: JobError | None
    cancel_requested_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, job: Job) -> "JobRead":
        err = JobError(code=job.error_code, message=job.error_message or "") if job.error_code else None
        return cls(id=job.id, status=job.status, dataset_id=job.dataset_id, spec=job.spec, attempt=job.attempt,
                   progress=Progress(epoch=job.progress_epoch, epochs=job.epochs),
                   latest_metrics=job.latest_metrics, model_id=job.model_id, error=err,
                   cancel_requested_at=job.cancel_requested_at, created_at=job.created_at,
                   started_at=job.started_at, finished_at=job.finished_at)


class EventRead(Out):
    id: str
    seq: int
    type: str
    message: str | None
    data: dict[str, Any] | None
    created_at: datetime


class MetricRead(Out):
    epoch: int
    train_loss: float | None
    train_accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    learning_rate: float | None
    images_per_second: float | None
    seconds: float | None


class EventPage(BaseModel):
    data: list[EventRead]
    has_more: bool


class MetricList(BaseModel):
    data: list[MetricRead]
