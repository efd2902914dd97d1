"""Job rules: create (validate, resolve weights, store, then enqueue), read, list, cancel, delete."""

import logging
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app import pg, quotas
from app.basemodels.service import imagenet_weights
from app.config import get_settings
from app.datasets.service import get_dataset
from app.errors import Conflict, Invalid, NotFound
from app.jobs import outbox
from app.jobs.cleanup import drop_checkpoint
from app.jobs.events import append_event
from app.jobs.transitions import cas
from app.keys.service import key_and
from app.models import BaseWeights, Job, JobEvent, JobMetric, Model, utcnow
from app.pagination import page
from core.ids import new_id
from core.plan import plan
from core.spec import InvalidCombination, JobSpec, SpecTooLarge, check_batch_pixels, check_combinations
from core.states import FINISHED, DatasetStatus, JobStatus

log = logging.getLogger(__name__)


def weights_kind(spec: JobSpec) -> str:
    """Where a job's weights come from: none, imagenet, base (an uploaded bm_…) or model (a previous job's)."""
    weights = spec.base_model.weights
    if weights in ("none", "imagenet"):
        return weights
    return "base" if weights.startswith("bm_") else "model"


def check_weights(*, tenant: str, spec: JobSpec, row: Any) -> str | None:
    """The weights' id, given their row (id, tenant, arch; None when absent), or 422 weights_unavailable."""
    arch, weights, kind = spec.base_model.arch, spec.base_model.weights, weights_kind(spec)
    if kind == "none":
        return None
    if kind == "imagenet":
        if row is None:
            raise Invalid(f"no ImageNet weights imported for {arch}; run `taas weights import {arch}`",
                          code="weights_unavailable", details={"arch": arch})
        return row.id
    what = "base model" if kind == "base" else "model"
    if row is None or row.tenant not in ((None, tenant) if kind == "base" else (tenant,)):
        raise Invalid(f"{what} {weights} not found", code="weights_unavailable")
    if row.arch != arch:
        raise Invalid(f"{what} {weights} is a {row.arch}, not a {arch}", code="invalid_combination")
    return row.id


def resolve_weights(*, session: Session, tenant: str, spec: JobSpec) -> str | None:
    """The bm_… or model_… id a job starts from (None: random init), or 422 weights_unavailable."""
    kind, weights = weights_kind(spec), spec.base_model.weights
    row = (None if kind == "none" else imagenet_weights(session=session, arch=spec.base_model.arch)
           if kind == "imagenet" else session.get(BaseWeights if kind == "base" else Model, weights))
    return check_weights(tenant=tenant, spec=spec, row=row)


def check_spec(spec: JobSpec) -> None:
    """The checks beyond the schema: the worker's memory budget, then fields that mean nothing together."""
    check_worker_budget(spec)
    try:
        check_combinations(spec)
    except InvalidCombination as exc:
        raise Invalid(str(exc), code="invalid_combination", details={"field": exc.field}) from None


def check_worker_budget(spec: JobSpec) -> None:
    """422 spec_too_large when one batch (batch_size * image_size^2 pixels) would exhaust a worker's memory."""
    try:
        check_batch_pixels(spec, get_settings().max_batch_pixels)
    except SpecTooLarge as exc:
        raise Invalid(str(exc), code="spec_too_large", details={"batch_pixels": exc.pixels, "limit": exc.limit}
                      ) from None


def dry_run(*, session: Session, tenant: str, spec: JobSpec) -> dict:
    """Validate like create_job and return the resolved spec and the plan, queueing nothing."""
    check_spec(spec)
    ds = get_dataset(session=session, tenant=tenant, dataset_id=spec.dataset_id)
    return dry_run_result(spec, resolve_weights(session=session, tenant=tenant, spec=spec), ds.status, ds.classes)


def dry_run_result(spec: JobSpec, weights_id: str | None, dataset_status: str, classes: list | None) -> dict:
    return {"spec": spec.model_dump(mode="json"), "weights_id": weights_id, "dataset_status": dataset_status,
            "plan": plan(spec, num_classes=len(classes or []) or 2)}


# dry_run() on PostgreSQL: the dataset and the weights in one statement (app.pg), on the event loop, coalesced with
# the dry runs that arrive at the same moment.
_WEIGHTS_SQL = {"imagenet": "SELECT id, tenant, arch FROM base_models WHERE arch = q.arg AND source = 'imagenet' "
                            "AND tenant IS NULL ORDER BY id DESC LIMIT 1",
                "base": "SELECT id, tenant, arch FROM base_models WHERE id = q.arg",
                "model": "SELECT id, tenant, arch FROM models WHERE id = q.arg",
                "none": "SELECT NULL::text AS id, NULL::text AS tenant, NULL::text AS arch WHERE false"}
_DRY_RUN = {kind: pg.Coalesced(
    "SELECT q.i, d.status, d.classes, w.id AS w_id, w.tenant AS w_tenant, w.arch AS w_arch FROM unnest($1::text[], "
    "$2::text[], $3::text[]) WITH ORDINALITY AS q(dataset, tenant, arg, i) JOIN datasets d ON d.id = q.dataset AND "
    f"d.tenant = q.tenant LEFT JOIN LATERAL ({sql}) w ON true") for kind, sql in _WEIGHTS_SQL.items()}


