"""FastAPI dependencies: the session and the calling principal."""

import hmac
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app import pg
from app.config import get_settings
from app.db import get_db, get_read_sessionmaker
from app.errors import Forbidden, Unauthorized
from app.keys.service import KEY_PREFIX, Principal, authenticate, authenticate_async, key_prefix, verify_key

SessionDep = Annotated[Session, Depends(get_db)]


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer API key", code="missing_api_key")
    return token.strip()


def _authenticate_sync(key: str) -> Principal:
    with get_read_sessionmaker()() as session:  # its own short read: a lookup never holds SQLite's lock
        return authenticate(session=session, key=key)


async def _authenticate(key: str) -> Principal:
    """PostgreSQL: one prepared statement on the event loop (app.pg), no worker thread and no ORM; SQLite: the ORM
    lookup in a worker thread, in a transaction of its own that ends at once."""
    if pg.enabled():
        return await authenticate_async(key)
    return await run_in_threadpool(_authenticate_sync, key)


async def principal(request: Request) -> Principal:
    """The authenticated caller."""
    return await _authenticate(_bearer(request))


def require(scope: str):
    """A dependency that demands a scope."""

    # One dependency, not one on top of `principal`: each level of FastAPI's dependency solving costs CPU on
    # every request.
    async def dep(request: Request) -> Principal:
        return _check_scope(await principal(request), scope)

    dep.required_scope = scope  # type: ignore[attr-defined]  # lets tests find each route's scope
    return dep


def _check_scope(p: Principal, scope: str) -> Principal:
    if scope not in p.scopes:
        raise Forbidden(f"this API key lacks the '{scope}' scope", code="insufficient_scope")
    return p


class KeyCheck:
    """The key check of a read that runs in the read's own round trip (`KeyCheck.of`): on PostgreSQL the key's row
    and the resource's come back from one statement, so a GET costs one query, not two. Nothing is skipped: the
    key is verified (401), then the scope (403), and only then is the resource's absence (404) revealed."""

    def __init__(self, key: str, scope: str):
        self.key, self.scope = key, scope

    @classmethod
    def of(cls, request: Request, scope: str) -> "KeyCheck":
        """The request's key (401 at once when there is none), to be checked with the read. Called by the route
        itself rather than declared as a dependency: on the hottest route, FastAPI's solving of one more
        dependency cost about a sixth of the request's CPU."""
        return cls(_bearer(request), scope)

    async def fetch(self, statement: pg.Coalesced, arg: str) -> tuple[Principal, Any]:
        """PostgreSQL: (the caller, the resource's row or None), statement made by app.keys.service.key_and."""
        row = await statement.fetchrow(key_prefix(self.key), arg)
        found = None if row is None else pg.Attrs(row, prefix=KEY_PREFIX)
        p = _check_scope(verify_key(self.key, found), self.scope)
        return p, (row if row is not None and row["id"] is not None else None)

    async def principal(self) -> Principal:
        """SQLite (or a read that needs the caller first): the usual lookup."""
        return _check_scope(await _authenticate(self.key), self.scope)


def demands(scope: str):
    """Marks a route that checks the key itself (KeyCheck.of) with the scope it demands, as `require` marks its
    dependency: tests find each route's scope either way."""

    def mark(endpoint):  # noqa: ANN001, ANN202
        endpoint.required_scope = scope
        return endpoint

    return mark


Reader = Annotated[Principal, Depends(require("read"))]
Writer = Annotated[Principal, Depends(require("write"))]
Admin = Annotated[Principal, Depends(require("admin"))]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]


async def worker_auth(request: Request) -> None:
    """Internal routes: the shared worker token, compared in constant time (async: no I/O, so no thread hop)."""
    token = _bearer(request)
    expected = get_settings().secret("worker_token")
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise Unauthorized("invalid worker token", code="invalid_worker_token")


WorkerDep = Depends(worker_auth)
