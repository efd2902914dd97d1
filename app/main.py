"""create_app(): routers, error handlers, lifespan."""

import logging
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import reaper
from app.config import get_settings
from app.datasets import router as datasets
from app.datasets.service import resume_processing
from app.errors import TaasError
from app.internal import router as internal
from app.jobs import router as jobs
from app.keys import router as keys
from app.models_api import router as models

log = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI):
    resume_processing()
    stop = threading.Event()
    if get_settings().run_reaper:
        threading.Thread(target=reaper.run_forever, args=(stop,), name="reaper", daemon=True).start()
    yield
    stop.set()


def _error(status: int, code: str, message: str, details: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "details": details or {}}}, status_code=status)


def create_app() -> FastAPI:
    """The API application."""
    app = FastAPI(title="taas", version="0.1.0", lifespan=lifespan,
                  description="Training as a service: upload a labelled image dataset, fine-tune a pretrained "
                              "backbone, download the model.")
    for r in (keys, datasets, jobs, models, internal):
        app.include_router(r.router)

    @app.exception_handler(TaasError)
    async def _taas(_: Request, exc: TaasError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
                  for e in exc.errors()]
        return _error(422, "validation_error", "the request is invalid", {"errors": errors})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _error(500, "internal_error", "internal server error")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        return {"ok": True}

    return app
