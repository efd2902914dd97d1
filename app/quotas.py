"""Per-tenant quotas: unfinished jobs and stored bytes; exceeding one is 429 quota_exceeded.

The checks read and compare without a lock, so two requests racing past the same limit may both pass:
a quota bounds a tenant's use, it is not an exact ledger.
"""

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.errors import QuotaExceeded
from app.models import Artifact, BaseWeights, Dataset, Job
from core.states import UNFINISHED


def active_jobs(*, session: Session, tenant: str) -> int:
    """The tenant's queued and running jobs."""
    return session.scalar(select(func.count()).select_from(Job).where(
        Job.tenant == tenant, Job.status.in_(list(UNFINISHED)))) or 0


def stored_bytes(*, session: Session, tenant: str) -> int:
    """Bytes the tenant keeps in storage: dataset archives, own base models, job artifacts."""
    datasets = select(func.coalesce(func.sum(Dataset.bytes), 0)).where(Dataset.tenant == tenant)
    base = select(func.coalesce(func.sum(BaseWeights.bytes), 0)).where(BaseWeights.tenant == tenant)
    artifacts = (select(func.coalesce(func.sum(Artifact.bytes), 0))
                 .join(Job, Job.id == Artifact.job_id).where(Job.tenant == tenant))
    return sum(int(session.scalar(q) or 0) for q in (datasets, base, artifacts))


def check_job(*, session: Session, tenant: str) -> None:
    """429 quota_exceeded when one more job would pass the tenant's limit of queued plus running jobs."""
    limit = get_settings().quota_max_active_jobs
    used = active_jobs(session=session, tenant=tenant)
    if used + 1 > limit:
        raise QuotaExceeded(f"the tenant already has {used} queued or running jobs (limit {limit})",
                            details={"quota": "max_active_jobs", "limit": limit, "used": used})


def check_bytes(*, session: Session, tenant: str, adding: int) -> None:
    """429 quota_exceeded when storing `adding` more bytes would pass the tenant's storage limit."""
    limit = get_settings().quota_max_stored_bytes
    used = stored_bytes(session=session, tenant=tenant)
    if used + adding > limit:
        raise QuotaExceeded(f"storing {adding} more bytes would pass the tenant's {limit} byte limit",
                            details={"quota": "max_stored_bytes", "limit": limit, "used": used,
                                     "adding": adding})
