"""Webhook rules: endpoints per tenant, their delivery log, and the deliveries a finished job enqueues."""

import base64
import secrets
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import on_commit
from app.errors import NotFound, QuotaExceeded
from app.models import Job, WebhookDelivery, WebhookEndpoint, utcnow
from app.pagination import page
from app.webhooks import dispatch
from app.webhooks.addresses import check_url
from app.webhooks.schemas import DeliveryStatus, WebhookEvent
from core.ids import new_id
from core.states import JobStatus


def new_secret() -> str:
    """A Standard Webhooks signing secret: whsec_ and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def create_endpoint(*, session: Session, tenant: str, url: str, events: list[WebhookEvent]) -> WebhookEndpoint:
    """Store an endpoint with a new signing secret (returned on the row; the caller shows it once)."""
    check_url(url)
    limit = get_settings().webhook_max_endpoints
    used = session.scalar(select(func.count()).select_from(WebhookEndpoint)
                          .where(WebhookEndpoint.tenant == tenant)) or 0
    if used + 1 > limit:
        raise QuotaExceeded(f"the tenant already has {used} webhook endpoints (limit {limit})",
                            details={"quota": "max_webhook_endpoints", "limit": limit, "used": used})
    row = WebhookEndpoint(id=new_id("wh"), tenant=tenant, url=url, secret=new_secret(),
                          events=[str(e) for e in events])
    session.add(row)
    session.commit()
    return row


def get_endpoint(*, session: Session, tenant: str, webhook_id: str) -> WebhookEndpoint:
    """An endpoint of the tenant, or 404."""
    row = session.get(WebhookEndpoint, webhook_id)
    if row is None or row.tenant != tenant or row.disabled_at is not None:
        raise NotFound(f"webhook {webhook_id} not found", code="webhook_not_found")
    return row


def list_endpoints(*, session: Session, tenant: str, limit: int, after: str | None
                   ) -> tuple[list[WebhookEndpoint], bool]:
    """The tenant's endpoints, newest first."""
    stmt = select(WebhookEndpoint).where(WebhookEndpoint.tenant == tenant, WebhookEndpoint.disabled_at.is_(None))
    return page(session, stmt, WebhookEndpoint.id, limit=limit, after=after)


def delete_endpoint(*, session: Session, tenant: str, webhook_id: str) -> None:
    """Remove an endpoint, its secret and its delivery log; nothing more is sent to it."""
    row = get_endpoint(session=session, tenant=tenant, webhook_id=webhook_id)
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == row.id))
    session.delete(row)
    session.commit()


def list_deliveries(*, session: Session, tenant: str, webhook_id: str, limit: int, after: str | None
                    ) -> tuple[list[WebhookDelivery], bool]:
    """An endpoint's deliveries, newest first."""
    get_endpoint(session=session, tenant=tenant, webhook_id=webhook_id)
    stmt = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == webhook_id)
    return page(session, stmt, WebhookDelivery.id, limit=limit, after=after)


def job_finished(session: Session, job_id: str, status: JobStatus, *, render: Callable[[Job], dict[str, Any]]) -> int:
    """In the caller's transaction: one pending delivery per endpoint subscribed to job.<status>; returns how many.

    The payload's data is render(job): the job as GET /v1/jobs/{id} shows it (the jobs package renders it, so
    webhooks need not know a job's shape). The deliveries commit (or roll back) with the transition, and the
    delivery loop is woken after the commit."""
    event = f"job.{status}"
    tenant = session.scalar(select(Job.tenant).where(Job.id == job_id))
    endpoints = [e for e in session.scalars(select(WebhookEndpoint).where(
        WebhookEndpoint.tenant == tenant, WebhookEndpoint.disabled_at.is_(None)).order_by(WebhookEndpoint.id))
        if event in e.events]
    if not endpoints:
        return 0
    # Read back as the transition left it (pending changes are flushed first).
    job = session.execute(select(Job).where(Job.id == job_id).execution_options(populate_existing=True)).scalar_one()
    now = utcnow()
    payload = {"type": event, "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
               "data": render(job)}
    for endpoint in endpoints:
        session.add(WebhookDelivery(id=new_id("msg"), endpoint_id=endpoint.id, tenant=job.tenant, event_type=event,
                                    job_id=job_id, payload=payload, status=DeliveryStatus.pending, attempts=0,
                                    next_attempt_at=now))
    on_commit(session, dispatch.wake)
    return len(endpoints)
