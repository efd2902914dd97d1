"""create_app(): routers, error handlers, lifespan."""

import gc
import inspect
import logging
import threading
from contextlib import asynccontextmanager
from typing import Any

import anyio
import asyncpg
from fastapi import APIRouter, FastAPI, Request, params
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import observability, pg, reaper
from app.aliases import router as aliases
from app.architectures import router as architectures
from app.basemodels import router as base_models
from app.config import get_settings
from app.datasets import router as datasets
from app.datasets.service import resume_processing
from app.errors import CODES, TaasError
from app.internal import router as internal
from app.jobs import router as jobs
from app.keys import router as keys
from app.models_api import router as models
from app.ui import router as ui
from app.webhooks import dispatch as webhook_dispatch
from app.webhooks import router as webhooks

log = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI):
    resume_processing()
    # Everything loaded so far (modules, the ORM's and FastAPI's structures) lives as long as the process: take it
    # out of the collector's view, so a full collection doesn't walk it again during requests.
    gc.freeze()
    stop = threading.Event()
    if get_settings().run_reaper:
        threading.Thread(target=reaper.run_forever, args=(stop,), name="reaper", daemon=True).start()
    sender = None
    if get_settings().webhook_dispatch:
        sender = threading.Thread(target=webhook_dispatch.run_forever, args=(stop,), name="webhooks", daemon=True)
        sender.start()
    yield
    stop.set()
    await pg.close()
    if sender is not None:  # let an attempt in flight record its outcome before the engine goes away
        webhook_dispatch.wake()
        await anyio.to_thread.run_sync(sender.join, get_settings().webhook_timeout_seconds + 5)


def _error(code: str, message: str, details: dict | None = None, headers: dict[str, str] | None = None, *,
           status: int | None = None) -> JSONResponse:
    """The contract's error body for a registered code, with the registry's status (http_error carries its own)."""
    return JSONResponse({"error": {"code": code, "message": message, "details": details or {}}},
                        status_code=status or CODES[code].status, headers=headers)


def allowed_methods(router: APIRouter, path: str) -> str:
    """The Allow header of a 405: the methods of every route on the path. Starlette names only those of the first
    route that matched the path, and each method of a path is a route of its own here."""
    methods: set[str] = set()
    for route in router.routes:
        regex, route_methods = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is not None and route_methods and regex.match(path):
            methods |= route_methods
    return ", ".join(sorted(methods))


class BodyLimit:
    """Caps request bodies that FastAPI reads into memory, by Content-Length and by counting the bytes.

    The cap is chosen from the route (routing has happened by the time the body is read): JSON bodies get
    max_request_bytes (max_internal_request_bytes under /internal), form uploads max_upload_bytes. An async
    route without a parsed body (the streamed dataset upload, artifact uploads) reads request.stream() itself
    and caps it mid-stream, so it is left alone. Over the cap, receive() raises an HTTPException(413), which
    FastAPI re-raises from its body reading."""

    def __init__(self, app: ASGIApp):
        self.app = app

    @staticmethod
    def limit(scope: Scope) -> int | None:
        """The cap for this request's route, or None when the route streams and caps its body itself."""
        route = scope.get("route")
        body = getattr(route, "body_field", None)
        endpoint = getattr(route, "endpoint", None) or scope.get("endpoint")
        if body is None and inspect.iscoroutinefunction(endpoint):
            return None
        settings = get_settings()
        if body is not None and isinstance(body.field_info, params.Form):
            return settings.max_upload_bytes
        # Read before the worker token is checked, so /internal is capped too, if more generously.
        internal = scope.get("path", "").startswith("/internal/")
        return settings.max_internal_request_bytes if internal else settings.max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        received, limit, decided = 0, None, False

        async def limited() -> Message:
            nonlocal received, limit, decided
            if not decided:
                limit, decided = self.limit(scope), True
                if limit is not None and declared.isdigit() and int(declared) > limit:
                    raise StarletteHTTPException(413, f"the request body exceeds the {limit} byte limit")
            message = await receive()
            if limit is not None and message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise StarletteHTTPException(413, f"the request body exceeds the {limit} byte limit")
            return message

        await self.app(scope, limited, send)


