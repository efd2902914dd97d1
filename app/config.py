"""The API process's one settings object (the shared ones from core/settings.py, and the API's own); nothing else
in the API reads os.environ."""

import ipaddress
from functools import cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from core.settings import SharedSettings


class Settings(SharedSettings):
    """API-side settings, read from TAAS_* environment variables."""

    database_url: str | None = None  # default: SQLite under data_dir
    # Connections per API process for the async reads (app/pg.py); each is held for one statement. PostgreSQL's
    # max_connections must cover this plus the ORM pool (up to 30) for every API process (workers never connect).
    read_pool_size: int = Field(16, ge=1)
    host: str = "127.0.0.1"
    port: int = 8000
    secret_key: str | None = None  # pepper for API-key HMACs; default: generated under data_dir

    max_upload_bytes: int = 2 * 1024**3
    min_free_bytes: int = 512 * 1024**2  # storage reserve: writes that would eat into it get 507
    max_weights_upload_bytes: int = 4 * 1024**3
    max_members: int = 100_000
    max_unpacked_bytes: int = 20 * 1024**3
    max_compression_ratio: float = 200.0
    max_image_pixels: int = 50_000_000
    max_request_bytes: int = 1024**2  # bodies parsed in memory (JSON); streamed uploads have their own caps
    max_internal_request_bytes: int = 64 * 1024**2  # the same for /internal (a result's confusion matrix)
    # A worker's input batch is batch_size * image_size^2 pixels; this bounds it (256 images at 224 px).
    max_batch_pixels: int = 256 * 224 * 224
    quota_max_active_jobs: int = 100  # queued + running jobs per tenant
    quota_max_stored_bytes: int = 50 * 1024**3  # datasets, base models and artifacts per tenant
    val_fraction: float = Field(0.2, gt=0, lt=1)

    max_attempts: int = 3
    lease_seconds: float = 60.0  # renewed by heartbeats every lease/4
    lease_grace_seconds: float = 0.0  # extra wait past an expired lease before requeueing
    enqueue_resend_seconds: float = 120.0  # first re-send deadline of a queued job; doubles per send
    enqueue_grace_seconds: float = 5.0  # a job never sent is sent by the reaper after this
    reaper_interval_seconds: float = 5.0
    run_reaper: bool = False
    idempotency_ttl_hours: int = 24
    # Webhooks: sent from every API process that has webhook_dispatch on (claims are compare-and-set).
    webhook_dispatch: bool = True
    webhook_poll_seconds: float = Field(1.0, gt=0)  # how often the delivery loop looks for due retries
    webhook_timeout_seconds: float = Field(10.0, gt=0)  # per attempt
    webhook_max_attempts: int = Field(12, ge=1)
    webhook_retry_base_seconds: float = Field(10.0, gt=0)  # delay after the first failure; doubles per attempt
    webhook_retry_max_seconds: float = Field(3600.0, gt=0)
    webhook_concurrency: int = Field(4, ge=1)  # attempts in flight per process
    webhook_max_endpoints: int = Field(20, ge=1)  # per tenant
    # Webhook hosts (comma-separated, case-insensitive; IP literals with or without brackets) exempt from the SSRF
    # check, which otherwise refuses every host that is or resolves to a non-public address (loopback, private...).
    webhook_allow_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("webhook_allow_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            return [host_key(h) for h in value if isinstance(h, str) and h.strip()]
        return value
    # Observability
    metrics_token: str | None = None  # when set, GET /metrics needs "Authorization: Bearer <token>"
    log_level: str = "INFO"
    log_format: str = Field("json", pattern="^(json|console)$")
    # One log line per request: "all", or "changes" (default): successful GET/HEADs, which dashboards repeat every
    # second or two, are logged at DEBUG; writes and every 4xx/5xx at INFO. /metrics times every request either way.
    log_requests: str = Field("changes", pattern="^(all|changes)$")

    # Predictions (POST /v1/models/{id}/predict): per-request caps, and the bounded pool that runs them.
    predict_max_images: int = Field(32, ge=1)
    predict_max_bytes: int = Field(20 * 1024**2, ge=1)  # the whole multipart body, checked as it streams
    predict_workers: int = Field(2, ge=1)  # threads running onnxruntime
    predict_queue: int = Field(8, ge=0)  # requests that may wait for a thread; beyond that, 503 server_busy
    predict_threads: int = Field(0, ge=0)  # onnxruntime intra-op threads per run; 0: cores / predict_workers
    predict_cache_size: int = Field(4, ge=1)  # onnxruntime sessions kept, least recently used dropped
    # Browser origins allowed to call the API (CORS), comma-separated; "*" for any; empty: CORS off.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip().rstrip("/") for o in value.split(",") if o.strip()]
        return value
    events_poll_seconds: float = Field(0.5, gt=0)  # how often a live event stream reads the database
    events_ping_seconds: float = Field(15.0, gt=0)  # keep-alive comments on an idle event stream

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to SQLite in the data directory."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'taas.db').resolve()}"

    @property
    def storage_dir(self) -> Path:
        """Where blobs (archives, weights, artifacts) live."""
        return self.data_dir / "blobs"

    def secret(self, name: str) -> str:
        """A secret from the environment, else one generated once and kept (0600) in the data dir."""
        value = getattr(self, name)
        if value:
            return value
        return _file_secret(self.data_dir / f".{name}")


def host_key(host: str) -> str:
    """A host as webhook_allow_hosts compares it: lower case, no brackets or final dot, IP literals canonical."""
    host = host.strip().lower().removeprefix("[").removesuffix("]").rstrip(".")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


_file_secrets: dict[Path, str] = {}  # read once per process: the key check asks for the pepper on every request


def _file_secret(path: Path) -> str:
    if value := _file_secrets.get(path):
        return value
    value = _read_or_make_secret(path)
    if value:
        _file_secrets[path] = value
    return value


def _read_or_make_secret(path: Path) -> str:
    import os
    import secrets

    try:
        return path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process won the race
            return path.read_text().strip()
        with os.fdopen(fd, "w") as f:
            f.write(value)
        return value


@cache
def get_settings() -> Settings:
    """The process-wide settings."""
    return Settings()
