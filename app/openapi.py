"""The error body as the OpenAPI document shows it, and per-route lists of the error codes a route can answer (the
codes, their statuses and meanings are app.errors.CODES)."""

from typing import Any

from pydantic import BaseModel, Field

from app.errors import CODES


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

# Every public route checks the key and its scope. validation_error is listed by the routes with a parameter or
# a body that can fail validation; tests/contract/test_error_codes.py holds each route to the codes it answers.
AUTH = ("missing_api_key", "invalid_api_key", "insufficient_scope")


def multipart(properties: dict[str, dict[str, Any]], *, required: list[str], example: dict[str, Any]
              ) -> dict[str, Any]:
    """`openapi_extra` documenting a multipart body that a route streams itself (so FastAPI cannot see it)."""
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {
        "schema": {"type": "object", "required": required, "properties": properties}, "example": example}}}}


BINARY: dict[str, Any] = {"type": "string", "format": "binary"}


def errors(*codes: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for the given error codes (and the authentication ones, AUTH), grouped by status, with an
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
