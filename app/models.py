"""All ORM classes in one place. Typed Mapped columns; relationships are not lazily loaded."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(DateTime):
    """Stored naive-UTC everywhere; SQLite drops tzinfo, so it is re-attached on the way out."""

    cache_ok = True

    def __init__(self) -> None:
        super().__init__(timezone=True)

    def result_processor(self, dialect, coltype):  # noqa: ANN001
        parent = super().result_processor(dialect, coltype)

        def process(value):  # noqa: ANN001
            if parent:
                value = parent(value)
            if value is not None and value.tzinfo is None:
                value = value.replace(tzinfo=UTC)
            return value

        return process


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    hmac: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class Dataset(Base):
    __tablename__ = "datasets"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    error_member: Mapped[str | None] = mapped_column(Text)
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(8))
    layout: Mapped[str] = mapped_column(String(8))
    num_images: Mapped[int | None]
    classes: Mapped[list[Any] | None] = mapped_column(JSON)
    class_counts: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    splits: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    blob_key: Mapped[str] = mapped_column(String(200))
    manifest_key: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (Index("ix_datasets_tenant_id", "tenant", "id"),)


class BaseWeights(Base):
    """A set of backbone weights in storage as safetensors (tenant None: global, e.g. imagenet)."""

    __tablename__ = "base_models"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str | None] = mapped_column(String(64))
    arch: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))  # imagenet | upload
    name: Mapped[str | None] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    blob_key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (Index("ix_base_models_arch_source", "arch", "source"),)


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    dataset_id: Mapped[str] = mapped_column(String(40), index=True)
    status: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    weights_id: Mapped[str | None] = mapped_column(String(40))  # resolved bm_… or model_… (None: random)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    progress_epoch: Mapped[int] = mapped_column(Integer, default=0)
    epochs: Mapped[int] = mapped_column(Integer)
    latest_metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    model_id: Mapped[str | None] = mapped_column(String(40))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    next_seq: Mapped[int] = mapped_column(Integer, default=0)
    lost_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # attempts lost to dead workers
    enqueue_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # sends to the broker
    checkpoint_epoch: Mapped[int | None]
    checkpoint_key: Mapped[str | None] = mapped_column(String(200))
    checkpoint_sha256: Mapped[str | None] = mapped_column(String(64))
    cancel_requested_at: Mapped[datetime | None]
    lease_expires_at: Mapped[datetime | None]
    enqueued_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    __table_args__ = (
        Index("ix_jobs_tenant_id", "tenant", "id"),
        Index("ix_jobs_status_lease", "status", "lease_expires_at"),
    )


class JobEvent(Base):
    __tablename__ = "job_events"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(32))
    message: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    dedup_key: Mapped[str | None] = mapped_column(String(120))  # worker posts are idempotent by it
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (
        Index("uq_job_events_job_seq", "job_id", "seq", unique=True),
        Index("uq_job_events_job_dedup", "job_id", "dedup_key", unique=True),
    )


class JobMetric(Base):
    __tablename__ = "job_metrics"
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer)
    train_loss: Mapped[float | None]
    train_accuracy: Mapped[float | None]
    val_loss: Mapped[float | None]
    val_accuracy: Mapped[float | None]
    val_top5_accuracy: Mapped[float | None]  # only with more than 5 classes
    learning_rate: Mapped[float | None]
    images_per_second: Mapped[float | None]
    seconds: Mapped[float | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Model(Base):
    __tablename__ = "models"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str] = mapped_column(String(40), unique=True)
    dataset_id: Mapped[str] = mapped_column(String(40))
    arch: Mapped[str] = mapped_column(String(64))
    classes: Mapped[list[Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    preprocessing: Mapped[dict[str, Any]] = mapped_column(JSON)
    lineage: Mapped[dict[str, Any]] = mapped_column(JSON)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (Index("ix_models_tenant_id", "tenant", "id"),)


class Artifact(Base):
    """A file of a job: a model's safetensors/onnx, or an upload staged before the model exists."""

    __tablename__ = "artifacts"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(40), index=True)
    model_id: Mapped[str | None] = mapped_column(String(40), index=True)
    format: Mapped[str] = mapped_column(String(16))
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    blob_key: Mapped[str] = mapped_column(String(200))
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # e.g. onnx: max_abs_diff against torch
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (Index("uq_artifacts_job_format", "job_id", "format", unique=True),)


class BlobGarbage(Base):
    """A file whose row is gone, waiting for the background sweeper (app.garbage) to remove it."""

    __tablename__ = "blob_garbage"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"
    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    route: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    body_sha256: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None]
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Alias(Base):
    """A tenant's name for a model ("production"); moved atomically, every move kept in AliasMove."""

    __tablename__ = "aliases"
    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    model_id: Mapped[str] = mapped_column(String(40), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AliasMove(Base):
    __tablename__ = "alias_moves"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    model_id: Mapped[str | None] = mapped_column(String(40))  # None: the alias was deleted
    previous_model_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (Index("ix_alias_moves_tenant_name", "tenant", "name"),)


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(200))  # the signing key: shown once at creation, never again
    events: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[datetime | None]


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # also the webhook-id header (msg_…)
    endpoint_id: Mapped[str] = mapped_column(String(40), index=True)
    tenant: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(40))
    job_id: Mapped[str | None] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # pending | succeeded | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
    __table_args__ = (Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),)
