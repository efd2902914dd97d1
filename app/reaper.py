"""The reaper: requeues jobs whose worker lost its lease and sends queued jobs the outbox says are due."""

import logging
import threading
import time
from datetime import timedelta

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app import garbage
from app.config import get_settings
from app.db import get_sessionmaker
from app.jobs import outbox
from app.jobs.cleanup import drop_checkpoint
from app.jobs.transitions import cas
from app.models import Job, utcnow
from core.states import JobStatus

log = logging.getLogger(__name__)
LOCK_ID = 0x7461_6173  # "taas"


def _locked(session: Session) -> bool:
    """One reaper at a time: a transaction-scoped PostgreSQL advisory lock (SQLite: one process by design)."""
    if session.bind.dialect.name != "postgresql":
        return True
    return bool(session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": LOCK_ID}).scalar())


def _reap_lost(session: Session, job: Job, done: dict[str, int]) -> list[str]:
    """One running job whose lease expired: cancelled, failed or requeued. Returns job ids to send."""
    now = utcnow()
    if job.cancel_requested_at is not None:
        if cas(session, job.id, JobStatus.running, JobStatus.cancelled, attempt=job.attempt,
               message="worker lost after cancellation was requested", finished_at=now, lease_expires_at=None):
            done["cancelled"] += 1
            drop_checkpoint(session, job)
        return []
    lost = job.lost_count + 1
    if lost >= job.max_attempts:
        if cas(session, job.id, JobStatus.running, JobStatus.failed, attempt=job.attempt,
               message=f"worker lost {lost} times; giving up", error_code="worker_lost",
               error_message=f"the worker was lost on {lost} attempts (max_attempts={job.max_attempts})",
               finished_at=now, lease_expires_at=None, lost_count=lost):
            done["failed"] += 1
            drop_checkpoint(session, job)
        return []
    if cas(session, job.id, JobStatus.running, JobStatus.queued, attempt=job.attempt,
           message=f"worker lost on attempt {job.attempt}; requeued", lease_expires_at=None, lost_count=lost,
           enqueued_at=None, enqueue_count=0):
        done["requeued"] += 1
        return [job.id]
    return []


def reap_once(*, reap_leases: bool = True) -> dict[str, int]:
    """One pass; returns counts of what it did."""
    s = get_settings()
    done = {"requeued": 0, "failed": 0, "cancelled": 0, "sent": 0, "files_removed": 0}
    # What a crash left between a delete's commit and its files' removal (safe in every process: no lock needed).
    done["files_removed"] = garbage.sweep()
    with get_sessionmaker()() as session:
        if not _locked(session):
            return done
        deadline = utcnow() - timedelta(seconds=s.lease_grace_seconds)
        expired = session.scalars(select(Job).where(Job.status == JobStatus.running,
                                                    Job.lease_expires_at < deadline)).all() if reap_leases else []
        send = [job_id for job in expired for job_id in _reap_lost(session, job, done)]
        session.commit()
        for job_id in dict.fromkeys(send + outbox.due(session)):  # after the commit, never before
            done["sent"] += outbox.send(session, job_id)
    return done


def run_forever(stop: threading.Event) -> None:
    """Reap every few seconds until stop is set."""
    s = get_settings()
    # Leases that ran out while the API was down say nothing about the workers: give them one lease period to
    # reach the restarted API before treating them as lost.
    trust_after = time.monotonic() + s.lease_seconds + s.lease_grace_seconds
    while not stop.wait(s.reaper_interval_seconds):
        try:
            did = reap_once(reap_leases=time.monotonic() >= trust_after)
            if any(did.values()):
                log.info("reaper: %s", did)
        except Exception:
            log.exception("reaper pass failed")
