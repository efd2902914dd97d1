"""The worker-facing rules: claim, heartbeat, metrics, events, artifacts, finish. Every post is fenced by attempt."""

import math
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app import garbage, observability
from app.config import get_settings
from app.errors import Conflict, Invalid, NotFound
from app.jobs.cleanup import drop_checkpoint
from app.jobs.events import append_event
from app.jobs.transitions import cas
from app.models import Artifact, BaseWeights, Dataset, Job, JobMetric, Model, utcnow
from core.ids import new_id
from core.states import JobStatus

METRIC_FIELDS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_top5_accuracy", "learning_rate",
                 "images_per_second", "seconds")


def _lease():
    return utcnow() + timedelta(seconds=get_settings().lease_seconds)


def _job(session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found", code="job_not_found")
    return job


def fenced(session: Session, job_id: str, attempt: int) -> Job:
    """The running job if attempt is current, else 409 stale_attempt (the worker must stop)."""
    job = _job(session, job_id)
    if job.status != JobStatus.running or job.attempt != attempt:
        raise Conflict(f"attempt {attempt} no longer holds job {job_id} ({job.status}, attempt {job.attempt})",
                       code="stale_attempt", details={"status": job.status, "attempt": job.attempt})
    return job


def claim(*, session: Session, job_id: str, worker: str) -> dict[str, Any]:
    """Compare-and-set queued -> running with attempt + 1; returns what the worker needs."""
    job = _job(session, job_id)
    if job.status != JobStatus.queued:
        raise Conflict(f"job {job_id} is {job.status}", code="job_not_claimable", details={"status": job.status})
    attempt = job.attempt + 1
    stmt = update(Job).where(Job.id == job_id, Job.status == JobStatus.queued, Job.attempt == job.attempt)
    moved = session.execute(stmt.values(status=JobStatus.running, attempt=attempt, lease_expires_at=_lease(),
                                        started_at=job.started_at or utcnow())
                            .returning(*observability.JOB_TIMES)).first()
    if moved is None:
        session.rollback()
        raise Conflict(f"job {job_id} was claimed by another worker", code="job_not_claimable")
    append_event(session, job_id, "status", f"running (attempt {attempt}) on {worker}",
                 {"from": "queued", "to": "running", "attempt": attempt, "worker": worker})
    observability.job_moved(session, job_id, JobStatus.queued, JobStatus.running, times=moved)
    # Read what the worker needs in the same transaction: no second one after the commit.
    ds = session.get(Dataset, job.dataset_id)
    usable = ds is not None and ds.manifest_key is not None
    weights = _weights_ref(session, job.weights_id) if usable else None
    session.commit()
    if not usable:
        fail(session=session, job_id=job_id, attempt=attempt, code="dataset_missing",
             message="the job's dataset was deleted")
        raise Conflict("the job's dataset is gone", code="job_not_claimable")
    return {"job_id": job_id, "attempt": attempt, "spec": job.spec,
            "max_batch_pixels": get_settings().max_batch_pixels,  # the cap the spec was accepted under
            "dataset": {"id": ds.id, "sha256": ds.sha256, "classes": ds.classes},
            "weights": weights, "heartbeat_seconds": get_settings().lease_seconds / 4,
            "checkpoint": ({"epoch": job.checkpoint_epoch, "sha256": job.checkpoint_sha256}
                           if job.checkpoint_key else None)}


def _weights_ref(session: Session, weights_id: str | None) -> dict[str, Any] | None:
    if weights_id is None:
        return None
    if weights_id.startswith("bm_"):
        bm = session.get(BaseWeights, weights_id)
        return {"id": bm.id, "sha256": bm.sha256, "kind": "base_model"}
    art = session.scalars(select(Artifact).where(Artifact.model_id == weights_id,
                                                 Artifact.format == "safetensors")).one()
    return {"id": weights_id, "sha256": art.sha256, "kind": "model"}


def weights_blob(*, session: Session, weights_id: str) -> str:
    """Blob key of a base model's or model's safetensors."""
    if weights_id.startswith("bm_"):
        bm = session.get(BaseWeights, weights_id)
        if bm:
            return bm.blob_key
    else:
        art = session.scalars(select(Artifact).where(Artifact.model_id == weights_id,
                                                     Artifact.format == "safetensors")).first()
        if art:
            return art.blob_key
    raise NotFound(f"weights {weights_id} not found", code="weights_not_found")


def heartbeat(*, session: Session, job_id: str, attempt: int) -> dict[str, Any]:
    """Renew the lease; the answer says whether to stop (cancel requested)."""
    try:
        job = fenced(session, job_id, attempt)
    except Conflict:
        observability.heartbeat("stale")
        raise
    job.lease_expires_at = _lease()
    session.commit()
    observability.heartbeat("stop" if job.cancel_requested_at is not None else "continue")
    return {"stop": job.cancel_requested_at is not None}


def record_metrics(*, session: Session, job_id: str, attempt: int, epoch: int, values: dict[str, Any]) -> None:
    """Upsert the epoch's row (a retried post or a re-trained epoch replaces it) and add a metrics event."""
    _upsert_metrics(session, fenced(session, job_id, attempt), attempt, epoch, values)
    session.commit()


def store_checkpoint(*, session: Session, job_id: str, attempt: int, epoch: int, blob_key: str, sha256: str,
                     values: dict[str, Any] | None) -> None:
    """Point the job at a newer checkpoint and record that epoch's metrics, in one transaction."""
    job = fenced(session, job_id, attempt)
    if job.checkpoint_epoch is not None and epoch < job.checkpoint_epoch:
        raise Conflict(f"checkpoint of epoch {epoch} is older than the stored one ({job.checkpoint_epoch})",
                       code="stale_checkpoint")
    if job.checkpoint_key != blob_key:
        garbage.discard(session, [job.checkpoint_key])
    job.checkpoint_epoch, job.checkpoint_key, job.checkpoint_sha256 = epoch, blob_key, sha256
    if values is not None:
        _upsert_metrics(session, job, attempt, epoch, values)
    session.commit()


def release(*, session: Session, job_id: str, attempt: int) -> None:
    """A worker shutting down hands its job back: running -> queued without spending an attempt."""
    fenced(session, job_id, attempt)
    if not cas(session, job_id, JobStatus.running, JobStatus.queued, attempt=attempt,
               message=f"attempt {attempt} handed back by a worker shutting down", lease_expires_at=None,
               enqueued_at=None, enqueue_count=0):
        session.rollback()
        raise Conflict("job moved while releasing", code="stale_attempt")
    session.commit()


def _finite(value: Any) -> float | None:
    """A float JSON can hold: NaN and infinities (a diverged loss) are stored as null."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _upsert_metrics(session: Session, job: Job, attempt: int, epoch: int, values: dict[str, Any]) -> None:
    job_id = job.id
    if not 1 <= epoch <= job.epochs:
        raise Invalid(f"epoch {epoch} is outside 1..{job.epochs}", code="invalid_epoch")
    row = session.get(JobMetric, (job_id, epoch))
    if row is None:
        row = JobMetric(job_id=job_id, epoch=epoch, attempt=attempt)
        session.add(row)
    row.attempt = attempt
    clean = {k: _finite(values.get(k)) for k in METRIC_FIELDS}
    for k, v in clean.items():
        setattr(row, k, v)
    job.progress_epoch = max(job.progress_epoch, epoch)
    job.latest_metrics = {"epoch": epoch, **clean}
    job.lease_expires_at = _lease()
    append_event(session, job_id, "metrics", f"epoch {epoch}", {"epoch": epoch, "attempt": attempt, **clean},
                 dedup_key=f"metrics:{attempt}:{epoch}")


def record_event(*, session: Session, job_id: str, attempt: int, key: str, message: str,
                 data: dict[str, Any] | None) -> None:
    """Add a worker message once per key."""
    _succeeded_by(session, job_id, attempt) or fenced(session, job_id, attempt)
    append_event(session, job_id, "message", message[:2000], data, dedup_key=f"msg:{attempt}:{key}"[:120])
    session.commit()


def attach_artifact(*, session: Session, job_id: str, attempt: int, fmt: str, blob_key: str, size: int,
                    sha256: str, meta: dict[str, Any] | None = None) -> None:
    """Record (or replace) the job's artifact of a format: staged while running, or added to its model after."""
    job = _succeeded_by(session, job_id, attempt) or fenced(session, job_id, attempt)
    art = session.scalars(select(Artifact).where(Artifact.job_id == job_id, Artifact.format == fmt)).first()
    if art is None:
        session.add(Artifact(id=new_id("art"), job_id=job_id, model_id=job.model_id, format=fmt, bytes=size,
                             sha256=sha256, blob_key=blob_key, meta=meta))
    elif job.model_id is not None and fmt in ("safetensors", "config"):
        raise Conflict(f"the model's {fmt} artifact is final", code="artifact_final")
    else:
        art.bytes, art.sha256, art.blob_key, art.meta = size, sha256, blob_key, meta
    session.commit()


def _succeeded_by(session: Session, job_id: str, attempt: int) -> Job | None:
    """The job if the given attempt made it succeed: late additions (an ONNX export, events) are welcome."""
    job = _job(session, job_id)
    if job.status == JobStatus.succeeded and job.attempt == attempt:
        return job
    return None


def succeed(*, session: Session, job_id: str, attempt: int, result: dict[str, Any]) -> str:
    """Create the model from the staged artifacts and move the job to succeeded, in one transaction."""
    job = _job(session, job_id)
    if job.status == JobStatus.succeeded and job.attempt == attempt and job.model_id:
        return job.model_id  # a retried post
    fenced(session, job_id, attempt)
    arts = list(session.scalars(select(Artifact).where(Artifact.job_id == job_id)))
    if not any(a.format == "safetensors" for a in arts):
        raise Invalid("upload the safetensors artifact before finishing", code="artifact_missing")
    config = result.get("config") or {}
    ds = session.get(Dataset, job.dataset_id)
    bm = session.get(BaseWeights, job.weights_id) if job.weights_id and job.weights_id.startswith("bm_") else None
    model_id = new_id("model")
    lineage = {"dataset_id": job.dataset_id, "dataset_sha256": ds.sha256 if ds else None,
               "base_weights": job.weights_id, "base_weights_sha256": bm.sha256 if bm else None,
               "spec": job.spec, "code_version": result.get("code_version"), "best_epoch": result.get("best_epoch")}
    session.add(Model(id=model_id, tenant=job.tenant, job_id=job_id, dataset_id=job.dataset_id,
                      arch=job.spec["base_model"]["arch"], classes=config.get("classes", []),
                      metrics=result.get("metrics") or {}, preprocessing=config.get("preprocessing", {}),
                      lineage=lineage, config=config))
    session.flush()
    for a in arts:
        a.model_id = model_id
    if not cas(session, job_id, JobStatus.running, JobStatus.succeeded, attempt=attempt,
               message="succeeded", model_id=model_id, finished_at=utcnow(), lease_expires_at=None):
        session.rollback()
        raise Conflict("job moved while finishing", code="stale_attempt")
    _end(session, job)
    return model_id


def fail(*, session: Session, job_id: str, attempt: int, code: str, message: str) -> None:
    """running -> failed with a readable error."""
    job = _job(session, job_id)
    if job.status == JobStatus.failed and job.attempt == attempt:
        return
    fenced(session, job_id, attempt)
    if not cas(session, job_id, JobStatus.running, JobStatus.failed, attempt=attempt, message=message[:2000],
               error_code=code[:64], error_message=message[:4000], finished_at=utcnow(), lease_expires_at=None):
        session.rollback()
        raise Conflict("job moved while failing", code="stale_attempt")
    _end(session, job)


def cancelled(*, session: Session, job_id: str, attempt: int) -> None:
    """running -> cancelled, after the worker stopped on request."""
    job = _job(session, job_id)
    if job.status == JobStatus.cancelled:
        return
    fenced(session, job_id, attempt)
    if not cas(session, job_id, JobStatus.running, JobStatus.cancelled, attempt=attempt, message="cancelled",
               finished_at=utcnow(), lease_expires_at=None):
        session.rollback()
        raise Conflict("job moved while cancelling", code="stale_attempt")
    _end(session, job)


def _end(session: Session, job: Job) -> None:
    """Commit a terminal transition, then remove the job's checkpoint (the model stays)."""
    drop_checkpoint(session, job)
    session.commit()
