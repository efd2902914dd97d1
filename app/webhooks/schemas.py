"""Webhook schemas: endpoints (the secret only in the creation answer) and their delivery log."""

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.schemas import Out, Stamp


class WebhookEvent(StrEnum):
    job_succeeded = "job.succeeded"  # the job has a model (data.model_id)
    job_failed = "job.failed"  # data.error says why
    job_cancelled = "job.cancelled"  # stopped on request, no model


class DeliveryStatus(StrEnum):
    pending = "pending"  # waiting for its next attempt (next_attempt_at)
    succeeded = "succeeded"  # the receiver answered 2xx
    failed = "failed"  # every attempt failed, or the endpoint's address is refused


class WebhookCreate(BaseModel):
    url: str = Field(max_length=2000, examples=["https://example.com/hooks/taas"],
                     description="An http(s) URL that receives a signed POST per event")
    events: list[WebhookEvent] = Field(min_length=1, max_length=len(WebhookEvent),
                                       examples=[["job.succeeded", "job.failed"]])

    @field_validator("events")
    @classmethod
    def _unique(cls, v: list[WebhookEvent]) -> list[WebhookEvent]:
        return list(dict.fromkeys(v))


_HOOK = {"id": "wh_01jdr2a4c6e8g0j2m4p6r8t0v2", "url": "https://example.com/hooks/taas",
         "events": ["job.succeeded", "job.failed"], "created_at": "2026-11-28T09:00:00.000000Z"}
_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class WebhookRead(Out):
    model_config = ConfigDict(json_schema_extra={"examples": [_HOOK]})

    id: str = Field(examples=["wh_01jdr2a4c6e8g0j2l4n6q8s0u2"])
    url: str
    events: list[WebhookEvent]
    created_at: Stamp


class WebhookCreated(WebhookRead):
    model_config = ConfigDict(json_schema_extra={"examples": [{**_HOOK, "secret": _SECRET}]})

    secret: str = Field(description="The Standard Webhooks signing secret (whsec_…): shown in this answer only")


class DeliveryRead(Out):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "msg_01jdr3b5d7f9h1k3n5q7s9u1w3", "endpoint_id": _HOOK["id"], "event_type": "job.succeeded",
        "job_id": "job_01jdr1y3h5s8p2w7d4f6g9k0m1", "status": "succeeded", "attempts": 2, "next_attempt_at": None,
        "last_status_code": 200, "last_error": None,
        "payload": {"type": "job.succeeded", "timestamp": "2026-11-28T09:20:00.000000Z",
                    "data": {"id": "job_01jdr1y3h5s8p2w7d4f6g9k0m1", "status": "succeeded",
                             "model_id": "model_01jdr3a0b2c4d6e8f0g2h4j6k8", "…": "the job as GET /v1/jobs/{id}"}},
        "created_at": "2026-11-28T09:20:00.000000Z", "delivered_at": "2026-11-28T09:20:11.000000Z"}]})

    id: str = Field(description="Also the webhook-id header: the same on every retry of a delivery",
                    examples=["msg_01jdr2b5d7f9h1k3m5p7r9t1v3"])
    endpoint_id: str
    event_type: WebhookEvent
    job_id: str | None
    status: DeliveryStatus
    attempts: int
    next_attempt_at: Stamp | None
    last_status_code: int | None
    last_error: str | None
    payload: dict[str, Any]
    created_at: Stamp
    delivered_at: Stamp | None