async def dry_run_async(*, tenant: str, spec: JobSpec) -> dict:
    """dry_run() through app.pg: the same checks, in the same order, from one round trip."""
    check_spec(spec)
    kind = weights_kind(spec)
    arg = spec.base_model.arch if kind == "imagenet" else spec.base_model.weights
    row = await _DRY_RUN[kind].fetchrow(spec.dataset_id, tenant, arg)
    if row is None:
        raise NotFound(f"dataset {spec.dataset_id} not found", code="dataset_not_found")
    weights = None if row["w_id"] is None else pg.Attrs(row, prefix="w_")
    return dry_run_result(spec, check_weights(tenant=tenant, spec=spec, row=weights), row["status"], row["classes"])


def create_job(*, session: Session, tenant: str, spec: JobSpec) -> Job:
    """Validate against the database, store the queued job with one commit, then enqueue."""
    check_spec(spec)
    ds = get_dataset(session=session, tenant=tenant, dataset_id=spec.dataset_id)
    if ds.status != DatasetStatus.ready:
        raise Conflict(f"dataset {ds.id} is {ds.status}, not ready", code="dataset_not_ready",
                       details={"status": ds.status})
    weights_id = resolve_weights(session=session, tenant=tenant, spec=spec)
    quotas.check_job(session=session, tenant=tenant)
    job = Job(id=new_id("job"), tenant=tenant, dataset_id=ds.id, status=JobStatus.queued,
              spec=spec.model_dump(mode="json"), weights_id=weights_id, attempt=0,
              max_attempts=get_settings().max_attempts, progress_epoch=0,
              epochs=spec.hyperparameters.epochs, next_seq=1)  # its first event, below, is number 1
    session.add(job)
    append_event(session, job.id, "status", "job queued", {"to": "queued"}, first=True)
    session.commit()  # one flush: the job's INSERT, then its event's
    # After the commit, never before; if this send is lost, the job is in the outbox for the reaper.
    outbox.send(session, job.id)  # records the send outside this session: the job as returned is as committed
    return job


def get_job(*, session: Session, tenant: str, job_id: str) -> Job:
    """A job of the tenant, or 404."""
    job = session.get(Job, job_id)
    if job is None or job.tenant != tenant:
        raise NotFound(f"job {job_id} not found", code="job_not_found")
    return job


JOB_COLUMNS = ("id, status, dataset_id, spec, attempt, progress_epoch, epochs, latest_metrics, model_id, error_code, "
               "error_message, cancel_requested_at, created_at, started_at, finished_at")
JOB_OF_KEY = key_and(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = q.arg AND tenant = k.tenant")  # KeyCheck.fetch


def list_jobs(*, session: Session, tenant: str, status: JobStatus | None, limit: int, after: str | None
              ) -> tuple[list[Job], bool]:
    """The tenant's jobs, newest first, optionally of one status."""
    stmt = select(Job).where(Job.tenant == tenant)
    if status:
        stmt = stmt.where(Job.status == status)
    return page(session, stmt, Job.id, limit=limit, after=after)


def cancel_job(*, session: Session, tenant: str, job_id: str) -> Job:
    """Queued: cancelled at once. Running: flagged; the worker stops at its next step or heartbeat."""
    job = get_job(session=session, tenant=tenant, job_id=job_id)
    for _ in range(3):  # retry if the job moved under us (e.g. claimed between read and write)
        if job.status == JobStatus.queued:
            if cas(session, job.id, JobStatus.queued, JobStatus.cancelled, message="cancelled while queued",
                   finished_at=utcnow(), cancel_requested_at=utcnow()):
                drop_checkpoint(session, job)  # a requeued job may have one
                session.commit()
                break
        elif job.status == JobStatus.running:
            if job.cancel_requested_at is None:
                job.cancel_requested_at = utcnow()
                append_event(session, job.id, "message", "cancellation requested")
                session.commit()
            break
        else:
            raise Conflict(f"job {job_id} is already {job.status}", code="job_finished",
                           details={"status": job.status})
        session.rollback()
        session.refresh(job)
    session.refresh(job)
    return job


def delete_job(*, session: Session, tenant: str, job_id: str) -> None:
    """Delete a finished job with its events and metrics (its model, if any, stays)."""
    job = get_job(session=session, tenant=tenant, job_id=job_id)
    if job.status not in FINISHED:
        raise Conflict(f"job {job_id} is {job.status}; cancel it first", code="job_not_finished")
    for cls in (JobEvent, JobMetric):
        session.execute(delete(cls).where(cls.job_id == job_id))
    session.delete(job)
    session.commit()


def list_events(*, session: Session, tenant: str, job_id: str, after_seq: int, limit: int
                ) -> tuple[list[JobEvent], bool]:
    """Events with seq > after_seq, oldest first."""
    get_job(session=session, tenant=tenant, job_id=job_id)
    rows = list(session.scalars(select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.seq > after_seq)
                                .order_by(JobEvent.seq).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def list_metrics(*, session: Session, tenant: str, job_id: str) -> list[JobMetric]:
    """One row per epoch."""
    get_job(session=session, tenant=tenant, job_id=job_id)
    return list(session.scalars(select(JobMetric).where(JobMetric.job_id == job_id).order_by(JobMetric.epoch)))
