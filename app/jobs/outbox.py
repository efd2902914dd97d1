"""The enqueue outbox: a job row is committed unsent, then sent; the reaper sends what never left, with backoff.

A send is recorded on the job (enqueued_at, enqueue_count), so a crash between the commit and the broker, or a
broker that is down, leaves a job the reaper finds and sends again. A queued job already sent is re-sent only
after a deadline that doubles each time (the broker may have lost it, e.g. a Redis restart without persistence),
so a healthy backlog costs a few duplicate messages, which the claim's compare-and-set drops.
"""

import logging
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import autocommit_begin
from app.models import Job, utcnow
from app.queue import enqueue_job
from core.states import JobStatus

log = logging.getLogger(__name__)
MAX_BACKOFF_EXP = 6  # 2**6 × the resend deadline at most


def send(session: Session, job_id: str) -> bool:
    """Send job_id to the broker (after its commit) and record the send; False if the broker refused.

    The record is one statement on its own (autocommit on PostgreSQL: a single round trip), outside the session's
    transaction, so the session is left as it was; a job loaded in it keeps its old enqueued_at."""
    session.commit()  # callers have committed the job; end any read since (it would block SQLite's write lock)
    try:
        enqueue_job(job_id)
    except Exception as exc:
        log.warning("job %s: enqueue failed (%s); the reaper will send it", job_id, exc)
        return False
    with autocommit_begin(session) as conn:
        conn.execute(update(Job).where(Job.id == job_id, Job.status == JobStatus.queued)
                     .values(enqueued_at=utcnow(), enqueue_count=Job.enqueue_count + 1))
    return True


def due(session: Session, *, limit: int = 100) -> list[str]:
    """Queued jobs never sent (past a short grace), or sent longer ago than their backoff deadline."""
    s = get_settings()
    now = utcnow()
    never_sent = (Job.enqueued_at.is_(None)) & (Job.created_at < now - timedelta(seconds=s.enqueue_grace_seconds))
    candidates = session.scalars(select(Job).where(
        Job.status == JobStatus.queued,
        or_(never_sent, Job.enqueued_at < now - timedelta(seconds=s.enqueue_resend_seconds)),
    ).order_by(Job.id).limit(limit)).all()
    out = []
    for job in candidates:
        if job.enqueued_at is None:
            out.append(job.id)
            continue
        backoff = s.enqueue_resend_seconds * 2 ** min(max(job.enqueue_count - 1, 0), MAX_BACKOFF_EXP)
        if job.enqueued_at < now - timedelta(seconds=backoff):
            out.append(job.id)
    return out
