"""Enqueue by task name: the API never imports the worker."""

from functools import cache

from celery import Celery

from app.config import get_settings
from core.broker import TRAIN_TASK, celery_config


@cache
def _producer() -> Celery:
    s = get_settings()
    app = Celery("taas-api")
    app.conf.update(celery_config(s))
    return app


def ping_broker(timeout: float = 3.0) -> None:
    """Raise unless the broker accepts a connection (the readiness probe)."""
    with _producer().connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)


def enqueue_job(job_id: str) -> None:
    """Send the training task for job_id (call only after the job row is committed)."""
    _producer().send_task(TRAIN_TASK, args=[job_id], queue=get_settings().queue_name)
