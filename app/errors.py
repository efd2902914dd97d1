"""The error registry and the error tree.

CODES declares every error code the API answers, once: its HTTP status and what it means. An error takes its
status from the registry, so a raise site names the code and cannot disagree about the status; the classes are
families (NotFound, Conflict, ...) to raise and catch by. tests/unit/test_error_registry.py checks that every code
raised or rendered in app/ is registered here and every registered one is raised or rendered somewhere;
tests/contract/test_error_codes.py checks, over the whole suite, that each public route declares (app.openapi.errors)
exactly codes it is seen to answer.
"""

from typing import Any, NamedTuple


class Code(NamedTuple):
    status: int
    meaning: str


_ARCHIVE = 422  # the upload's structural check (app.datasets.archive.inspect_archive); `details.member` names the entry
# inspect_archive's codes, which the dataset upload answers as they are (`Invalid(exc.message, code=exc.code)`).
ARCHIVE_CODES = ("not_an_archive", "unsafe_member", "too_many_members", "archive_too_large", "compression_ratio",
                 "encrypted_member", "bad_layout", "single_class", "empty_archive")

CODES: dict[str, Code] = {c: Code(s, m) for c, (s, m) in {
    # Authentication, answered by the key check of every public route (app.deps).
    "missing_api_key": (401, "no bearer API key"),
    "invalid_api_key": (401, "the key is unknown or revoked"),
    "insufficient_scope": (403, "the key lacks the scope the route needs"),
    "invalid_worker_token": (401, "the worker token of an /internal route is missing or wrong"),
    "invalid_metrics_token": (401, "the metrics token is missing or wrong"),
    # Rendered by the app's handlers (app.main) for any route.
    "validation_error": (422, "a parameter or the body is invalid; `details.errors` names the fields"),
    "invalid_json": (422, "the request body is not valid JSON, or is nested too deeply"),
    "invalid_request": (422, "the request contains a value that cannot be stored or searched for"),
    "not_found": (404, "no route has this path"),
    "method_not_allowed": (405, "the path has no route for this method; `Allow` names those it has"),
    "request_too_large": (413, "the JSON or form body is over the server's request size limit"),
    "http_error": (400, "another HTTP error of the framework's own (the answer carries its status)"),
    "internal_error": (500, "an unexpected server error"),
    # Request bodies and uploads.
    "upload_too_large": (413, "the request body is over TAAS_PREDICT_MAX_BYTES"),  # or the route's other byte limit
    "invalid_upload": (422, "not multipart/form-data, malformed, or without a `files` part"),  # or the route's part
    "invalid_name": (422, "the name contains control characters"),
    "idempotency_mismatch": (409, "the Idempotency-Key was used with another request body"),
    "idempotency_in_progress": (409, "a request with this Idempotency-Key is still being answered"),
    "quota_exceeded": (429, "one of the tenant's quotas is used up; `details.quota` names it"),
    "insufficient_storage": (507, "the storage volume is full; try again later"),
    # Datasets.
    "dataset_not_found": (404, "no such dataset for this tenant"),
    "dataset_in_use": (409, "a job uses the dataset"),
    "dataset_not_ready": (409, "the dataset is still processing, or failed"),
    "not_an_archive": (_ARCHIVE, "neither zip nor tar, corrupt, or an unsupported zip compression"),
    "unsafe_member": (_ARCHIVE, "a link, an absolute or escaping path, a special file, or a duplicate name"),
    "too_many_members": (_ARCHIVE, "more entries than the server allows"),
    "archive_too_large": (_ARCHIVE, "the unpacked size, or one member's, is over the server's limit"),
    "compression_ratio": (_ARCHIVE, "the archive unpacks to too many times its size"),
    "encrypted_member": (_ARCHIVE, "an encrypted zip entry"),
    "bad_layout": (_ARCHIVE, "files outside class folders, a mixed or incomplete split, or a non-image file"),
    "single_class": (_ARCHIVE, "fewer than 2 classes"),
    "empty_archive": (_ARCHIVE, "no images"),
    # Jobs.
    "job_not_found": (404, "no such job for this tenant"),
    "job_finished": (409, "the job is already finished"),
    "job_not_finished": (409, "the job is still queued or running; cancel it first"),
    "invalid_combination": (422, "the spec's fields do not fit together (its weights, or the architecture)"),
    "spec_too_large": (422, "batch_size * image_size^2 is over the server's per-batch pixel limit"),
    "weights_unavailable": (422, "the weights the spec names are not imported, or not found"),
    # Models, aliases, serving.
    "model_not_found": (404, "no such model for this tenant"),
    "artifact_not_found": (404, "the model has no artifact of this format"),
    "model_in_use": (409, "an alias points to the model; move or delete the alias first"),
    "onnx_unavailable": (409, "the model has no ONNX artifact (the export runs after the job, or failed)"),
    "preprocessing_unavailable": (409, "the model records no preprocessing that serving understands"),
    "range_not_satisfiable": (416, "the Range starts beyond the end of the file"),
    "too_many_images": (413, "more images than TAAS_PREDICT_MAX_IMAGES"),
    "bad_image": (422, "a file is not a readable image (or too many pixels); `details.file` names it"),
    "server_busy": (503, "every prediction thread and queue slot is taken; retry shortly"),
    "alias_not_found": (404, "no such alias for this tenant"),
    "alias_busy": (409, "other requests are moving the alias; retry"),
    # Base models.
    "base_model_not_found": (404, "no such base model for this tenant"),
    "base_model_in_use": (409, "a job uses the base model"),
    "unknown_arch": (422, "the architecture is not one the server trains"),
    "invalid_safetensors": (422, "the file is not a safetensors file"),
    "weights_mismatch": (422, "the tensors' names or shapes do not fit the architecture"),
    # Keys.
    "key_not_found": (404, "no such key for this tenant"),
    "invalid_scopes": (422, "scopes must be a non-empty subset of read, write, admin"),
    "invalid_tenant": (422, "the tenant must be 1 to 64 characters"),
    # Webhooks.
    "webhook_not_found": (404, "no such webhook endpoint for this tenant"),
    "invalid_webhook_url": (422, "the URL is not an absolute http:// or https:// URL"),
    "webhook_url_forbidden": (422, "the host is or resolves to a private, loopback, link-local or reserved address "
                                   "(unless listed in TAAS_WEBHOOK_ALLOW_HOSTS); `details.address` names it"),
    "webhook_url_unresolvable": (422, "the host does not resolve"),
    # The workers' routes (/internal).
    "job_not_claimable": (409, "the job is not queued, another worker claimed it, or its dataset is gone"),
    "stale_attempt": (409, "the attempt no longer holds the job"),
    "stale_checkpoint": (409, "the checkpoint is older than the stored one"),
    "checkpoint_not_found": (404, "the job has no checkpoint"),
    "weights_not_found": (404, "no such weights"),
    "manifest_not_found": (404, "the dataset has no manifest yet"),
    "artifact_final": (409, "the artifact is final and cannot be uploaded again"),
    "artifact_missing": (422, "the safetensors artifact must be uploaded before finishing"),
    "invalid_epoch": (422, "the epoch is outside the job's epochs"),
    "invalid_format": (422, "unknown artifact format"),
    "invalid_metrics": (422, "X-Taas-Metrics must be a JSON object"),
}.items()}


class TaasError(Exception):
    """Base of every error rendered as the contract's error body. `status` is the family's: a registered code of
    another status is refused by tests/unit/test_error_registry.py."""

    status: int = 400
    code: str | None = None  # a family without a code of its own: each raise names one

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.status = CODES[self.code].status  # an unregistered code is a bug (and a test failure)
        self.details = details or {}

    def body(self) -> dict[str, Any]:
        """The contract's error body."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class NotFound(TaasError):
    status = 404


class Unauthorized(TaasError):
    status = 401


class Forbidden(TaasError):
    status = 403


class Conflict(TaasError):
    status = 409


class Invalid(TaasError):
    status = 422


class TooLarge(TaasError):
    status, code = 413, "upload_too_large"


class QuotaExceeded(TaasError):
    status, code = 429, "quota_exceeded"


class InsufficientStorage(TaasError):
    status, code = 507, "insufficient_storage"
