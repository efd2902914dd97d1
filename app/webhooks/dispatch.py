"""The webhook delivery loop, in the API process: claim due deliveries, sign them, POST them, back off on failure.

A delivery is claimed by a compare-and-set that pushes its next_attempt_at past the send timeout (a lease), so
several API processes can run the loop side by side, and a process that dies mid-send leaves the delivery to be
retried when the lease runs out. Delivery is at least once: receivers deduplicate by the webhook-id header, which
stays the same on every retry. Each attempt is signed afresh (Standard Webhooks: webhook-id, webhook-timestamp,
webhook-signature), so a retry hours later still passes the receiver's timestamp tolerance.
"""

import json
import logging
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from math import floor
from typing import Any

import httpx
import structlog
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from app import observability
from app.config import get_settings
from app.db import get_sessionmaker
from app.errors import Invalid
from app.models import WebhookDelivery, WebhookEndpoint, utcnow
from app.webhooks.addresses import IPAddress, Pinned, pin
from app.webhooks.schemas import DeliveryStatus

log = logging.getLogger(__name__)
BATCH = 50
MAX_RESPONSE_BYTES = 4096  # what is kept of a failing receiver's answer, for the delivery log
_wake = threading.Event()


def wake() -> None:
    """Make the loop look for due deliveries now (called after a commit that added some)."""
    _wake.set()


@dataclass(frozen=True)
class Claimed:
    id: str
    attempt: int
    endpoint_id: str
    url: str
    secret: str
    event_type: str
    job_id: str | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    status_code: int | None = None
    error: str | None = None
    permanent: bool = False  # no retry: the address is refused

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def claim_due(session: Session, *, limit: int = BATCH) -> list[Claimed]:
    """Claim up to limit due deliveries (attempts + 1, next_attempt_at pushed past the send timeout)."""
    s = get_settings()
    now = utcnow()
    lease = now + timedelta(seconds=2 * s.webhook_timeout_seconds + 5)
    due = session.scalars(select(WebhookDelivery.id).where(
        WebhookDelivery.status == DeliveryStatus.pending, WebhookDelivery.next_attempt_at <= now,
    ).order_by(WebhookDelivery.next_attempt_at).limit(limit)).all()
    mine: dict[str, int] = {}
    for delivery_id in due:
        # Another process that claimed it first has moved next_attempt_at past now: then no row matches.
        attempt = session.execute(update(WebhookDelivery).where(
            WebhookDelivery.id == delivery_id, WebhookDelivery.status == DeliveryStatus.pending,
            WebhookDelivery.next_attempt_at <= now,
        ).values(attempts=WebhookDelivery.attempts + 1, next_attempt_at=lease)
         .returning(WebhookDelivery.attempts)).scalar_one_or_none()
        if attempt is not None:
            mine[delivery_id] = attempt
    session.commit()
    if not mine:
        return []
    rows = session.execute(select(WebhookDelivery, WebhookEndpoint.url, WebhookEndpoint.secret)
                           .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id, isouter=True)
                           .where(WebhookDelivery.id.in_(list(mine)))).all()
    out = []
    for d, url, secret in rows:
        if url is None:  # the endpoint was deleted after the delivery was claimed
            finish(session, Claimed(d.id, mine[d.id], d.endpoint_id, "", "", d.event_type, d.job_id, {}),
                   Outcome(error="the endpoint was deleted", permanent=True))
            continue
        out.append(Claimed(d.id, mine[d.id], d.endpoint_id, url, secret, d.event_type, d.job_id, d.payload))
    return out


def signed_headers(c: Claimed, body: str, now: datetime) -> dict[str, str]:
    """The Standard Webhooks headers for one attempt."""
    return {"webhook-id": c.id, "webhook-timestamp": str(floor(now.timestamp())),
            "webhook-signature": Webhook(c.secret).sign(c.id, now, body),
            "content-type": "application/json", "user-agent": "taas-webhooks/1"}


