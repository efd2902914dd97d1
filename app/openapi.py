"""The error body as the OpenAPI document shows it, and per-route lists of the error codes a route can answer."""

from typing import Any

from pydantic import BaseModel, Field


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    """The contract's error body, documented for every 4xx answer."""

    error: ErrorInfo


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {"4XX": {
    "model": ErrorBody, "description": "An error: the code names it, the message says it in words",
    "content": {"application/json": {"example": {"error": {
        "code": "not_found", "message": "job job_01jdr1y3h5s8p2w7d4f6g9k0m1 not found", "details": {}}}}}}}

# Every error code a documented route names: its status and when it is answered.
CODES: dict[str, tuple[int, str]] = {
    "missing_api_key": (401, "no bearer API key"),
    "invalid_api_key": (401, "the key is unknown or revoked"),
    "insufficient_scope": (403, "the key lacks the scope the route needs"),
    "validation_error": (422, "a parameter or the body is invalid; `details.errors` names the fields"),
    "model_not_found": (404, "no such model for this tenant"),
    "artifact_not_found": (404, "the model has no artifact of this format"),
    "alias_not_found": (404, "no such alias for this tenant"),
    "model_in_use": (409, "an alias points to the model; move or delete the alias first"),
    "onnx_unavailable": (409, "the model has no ONNX artifact (the export runs after the job, or failed)"),
    "preprocessing_unavailable": (409, "the model records no preprocessing that serving understands"),
    "upload_too_large": (413, "the request body is over TAAS_PREDICT_MAX_BYTES"),
    "too_many_images": (413, "more images than TAAS_PREDICT_MAX_IMAGES"),
    "range_not_satisfiable": (416, "the Range starts beyond the end of the file"),
    "invalid_upload": (422, "not multipart/form-data, malformed, or without a `files` part"),
    "bad_image": (422, "a file is not a readable image (or too many pixels); `details.file` names it"),
    "server_busy": (503, "every prediction thread and queue slot is taken; retry shortly"),
    "webhook_not_found": (404, "no such webhook endpoint for this tenant"),
    "invalid_webhook_url": (422, "the URL is not an absolute http:// or https:// URL"),
    "webhook_url_forbidden": (422, "the host is or resolves to a private, loopback, link-local or reserved address "
                                   "(unless listed in TAAS_WEBHOOK_ALLOW_HOSTS); `details.address` names it"),
    "webhook_url_unresolvable": (422, "the host does not resolve"),
    "quota_exceeded": (429, "one of the tenant's quotas is used up; `details.quota` names it"),
    "idempotency_mismatch": (409, "the Idempotency-Key was used with another request body"),
    "idempotency_in_progress": (409, "a request with this Idempotency-Key is still being answered"),
}
AUTH = ("missing_api_key", "invalid_api_key", "insufficient_scope", "validation_error")


def multipart(properties: dict[str, dict[str, Any]], *, required: list[str], example: dict[str, Any]
              ) -> dict[str, Any]:
    """`openapi_extra` documenting a multipart body that a route streams itself (so FastAPI cannot see it)."""
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {
        "schema": {"type": "object", "required": required, "properties": properties}, "example": example}}}}


BINARY: dict[str, Any] = {"type": "string", "format": "binary"}


def errors(*codes: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for the given error codes (and the authentication ones), grouped by status, with an
    example body per code."""
    by_status: dict[int, list[str]] = {}
    for code in (*AUTH, *codes):
        by_status.setdefault(CODES[code][0], []).append(code)
    out: dict[int | str, dict[str, Any]] = {}
    for status, names in sorted(by_status.items()):
        examples = {n: {"summary": CODES[n][1], "value": {"error": {"code": n, "message": CODES[n][1],
                                                                    "details": {}}}} for n in names}
        out[status] = {"model": ErrorBody, "description": "; ".join(f"`{n}`: {CODES[n][1]}" for n in names),
                       "content": {"application/json": {"examples": examples}}}
    return out
