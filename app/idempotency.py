"""Idempotency-Key for creating POSTs: replay the first response; refuse a different body or an in-flight one."""

import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi.encoders import jsonable_encoder
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.config import get_settings
from app.errors import Conflict
from app.models import IdempotencyRecord, utcnow


def body_hash(body: bytes | str) -> str:
    """sha256 of a request body."""
    return hashlib.sha256(body.encode() if isinstance(body, str) else body).hexdigest()


def run_idempotent(*, session: Session, tenant: str, route: str, key: str | None, body_sha256: str,
                   create: Callable[[], tuple[int, Any]]) -> tuple[int, Any]:
    """Run create() once per (tenant, route, key); returns (status, JSON-able body)."""
    if key is None:
        return create()
    ttl = timedelta(hours=get_settings().idempotency_ttl_hours)
    session.execute(delete(IdempotencyRecord).where(
        IdempotencyRecord.tenant == tenant, IdempotencyRecord.route == route,
        IdempotencyRecord.key == key, IdempotencyRecord.created_at < utcnow() - ttl))
    session.add(IdempotencyRecord(tenant=tenant, route=route, key=key, body_sha256=body_sha256))
    try:
        session.commit()  # claims the key; a concurrent duplicate hits the primary key
    except IntegrityError:
        session.rollback()
        rec = session.get(IdempotencyRecord, (tenant, route, key))
        if rec is None:
            raise Conflict("idempotent request in progress", code="idempotency_in_progress") from None
        if rec.body_sha256 != body_sha256:
            raise Conflict("Idempotency-Key was used with another request body",
                           code="idempotency_mismatch") from None
        if rec.status_code is None:
            raise Conflict("a request with this Idempotency-Key is still in progress",
                           code="idempotency_in_progress") from None
        return rec.status_code, rec.response
    try:
        status, body = create()
    except BaseException:
        # Only successes are kept (as Stripe does): a refused request may be retried with the same key.
        session.rollback()
        session.execute(delete(IdempotencyRecord).where(
            IdempotencyRecord.tenant == tenant, IdempotencyRecord.route == route,
            IdempotencyRecord.key == key))
        session.commit()
        raise
    body = jsonable_encoder(body)
    _finish(session, tenant, route, key, status, body)
    return status, body


def _finish(session: Session, tenant: str, route: str, key: str, status: int, body: Any) -> None:
    session.rollback()
    rec = session.get(IdempotencyRecord, (tenant, route, key))
    if rec is not None:
        rec.status_code, rec.response = status, body
        session.commit()