def send(client: httpx.Client, c: Claimed) -> Outcome:
    """One attempt: POST the signed payload to an address checked just now; never raises.

    The host is resolved once (pin) and every address checked: DNS may have changed since the endpoint was made,
    and the request goes to a checked address (its IP literal in the URL, the name in Host and, over https, in SNI
    and certificate verification), so the client never resolves the name again. The next checked address is
    tried only when connecting to one fails outright (no route, refused).
    """
    body = json.dumps(c.payload, separators=(",", ":"))
    try:
        pinned = pin(c.url)
        headers = signed_headers(c, body, datetime.now(UTC)) | pinned.headers
        for address in pinned.addresses[:-1]:
            try:
                return _post(client, pinned, address, body.encode(), headers)
            except httpx.ConnectError:
                continue
        return _post(client, pinned, pinned.addresses[-1], body.encode(), headers)
    except Invalid as exc:  # refused now (for good) or unresolvable (perhaps for a moment)
        return Outcome(error=exc.message, permanent=exc.code in ("webhook_url_forbidden", "invalid_webhook_url"))
    except httpx.HTTPError as exc:
        return Outcome(error=f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__)
    except Exception as exc:  # an unusable URL or secret must not stop the loop
        return Outcome(error=f"{type(exc).__name__}: {exc}"[:500], permanent=True)


def _post(client: httpx.Client, pinned: Pinned, address: IPAddress, body: bytes, headers: dict[str, str]) -> Outcome:
    with client.stream("POST", pinned.request_url(address), content=body, headers=headers,
                       extensions=pinned.extensions, timeout=get_settings().webhook_timeout_seconds) as resp:
        if 200 <= resp.status_code < 300:
            return Outcome(status_code=resp.status_code)
        head = b""
        for chunk in resp.iter_bytes():
            head += chunk
            if len(head) >= MAX_RESPONSE_BYTES:
                break
        text = head[:300].decode(errors="replace").strip()
        error = f"HTTP {resp.status_code}" + (f": {text}" if text else "")
        return Outcome(status_code=resp.status_code, error=error)


def backoff_seconds(attempt: int) -> float:
    """Delay after a failed attempt: exponential from webhook_retry_base_seconds, capped, with 0-20% jitter."""
    s = get_settings()
    delay = min(s.webhook_retry_base_seconds * 2 ** min(attempt - 1, 30), s.webhook_retry_max_seconds)
    return delay * (1 + 0.2 * random.random())


def finish(session: Session, c: Claimed, outcome: Outcome) -> None:
    """Record an attempt: delivered, failed for good, or pending again after a backoff (fenced by attempt)."""
    now = utcnow()
    values: dict[str, Any] = {"last_status_code": outcome.status_code, "last_error": outcome.error}
    if outcome.ok:
        values |= {"status": DeliveryStatus.succeeded, "delivered_at": now, "next_attempt_at": None}
    elif outcome.permanent or c.attempt >= get_settings().webhook_max_attempts:
        values |= {"status": DeliveryStatus.failed, "next_attempt_at": None}
    else:
        values |= {"next_attempt_at": now + timedelta(seconds=backoff_seconds(c.attempt))}
    session.execute(update(WebhookDelivery).where(
        WebhookDelivery.id == c.id, WebhookDelivery.status == DeliveryStatus.pending,
        WebhookDelivery.attempts == c.attempt).values(**values))
    session.commit()
    result = "delivered" if outcome.ok else values.get("status", "retrying")
    observability.WEBHOOK_ATTEMPTS.labels(outcome="delivered" if outcome.ok else "failed").inc()
    with structlog.contextvars.bound_contextvars(job_id=c.job_id):
        log.info("webhook %s %s to %s: attempt %d %s%s", c.id, c.event_type, c.endpoint_id, c.attempt, result,
                 f" ({outcome.error})" if outcome.error and not outcome.ok else "")


def deliver_once(client: httpx.Client, pool: ThreadPoolExecutor) -> int:
    """Claim, send (concurrently) and record one batch; returns how many were attempted."""
    sessions = get_sessionmaker()
    with sessions() as session:
        claimed = claim_due(session)
    if not claimed:
        return 0
    outcomes = list(pool.map(lambda c: send(client, c), claimed))
    with sessions() as session:
        for c, outcome in zip(claimed, outcomes, strict=True):
            finish(session, c, outcome)
    return len(claimed)


def run_forever(stop: threading.Event) -> None:
    """Deliver until stop is set: at once when woken, else every webhook_poll_seconds."""
    s = get_settings()
    # No redirects: a receiver's 3xx is a failed attempt, never a hop to an address nobody checked. No proxies from
    # the environment either: a proxy would resolve the name itself, and verify TLS against the pinned address.
    with httpx.Client(follow_redirects=False, trust_env=False) as client, \
            ThreadPoolExecutor(s.webhook_concurrency, thread_name_prefix="webhook-send") as pool:
        while not stop.is_set():
            _wake.clear()
            try:
                if deliver_once(client, pool) >= BATCH:
                    continue  # more may be due right now
            except Exception:
                log.exception("webhook delivery pass failed")
            _wake.wait(get_settings().webhook_poll_seconds)
