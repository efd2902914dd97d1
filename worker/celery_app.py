"""The Celery app and its one task; the task is two lines and imports torch only when it runs."""

from celery import Celery

from app.domain.broker import TRAIN_TASK, celery_config
from worker.config import get_worker_settings

_s = get_worker_settings()
app = Celery("taas-worker")
app.conf.update(celery_config(_s.broker_url or "filesystem://", _s.data_dir, _s.queue_name,
                              max_job_seconds=_s.max_job_seconds))


@app.task(name=TRAIN_TASK, ignore_result=True)
def train_job(job_id: str) -> None:
    """Claim and run one job; a duplicate delivery is refused at the claim."""
    from worker.runner import run_job

    run_job(job_id)
