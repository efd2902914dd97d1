"""Job routes."""

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic_core import to_json
from starlette.concurrency import run_in_threadpool

from app import pg
from app.db import get_read_sessionmaker, get_sessionmaker
from app.deps import IdempotencyKey, KeyCheck, Reader, SessionDep, Writer, demands
from app.errors import NotFound
from app.idempotency import body_hash, run_idempotent
from app.jobs import service, stream
from app.jobs.schemas import DryRunRead, EventPage, EventRead, JobRead, MetricList, MetricRead, job_json
from app.openapi import ERROR_RESPONSES, errors
from app.schemas import Page
from core.limits import INT4_MAX
from core.spec import JobSpec
from core.states import JobStatus

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES)


@router.post("", status_code=201, response_model=JobRead, summary="Submit a fine-tuning job",
             responses={200: {"model": DryRunRead, "description": "With `dry_run=true`: the resolved spec and the "
                              "per-block-group plan; nothing is stored or queued"},
                        **errors("validation_error", "invalid_json", "request_too_large",
                                 "dataset_not_found", "dataset_not_ready", "invalid_combination", "spec_too_large",
                                 "weights_unavailable", "quota_exceeded", "idempotency_mismatch",
                                 "idempotency_in_progress")})
async def create_job(spec: JobSpec, principal: Writer, idempotency_key: IdempotencyKey = None,
                     dry_run: bool = False) -> Any:
    # async, and without the session dependency (its setup and teardown cost as much as the dry run's own work):
    # a dry run on PostgreSQL (dashboards run one per edit of the form) stays on the event loop; a submit, and
    # a dry run on SQLite, open their session in the worker thread that uses it.
    if dry_run:
        if pg.enabled():  # serialised by pydantic-core: a fifth of json.dumps's time for a plan
            return Response(to_json(await service.dry_run_async(tenant=principal.tenant, spec=spec)),
                            media_type="application/json")
        return JSONResponse(await run_in_threadpool(_dry_run_sync, principal.tenant, spec))
    status, body = await run_in_threadpool(_submit, principal.tenant, spec, idempotency_key)
    return JSONResponse(body, status_code=status)


def _dry_run_sync(tenant: str, spec: JobSpec) -> dict:
    with get_read_sessionmaker()() as session:
        return service.dry_run(session=session, tenant=tenant, spec=spec)


def _submit(tenant: str, spec: JobSpec, idempotency_key: str | None) -> tuple[int, dict]:
    with get_sessionmaker()() as session:

        def make() -> tuple[int, dict]:
            job = service.create_job(session=session, tenant=tenant, spec=spec)
            return 201, JobRead.of(job).model_dump(mode="json")

        return run_idempotent(session=session, tenant=tenant, route="jobs.create", key=idempotency_key,
                              body_sha256=body_hash(spec.model_dump_json()), create=make)


@router.get("", response_model=Page[JobRead], summary="List jobs, newest first",
            responses=errors("validation_error", "invalid_request"))
def list_jobs(principal: Reader, session: SessionDep, status: JobStatus | None = None,
              limit: Annotated[int, Query(ge=1, le=100)] = 20, after: str | None = None) -> Page[JobRead]:
    rows, more = service.list_jobs(session=session, tenant=principal.tenant, status=status, limit=limit,
                                   after=after)
    return Page(data=[JobRead.of(r) for r in rows], has_more=more)


@router.get("/{job_id}", response_model=JobRead, summary="Get a job",
            responses=errors("invalid_request", "job_not_found"))
@demands("read")
async def get_job(job_id: str, request: Request) -> Response:
    # The hottest read (dashboards poll it): async, its JSON written once (job_json, JobRead's document) rather
    # than validated again by FastAPI. PostgreSQL: the key and the job in one statement on the event loop,
    # coalesced with the requests that arrive with it; SQLite: the ORM in a worker thread.
    key = KeyCheck.of(request, "read")
    if pg.enabled():
        _, row = await key.fetch(service.JOB_OF_KEY, job_id)
        if row is None:
            raise NotFound(f"job {job_id} not found", code="job_not_found")
        body = job_json(pg.Attrs(row))
    else:
        body = (await run_in_threadpool(_get_job_sync, (await key.principal()).tenant, job_id)).model_dump_json()
    return Response(body, media_type="application/json")


def _get_job_sync(tenant: str, job_id: str) -> JobRead:
    with get_read_sessionmaker()() as session:
        return JobRead.of(service.get_job(session=session, tenant=tenant, job_id=job_id))


@router.post("/{job_id}/cancel", response_model=JobRead, summary="Cancel a job (409 when finished)",
             responses=errors("invalid_request", "job_not_found", "job_finished"))
def cancel_job(job_id: str, principal: Writer, session: SessionDep) -> JobRead:
    return JobRead.of(service.cancel_job(session=session, tenant=principal.tenant, job_id=job_id))


@router.delete("/{job_id}", status_code=204, summary="Delete a finished job",
               responses=errors("invalid_request", "job_not_found", "job_not_finished"))
def delete_job(job_id: str, principal: Writer, session: SessionDep) -> Response:
    service.delete_job(session=session, tenant=principal.tenant, job_id=job_id)
    return Response(status_code=204)


EVENT_STREAM = {"description": "With `Accept: text/event-stream`: the events live (SSE id = seq, event = type, "
                                "data = an event as JSON), keep-alive comments, closed once the job has finished",
                "content": {"text/event-stream": {"schema": {"type": "string"}}}}


@router.get("/{job_id}/events", response_model=EventPage, summary="The job's events, oldest first; live as SSE",
            responses={200: EVENT_STREAM, 204: {"description": "Stream only: the job has finished and sent all"},
                       **errors("validation_error", "invalid_request", "job_not_found")})
def list_events(job_id: str, request: Request, principal: Reader, session: SessionDep,
                after_seq: Annotated[int, Query(ge=0, le=INT4_MAX)] = 0,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                last_event_id: Annotated[int | None, Header(alias="Last-Event-ID", ge=0, le=INT4_MAX)] = None) -> Any:
    if stream.wants_stream(request):
        cursor = after_seq if last_event_id is None else last_event_id  # a reconnect resumes after its last id
        return stream.open_stream(session=session, tenant=principal.tenant, job_id=job_id, after_seq=cursor)
    rows, more = service.list_events(session=session, tenant=principal.tenant, job_id=job_id,
                                     after_seq=after_seq, limit=limit)
    return EventPage(data=[EventRead.model_validate(r) for r in rows], has_more=more)


@router.get("/{job_id}/metrics", response_model=MetricList, summary="One row per epoch",
            responses=errors("invalid_request", "job_not_found"))
def list_metrics(job_id: str, principal: Reader, session: SessionDep) -> MetricList:
    rows = service.list_metrics(session=session, tenant=principal.tenant, job_id=job_id)
    return MetricList(data=[MetricRead.model_validate(r) for r in rows])
