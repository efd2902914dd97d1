"""The settings every taas process shares, declared once: the API (app/config.py) and the worker (worker/config.py)
each build one settings object from a subclass of this, so a variable both read has one default and one meaning."""

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class SharedSettings(BaseSettings):
    """Read from TAAS_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="TAAS_", extra="ignore")

    data_dir: Path = Path("data")
    broker_url: str | None = None  # default: kombu's filesystem transport under data_dir (the embedded default)
    queue_name: str = "taas"
    worker_token: str | None = None  # shared by the API and its workers; the API's default is generated in data_dir
    max_job_seconds: int = 24 * 3600  # a job's time limit; the broker's redelivery timeout stays above it

    @property
    def resolved_broker_url(self) -> str:
        """The broker URL, defaulting to kombu's filesystem transport."""
        return self.broker_url or "filesystem://"
