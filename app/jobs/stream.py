"""A job's events live over Server-Sent Events: id = seq, event = type, data = the JSON list item.

The stream polls the database from a worker thread, each time in a fresh, short session: the event loop never
blocks, and on SQLite (where every transaction is BEGIN IMMEDIATE) no stream holds the write lock between
polls. Events become visible in seq order with no gaps, because append_event numbers them with an UPDATE of the
job row, whose lock is held until the event commits; so "everything after the cursor" never skips one."""

from collections.abc import AsyncIterator

import anyio
from fastapi import Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from sse_starlette import EventSourceResponse, ServerSentEvent

from app.config import get_settings
from app.db import get_sessionmaker
from app.jobs.schemas import EventRead
from app.jobs.service import get_job
from app.models import Job, JobEvent
from core.states import FINISHED

BATCH = 500  # events read per poll; a longer backlog is drained without sleeping


def wants_stream(request: Request) -> bool:
    """Whether the client asked for text/event-stream rather than a JSON page."""
    return "text/event-stream" in request.headers.get("accept", "").lower()


def poll(session: Session, job_id: str, after_seq: int, limit: int = BATCH) -> tuple[bool, list[EventRead]]:
    """(finished, events with seq > after_seq): the status is read first, so a finished job's last events are in."""
    status = session.scalar(select(Job.status).where(Job.id == job_id))
    rows = session.scalars(select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.seq > after_seq)
                           .order_by(JobEvent.seq).limit(limit))
    events = [EventRead.model_validate(r) for r in rows]
    return status is None or status in FINISHED, events  # a deleted job has nothing more to say


def _poll_fresh(job_id: str, after_seq: int) -> tuple[bool, list[EventRead]]:
    with get_sessionmaker()() as session:  # closing ends the (read-only) transaction at once
        return poll(session, job_id, after_seq)


def _sse(event: EventRead) -> ServerSentEvent:
    return ServerSentEvent(data=event.model_dump_json(), event=event.type, id=str(event.seq))


async def follow(job_id: str, after_seq: int, poll_seconds: float) -> AsyncIterator[ServerSentEvent]:
    """Events after after_seq as they are committed; ends once the job is finished and all were sent."""
    cursor = after_seq
    while True:
        finished, events = await anyio.to_thread.run_sync(_poll_fresh, job_id, cursor)
        for event in events:
            yield _sse(event)
            cursor = event.seq
        if len(events) == BATCH:
            continue
        if finished:
            return
        await anyio.sleep(poll_seconds)


def open_stream(*, session: Session, tenant: str, job_id: str, after_seq: int) -> Response:
    """Check the job like the JSON route (404 for another tenant), then stream; 204 when nothing can follow."""
    get_job(session=session, tenant=tenant, job_id=job_id)
    finished, pending = poll(session, job_id, after_seq, limit=1)
    session.close()  # the request's session would otherwise stay open, unused, for the stream's life
    if finished and not pending:
        # The SSE way to tell an EventSource not to reconnect: a finished job that has sent everything.
        return Response(status_code=204)
    settings = get_settings()
    return EventSourceResponse(follow(job_id, after_seq, settings.events_poll_seconds),
                               ping=settings.events_ping_seconds)
