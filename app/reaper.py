"""The reaper: requeues jobs whose worker lost its lease and re-sends queued jobs whose enqueue went stale."""

import logging
import threading
from datetime import timedelta

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import get_sessionmaker
from app.domain.states import JobStatus
from app.jobs.transitions import cas
from app.models import Job, utcnow
from app.queue import enqueue_job

log = logging.getLogger(__name__)
LOCK_ID = 0x7461_6173  # "taas"


def _locked(session: Session) -> bool:
    """One reaper at a time: a transaction-scoped PostgreSQL advisory lock (SQLite: one process by design)."""
    if session.bind.dialect.name != "postgresql":
        return True
    return bool(session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": LOCK_ID}).scalar())


def reap_once() -> dict[str, int]:
    """One pass; returns counts of what it did."""
    s = get_settings()
    now = utcnow()
    done = {"requeued": 0, "failed": 0, "cancelled": 0, "resent": 0}
    resend: list[str] = []
    with get_sessionmaker()() as session:
        if not _locked(session):
            return done
        expired = session.scalars(select(Job).where(Job.status == JobStatus.running,
                                                    Job.lease_expires_at < now)).all()
        for job in expired:
            if job.cancel_requested_at is not None:
                ok = cas(session, job.id, JobStatus.running, JobStatus.cancelled, attempt=job.attempt,
                         message="worker lost after cancellation", finished_at=now, lease_expires_at=None)
                done["cancelled"] += ok
            elif job.attempt >= job.max_attempts:
                ok = cas(session, job.id, JobStatus.running, JobStatus.failed, attempt=job.attempt,
                         message="worker lost", error_code="worker_lost", finished_at=now, lease_expires_at=None,
                         error_message=f"the worker was lost {job.attempt} times")
                done["failed"] += ok
            elif cas(session, job.id, JobStatus.running, JobStatus.queued, attempt=job.attempt,
                     message=f"worker lost on attempt {job.attempt}; requeued", lease_expires_at=None,
                     enqueued_at=now):
                done["requeued"] += 1
                resend.append(job.id)
        stale = now - timedelta(seconds=s.enqueue_resend_seconds)
        for job_id in session.scalars(select(Job.id).where(Job.status == JobStatus.queued,
                                                           Job.enqueued_at < stale).limit(100)):
            session.execute(update(Job).where(Job.id == job_id).values(enqueued_at=now))
            resend.append(job_id)
            done["resent"] += 1
        session.commit()
    for job_id in resend:  # after the commit, never before
        try:
            enqueue_job(job_id)
        except Exception:
            log.warning("reaper: enqueue of %s failed; will retry", job_id)
    return done


def run_forever(stop: threading.Event) -> None:
    """Reap every few seconds until stop is set."""
    interval = get_settings().reaper_interval_seconds
    while not stop.wait(interval):
        try:
            did = reap_once()
            if any(did.values()):
                log.info("reaper: %s", did)
        except Exception:
            log.exception("reaper pass failed")
