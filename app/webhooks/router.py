"""Webhook routes: endpoints of the tenant (admin to add or remove, read to look) and their delivery log."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse

from app.deps import Admin, IdempotencyKey, Reader, SessionDep
from app.idempotency import body_hash, run_idempotent
from app.openapi import ERROR_RESPONSES, errors
from app.schemas import Page
from app.webhooks import service
from app.webhooks.schemas import DeliveryRead, WebhookCreate, WebhookCreated, WebhookRead

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=ERROR_RESPONSES)


@router.post("", status_code=201, response_model=WebhookCreated,
             summary="Subscribe a URL to job events (the signing secret is shown in this answer only)",
             responses=errors("validation_error", "invalid_webhook_url", "webhook_url_forbidden",
                              "webhook_url_unresolvable",
                              "quota_exceeded", "idempotency_mismatch", "idempotency_in_progress"))
def create_webhook(body: WebhookCreate, principal: Admin, session: SessionDep,
                   idempotency_key: IdempotencyKey = None) -> Any:
    def make() -> tuple[int, dict]:
        row = service.create_endpoint(session=session, tenant=principal.tenant, url=body.url, events=body.events)
        return 201, WebhookRead.model_validate(row).model_dump(mode="json")

    # The secret never enters the idempotency record: a replay reads it from the endpoint again.
    status, created = run_idempotent(session=session, tenant=principal.tenant, route="webhooks.create",
                                     key=idempotency_key, body_sha256=body_hash(body.model_dump_json()), create=make)
    row = service.get_endpoint(session=session, tenant=principal.tenant, webhook_id=created["id"])
    return JSONResponse({**created, "secret": row.secret}, status_code=status)


@router.get("", response_model=Page[WebhookRead], summary="List webhook endpoints, newest first",
            responses=errors("validation_error", "invalid_request"))
def list_webhooks(principal: Reader, session: SessionDep, limit: Annotated[int, Query(ge=1, le=100)] = 20,
                  after: str | None = None) -> Page[WebhookRead]:
    rows, more = service.list_endpoints(session=session, tenant=principal.tenant, limit=limit, after=after)
    return Page(data=[WebhookRead.model_validate(r) for r in rows], has_more=more)


@router.get("/{webhook_id}", response_model=WebhookRead, summary="Get a webhook endpoint (without its secret)",
            responses=errors("invalid_request", "webhook_not_found"))
def get_webhook(webhook_id: str, principal: Reader, session: SessionDep) -> WebhookRead:
    return WebhookRead.model_validate(service.get_endpoint(session=session, tenant=principal.tenant,
                                                           webhook_id=webhook_id))


@router.delete("/{webhook_id}", status_code=204, summary="Delete a webhook endpoint, its secret and its deliveries",
               responses=errors("invalid_request", "webhook_not_found"))
def delete_webhook(webhook_id: str, principal: Admin, session: SessionDep) -> Response:
    service.delete_endpoint(session=session, tenant=principal.tenant, webhook_id=webhook_id)
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", response_model=Page[DeliveryRead],
            summary="The endpoint's delivery log, newest first: status, attempts, last answer",
            responses=errors("validation_error", "invalid_request", "webhook_not_found"))
def list_deliveries(webhook_id: str, principal: Reader, session: SessionDep,
                    limit: Annotated[int, Query(ge=1, le=100)] = 20, after: str | None = None) -> Page[DeliveryRead]:
    rows, more = service.list_deliveries(session=session, tenant=principal.tenant, webhook_id=webhook_id,
                                         limit=limit, after=after)
    return Page(data=[DeliveryRead.model_validate(r) for r in rows], has_more=more)
