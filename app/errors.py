"""The error tree: each error carries its code and HTTP status; one handler renders them."""

from typing import Any


class TaasError(Exception):
    """Base of every error rendered as the contract's error body."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status
        self.details = details or {}

    def body(self) -> dict[str, Any]:
        """The contract's error body."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class NotFound(TaasError):
    status, code = 404, "not_found"


class Unauthorized(TaasError):
    status, code = 401, "unauthorized"


class Forbidden(TaasError):
    status, code = 403, "forbidden"


class Conflict(TaasError):
    status, code = 409, "conflict"


class Invalid(TaasError):
    status, code = 422, "invalid_request"


class TooLarge(TaasError):
    status, code = 413, "upload_too_large"


class QuotaExceeded(TaasError):
    status, code = 429, "quota_exceeded"


class InsufficientStorage(TaasError):
    status, code = 507, "insufficient_storage"
