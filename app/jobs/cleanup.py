"""Removing a job's checkpoint once it has ended (the final model stays)."""

from sqlalchemy.orm import Session

from app.models import Job
from app.storage import get_storage


def drop_checkpoint(session: Session, job: Job, garbage: list[str]) -> None:
    """Forget the checkpoint in the caller's transaction; its key goes to garbage, to delete after the commit."""
    if job.checkpoint_key is not None:
        garbage.append(job.checkpoint_key)
        job.checkpoint_key = job.checkpoint_sha256 = None


def delete_blobs(keys: list[str]) -> None:
    """Remove files whose rows are committed as gone."""
    for key in keys:
        get_storage().delete(key)
