"""Job state changes as compare-and-set: UPDATE … WHERE id, status (and attempt), then check the row count."""

from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from app import observability
from app.jobs.events import append_event
from app.jobs.schemas import JobRead
from app.models import Job
from app.webhooks import service as webhooks
from core.states import FINISHED, JobStatus, can_transition


def _job_json(job: Job) -> dict[str, Any]:
    return JobRead.of(job).model_dump(mode="json")


def cas(session: Session, job_id: str, src: JobStatus, dst: JobStatus, *, attempt: int | None = None,
        message: str | None = None, **values: Any) -> bool:
    """Move job_id from src to dst in the caller's transaction; False if another writer got there first."""
    assert can_transition(src, dst), (src, dst)
    stmt = update(Job).where(Job.id == job_id, Job.status == src)
    if attempt is not None:
        stmt = stmt.where(Job.attempt == attempt)
    moved = session.execute(stmt.values(status=dst, **values)).rowcount == 1
    if moved:
        append_event(session, job_id, "status", message or f"{src} -> {dst}",
                     {"from": str(src), "to": str(dst), **({"attempt": attempt} if attempt else {})})
        observability.job_moved(session, job_id, src, dst)
        if dst in FINISHED:  # the deliveries commit or roll back with the transition
            webhooks.job_finished(session, job_id, dst, render=_job_json)
    return moved
