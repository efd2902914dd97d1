"""Observability: Prometheus metrics, JSON logs that carry the job id, and the readiness probe.

Metrics are prometheus-client's; with several API processes (`taas api --workers N` sets
PROMETHEUS_MULTIPROC_DIR to a fresh directory) each process writes its samples there and a scrape of any
process sums them. Jobs by status come from the database at scrape time, so every process reports the same.
"""

import functools
import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import get_settings
from app.db import READ_METHODS, get_engine, get_sessionmaker, on_commit
from app.errors import Unauthorized
from app.models import Job, WebhookDelivery
from core.states import JobStatus

log = logging.getLogger(__name__)
events = structlog.get_logger("taas")

REQUEST_SECONDS = Histogram(
    "taas_http_request_duration_seconds", "HTTP request latency by route template", ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
QUEUE_WAIT_SECONDS = Histogram(
    "taas_job_queue_wait_seconds", "From a job's submission to its first claim by a worker",
    buckets=(0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400))
RUN_SECONDS = Histogram(
    "taas_job_run_duration_seconds", "From a job's first claim to its end, by final status", ["status"],
    buckets=(5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400))
TRANSITIONS = Counter("taas_job_transitions_total", "Job state changes, by new status", ["to"])
HEARTBEATS = Counter("taas_worker_heartbeats_total", "Worker heartbeats, by answer (continue, stop, stale)",
                     ["outcome"])
WEBHOOK_ATTEMPTS = Counter("taas_webhook_delivery_attempts_total", "Webhook delivery attempts, by outcome",
                           ["outcome"])


# --- jobs: observed after the transition commits --------------------------------------------------------------

JOB_TIMES = (Job.created_at, Job.started_at, Job.finished_at, Job.attempt)


def job_moved(session: Session, job_id: str, src: JobStatus, dst: JobStatus, times: Any = None) -> None:
    """In the caller's transaction: note a transition, counted and logged once it commits. times: the job's
    JOB_TIMES after the move, when the caller has them (from an UPDATE ... RETURNING); else they are read."""
    row = times if times is not None else session.execute(select(*JOB_TIMES).where(Job.id == job_id)).one()

    def observe() -> None:
        TRANSITIONS.labels(to=str(dst)).inc()
        if dst == JobStatus.running and row.attempt == 1 and row.started_at is not None:
            QUEUE_WAIT_SECONDS.observe(max((row.started_at - row.created_at).total_seconds(), 0.0))
        if src == JobStatus.running and dst != JobStatus.queued and row.started_at and row.finished_at:
            RUN_SECONDS.labels(status=str(dst)).observe(max((row.finished_at - row.started_at).total_seconds(), 0.0))
        events.info("job status changed", job_id=job_id, attempt=row.attempt, **{"from": str(src), "to": str(dst)})

    on_commit(session, observe)


def heartbeat(outcome: str) -> None:
    """Count a worker heartbeat: continue, stop (cancel requested) or stale (the attempt lost its lease)."""
    HEARTBEATS.labels(outcome=outcome).inc()


# --- the scrape -----------------------------------------------------------------------------------------------

class DatabaseCollector:
    """Gauges read from the database at scrape time: the same answer from every process."""

    def describe(self) -> list[Metric]:
        return []  # nothing at registration: the database is read only when scraped

    def collect(self) -> Iterator[Metric]:
        try:
            with get_sessionmaker()() as session:
                counts = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
                pending = session.scalar(select(func.count()).select_from(WebhookDelivery)
                                         .where(WebhookDelivery.status == "pending")) or 0
        except Exception as exc:  # the process metrics are still worth serving
            log.warning("metrics: the database is unreachable (%s)", type(exc).__name__)
            return
        jobs = GaugeMetricFamily("taas_jobs", "Jobs by status", labels=["status"])
        for status in JobStatus:
            jobs.add_metric([str(status)], counts.get(str(status), 0))
        yield jobs
        yield GaugeMetricFamily("taas_webhook_deliveries_pending", "Webhook deliveries waiting for an attempt",
                                value=pending)


_database = CollectorRegistry(auto_describe=False)
_database.register(DatabaseCollector())


def exposition() -> bytes:
    """The text exposition: this process's (or, in multiprocess mode, every process's) metrics and the gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # prometheus-client's own switch, read by it at import
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry) + generate_latest(_database)


# --- probes and /metrics --------------------------------------------------------------------------------------

router = APIRouter(include_in_schema=False)


@router.get("/metrics")
def metrics(request: Request) -> Response:
    token = get_settings().metrics_token
    if token and request.headers.get("authorization", "") != f"Bearer {token}":
        raise Unauthorized("the metrics token is missing or wrong", code="invalid_metrics_token")
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)


def ping_database() -> None:
    """Raise unless the database answers."""
    with get_engine().connect() as conn:
        conn.execute(text("SELECT 1"))
        conn.rollback()


@router.get("/readyz")
def readyz() -> JSONResponse:
    """200 when the database and the broker are reachable, else 503 naming what is not."""
    from app.queue import ping_broker

    checks = {}
    for name, check in (("database", ping_database), ("broker", ping_broker)):
        try:
            check()
            checks[name] = "ok"
        except Exception as exc:  # the details go to the log, not to an unauthenticated caller
            log.warning("readyz: %s unreachable: %s: %s", name, type(exc).__name__, exc)
            checks[name] = "unreachable"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"ok": ok, "checks": checks}, status_code=200 if ok else 503)


# --- requests: latency by route template, a log line carrying the job id -------------------------------------

JOB_IN_PATH = re.compile(r"/jobs/(job_[0-9a-z]{26})(?:/|$)")
QUIET = re.compile(r"^/(internal/|metrics$|healthz$|readyz$)")  # logged at DEBUG: frequent and routine


@functools.lru_cache(maxsize=1024)  # method x route template x status class: a few hundred at most
def _request_timer(method: str, route: str, status_class: int) -> Any:
    return REQUEST_SECONDS.labels(method=method, route=route, status=f"{status_class}xx")


class ObserveRequests:
    """Times each request into REQUEST_SECONDS (by route template, never the raw path) and logs it; binds job_id
    for every log line written while a request about a job is handled."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self.log_all = get_settings().log_requests == "all"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        path = scope.get("path", "")
        found = JOB_IN_PATH.search(path)
        with structlog.contextvars.bound_contextvars(job_id=found.group(1)) if found else nullcontext():
            try:
                await self.app(scope, receive, sending)
            finally:
                seconds = time.perf_counter() - start
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                _request_timer(scope["method"], route, status // 100).observe(seconds)
                quiet = QUIET.match(path) or (status < 400 and scope["method"] in READ_METHODS and not self.log_all)
                level = logging.DEBUG if quiet else logging.INFO
                if logging.getLogger("taas").isEnabledFor(level):  # a line costs a fifth of a GET's CPU: only if kept
                    events.log(level, "request", method=scope["method"], path=path, route=route, status=status,
                               ms=round(seconds * 1000, 1))


# --- logging --------------------------------------------------------------------------------------------------

SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,  # job_id, bound per request or per delivery
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]
structlog.configure(
    processors=[structlog.stdlib.filter_by_level, *SHARED, structlog.stdlib.PositionalArgumentsFormatter(),
                structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
    logger_factory=structlog.stdlib.LoggerFactory(),  # through the standard library: one set of handlers
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=True,
)


def _drop_color_message(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    event.pop("color_message", None)  # uvicorn's copy of the message with terminal colours
    return event


def formatter(fmt: str = "json") -> logging.Formatter:
    """A handler's formatter: one JSON object per line (or key=value text with fmt='console')."""
    renderer = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    return structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.dict_tracebacks,
                    renderer],
        foreign_pre_chain=[*SHARED, structlog.stdlib.ExtraAdder(), _drop_color_message])


def log_config(level: str = "INFO", fmt: str = "json") -> dict[str, Any]:
    """A logging.config dict (uvicorn's log_config): every logger, uvicorn's included, through one formatter."""
    inherit = {"handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"taas": {"()": formatter, "fmt": fmt}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "taas", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {name: inherit for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
    }
