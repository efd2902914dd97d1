"""The task contract: its name, and the Celery configuration that the API (producer) and the worker (consumer)
both derive from the shared settings, so they agree on the broker, the queue and the timeouts; no Celery import."""

from typing import Any

from core.settings import SharedSettings

TRAIN_TASK = "taas.train_job"


def celery_config(settings: SharedSettings) -> dict[str, Any]:
    """Celery configuration for long training jobs."""
    broker_url, queue, max_job_seconds = settings.resolved_broker_url, settings.queue_name, settings.max_job_seconds
    conf: dict[str, Any] = {
        "broker_url": broker_url,
        "task_default_queue": queue,
        "task_routes": {TRAIN_TASK: {"queue": queue}},
        "task_ignore_result": True,  # state lives in the database
        "task_acks_late": True,  # a worker that dies mid-job leaves the message to be redelivered
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_proc_alive_timeout": 60,  # a pool child warms up (torch kernels) before it reports for work
        "task_time_limit": max_job_seconds + 300,
        "task_soft_time_limit": max_job_seconds,
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "task_serializer": "json",
        "accept_content": ["json"],
    }
    if broker_url.startswith("filesystem"):
        root = settings.data_dir / "broker"
        folders = {name: root / name for name in ("queue", "processed", "control")}
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        conf["broker_transport_options"] = {
            # Producer and consumer must share one folder.
            "data_folder_in": str(folders["queue"]),
            "data_folder_out": str(folders["queue"]),
            "processed_folder": str(folders["processed"]),
            "control_folder": str(folders["control"]),
            "store_processed": False,
        }
    else:
        # Redis redelivers an unacked message after the visibility timeout: keep it above the longest job.
        conf["broker_transport_options"] = {"visibility_timeout": max_job_seconds + 3600}
    return conf
