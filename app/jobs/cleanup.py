"""Removing a job's checkpoint once it has ended (the final model stays)."""

from sqlalchemy.orm import Session

from app.garbage import discard
from app.models import Job


def drop_checkpoint(session: Session, job: Job) -> None:
    """Forget the checkpoint in the caller's transaction and queue its file for removal."""
    if job.checkpoint_key is not None:
        discard(session, [job.checkpoint_key])
        job.checkpoint_key = job.checkpoint_sha256 = None
