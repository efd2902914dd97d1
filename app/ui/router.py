"""Serves the dashboard: `GET /` is the page, `/ui/...` its static files, both with strict security headers.

The page holds no data: it signs in with an API key kept in sessionStorage and calls the public API like any other
client, so it needs no route of its own beyond these."""

from functools import cache
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

STATIC = Path(__file__).with_name("static")
PREFIX = "/ui"

# Every script and style comes from this origin, none inline; the API is the only thing the page connects to.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
           "Cache-Control": "no-cache"}  # revalidate each load (ETag), so a new version is never half-cached

router = APIRouter(include_in_schema=False)


@cache
def _index() -> bytes:
    return (STATIC / "index.html").read_bytes()


@router.get("/", response_class=HTMLResponse)
def index() -> HTMLResponse:
    return HTMLResponse(_index(), headers={**HEADERS, "Content-Security-Policy": CSP})


class _Static(StaticFiles):
    """StaticFiles with the dashboard's headers on every file."""

    route: Mount | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Request metrics are labelled by scope["route"].path: every file counts as "/ui", never as its own path.
        scope["route"] = self.route
        await super().__call__(scope, receive, send)

    def file_response(self, full_path, stat_result, scope: Scope, status_code: int = 200) -> Response:  # noqa: ANN001
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(HEADERS)
        return response


def mount(app: FastAPI) -> None:
    """Add the page's route and its static files to the app."""
    app.router.routes.extend(router.routes)  # as app.main.add_routes does
    files = _Static(directory=STATIC)
    files.route = Mount(PREFIX, app=files, name="ui")
    app.router.routes.append(files.route)
