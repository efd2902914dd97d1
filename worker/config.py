"""The worker process's one settings object: a worker needs only the broker URL, the API URL and the worker token
(the shared settings, core/settings.py, and the worker's own)."""

from functools import cache
from pathlib import Path

from core.settings import SharedSettings


class WorkerSettings(SharedSettings):
    """Read from TAAS_* environment variables (data_dir matters only for the embedded filesystem broker)."""

    api_url: str = "http://127.0.0.1:8000"
    cache_dir: Path | None = None  # dataset and weights cache (default: data_dir/worker-cache)
    cache_max_bytes: int = 20 * 1024**3
    worker_name: str | None = None
    http_retry_seconds: float = 300.0  # how long posts are retried while the API is unreachable
    # Fault injection for tests, honoured only when testing is on: a job whose seed equals fault_seed meets
    # fault_action after epoch fault_epoch is stored (0: after the first epoch of every attempt).
    testing: bool = False
    fault_seed: int | None = None
    fault_epoch: int = 1
    fault_action: str = "raise"

    @property
    def resolved_cache_dir(self) -> Path:
        return self.cache_dir or self.data_dir / "worker-cache"


@cache
def get_worker_settings() -> WorkerSettings:
    """The process-wide worker settings."""
    return WorkerSettings()
