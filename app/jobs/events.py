"""Per-job events with a gap-free sequence number taken from the job row."""

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.models import Job, JobEvent
from core.ids import new_id


def append_event(session: Session, job_id: str, type_: str, message: str | None = None,
                 data: dict[str, Any] | None = None, dedup_key: str | None = None, *,
                 first: bool = False) -> JobEvent | None:
    """Add an event in the caller's transaction; None if dedup_key was already recorded. first: the job is being
    created in this transaction with next_seq 1, so this event is number 1 (no UPDATE needed to number it)."""
    if dedup_key is not None:
        seen = session.scalars(select(JobEvent.id).where(
            JobEvent.job_id == job_id, JobEvent.dedup_key == dedup_key)).first()
        if seen:
            return None
    if first:
        seq = 1
    else:  # the UPDATE takes the job row's lock, so concurrent writers get consecutive numbers
        seq = session.execute(update(Job).where(Job.id == job_id).values(next_seq=Job.next_seq + 1)
                              .returning(Job.next_seq)).scalar_one()
    event = JobEvent(id=new_id("evt"), job_id=job_id, seq=seq, type=type_, message=message, data=data,
                     dedup_key=dedup_key)
    session.add(event)
    return event
