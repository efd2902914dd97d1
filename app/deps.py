"""FastAPI dependencies: the session and the calling principal."""

import hmac
import inspect
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import get_db
from app.errors import Forbidden, Unauthorized
from app.keys.service import Principal, authenticate

SessionDep = Annotated[Session, Depends(get_db)]


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer API key", code="missing_api_key")
    return token.strip()


def principal(request: Request, session: SessionDep) -> Principal:
    """The authenticated caller."""
    found = authenticate(session=session, key=_bearer(request))
    endpoint = getattr(request.scope.get("route"), "endpoint", None)
    if session.get_bind().dialect.name == "sqlite" or inspect.iscoroutinefunction(endpoint):
        # End the lookup's transaction now: on SQLite it holds the write lock until the request ends otherwise, and
        # an async route (a streamed upload, an event stream) may run for minutes without needing the connection.
        # A sync route on PostgreSQL goes on in the same transaction: no COMMIT, checkout and BEGIN in between.
        session.commit()
    return found


def require(scope: str):
    """A dependency that demands a scope."""

    # async: a pure check, so FastAPI runs it inline instead of handing it to a worker thread.
    async def dep(p: Annotated[Principal, Depends(principal)]) -> Principal:
        if scope not in p.scopes:
            raise Forbidden(f"this API key lacks the '{scope}' scope", code="insufficient_scope")
        return p

    dep.required_scope = scope  # type: ignore[attr-defined]  # lets tests find each route's scope
    return dep


Reader = Annotated[Principal, Depends(require("read"))]
Writer = Annotated[Principal, Depends(require("write"))]
Admin = Annotated[Principal, Depends(require("admin"))]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]


def worker_auth(request: Request) -> None:
    """Internal routes: the shared worker token, compared in constant time."""
    token = _bearer(request)
    expected = get_settings().secret("worker_token")
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise Unauthorized("invalid worker token", code="invalid_worker_token")


WorkerDep = Depends(worker_auth)
