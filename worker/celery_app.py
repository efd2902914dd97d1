"""The Celery app and its one task; the task is two lines and imports torch only when it runs."""

from celery import Celery, signals

from core.broker import TRAIN_TASK, celery_config
from worker import shutdown
from worker.config import get_worker_settings

_s = get_worker_settings()
app = Celery("taas-worker")
app.conf.update(celery_config(_s))


@app.task(name=TRAIN_TASK, ignore_result=True)
def train_job(job_id: str) -> None:
    """Claim and run one job; a duplicate delivery is refused at the claim."""
    from worker.runner import run_job

    run_job(job_id)


@signals.worker_init.connect
def _parent_init(**_: object) -> None:
    # Import (never run) the heavy modules once in the parent: forked pool children inherit them, so a child
    # that replaces a killed one is ready in milliseconds instead of the seconds `import torch` costs.
    import torch  # noqa: F401
    import torchvision  # noqa: F401

    import worker.training.recipe  # noqa: F401


@signals.worker_process_init.connect
def _child_init(**_: object) -> None:
    shutdown.install_child_handler()
    _warm()


@signals.worker_shutting_down.connect
def _shutting_down(**_: object) -> None:
    shutdown.forward_to_children()


def _warm() -> None:
    """Import torch before the first job arrives, so a job's fixed cost stays small."""
    try:
        from worker.training import warm

        warm.warm_up()
    except ImportError:
        import torch  # noqa: F401