def cors_options(origins: list[str]) -> dict[str, Any]:
    """CORS for browser front ends on other origins: bearer keys, never cookies, so no credentials."""
    return {"allow_origins": origins, "allow_credentials": False, "max_age": 600,
            "allow_methods": ["GET", "POST", "PUT", "DELETE"],
            "allow_headers": ["Authorization", "Content-Type", "Idempotency-Key", "If-None-Match", "If-Range", "Range",
                              "Last-Event-ID"],
            "expose_headers": ["ETag", "X-Checksum-SHA256", "Content-Range", "Accept-Ranges", "Content-Disposition",
                               "Content-Length"]}


async def healthz() -> dict:
    return {"ok": True}


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """The router's routes into the app's own route list. `app.include_router` keeps the router as a unit that
    FastAPI (0.16x) matches route by route through wrappers, at about 5 µs a route and twice per request: with
    the dashboard's and the docs' routes before it, a GET paid about 0.4 ms of CPU in matching alone. The routes
    are complete at declaration (path with prefix, router-level dependencies and responses), so nothing is lost."""
    app.router.routes.extend(router.routes)


def create_app() -> FastAPI:
    """The API application."""
    app = FastAPI(title="taas", version="0.1.0", lifespan=lifespan,
                  description="Training as a service: upload a labelled image dataset, fine-tune a pretrained "
                              "backbone, download the model.")
    app.add_api_route("/healthz", healthz, include_in_schema=False)
    # Hottest first: a request is matched against the routes in order. The routers declare ERROR_RESPONSES
    # themselves, so their routes join the app's own list (see add_routes).
    for r in (jobs, internal, datasets, models, aliases, keys, base_models, architectures, webhooks):
        add_routes(app, r.router)
    app.add_middleware(BodyLimit)
    app.add_middleware(observability.ObserveRequests)  # outside the body cap: a refused request is timed too
    add_routes(app, observability.router)  # /metrics and /readyz, outside the public OpenAPI document
    ui.mount(app)  # the dashboard: GET / and its files under /ui/, outside the OpenAPI document
    # FastAPI put its docs routes first; a request is matched in order, so they go last (no path overlaps).
    docs = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    app.router.routes.sort(key=lambda route: getattr(route, "path", None) in docs)  # stable: the rest keep order
    if get_settings().cors_origins:  # added last, so outermost: preflights never reach auth or the body cap
        app.add_middleware(CORSMiddleware, **cors_options(get_settings().cors_origins))

    @app.exception_handler(TaasError)
    async def _taas(_: Request, exc: TaasError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
                  for e in exc.errors()]
        return _error("validation_error", "the request is invalid", {"errors": errors})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":  # FastAPI's words
            why = "is nested too deeply" if isinstance(exc.__cause__, RecursionError) else "is not valid JSON"
            return _error("invalid_json", f"the request body {why}")
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(exc.status_code,
                                                                                          "http_error")
        headers = dict(exc.headers or {})  # Allow on a 405, say: the body is ours, the headers stay Starlette's
        if exc.status_code == 405 and (allowed := allowed_methods(request.app.router, request.url.path)):
            headers["Allow"] = allowed
        return _error(code, str(exc.detail), headers=headers or None, status=exc.status_code)

    @app.exception_handler(DataError)
    @app.exception_handler(asyncpg.DataError)  # the same refusal on app.pg's reads
    async def _data(_: Request, exc: Exception) -> JSONResponse:
        # The database refused a value the client sent (a NUL character in a string, say): input, not a bug.
        log.warning("database refused a request value: %s", getattr(exc, "orig", exc))
        return _error("invalid_request", "the request contains a value that cannot be stored or searched for")

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _error("internal_error", "internal server error")

    return app
