"""Test-only: the error answers of every in-process app, recorded while the suite runs.

`install()` (called from tests/conftest.py) wraps FastAPI's middleware stack in `Recorder`, outermost, so every
app built in this process (TestClient, or uvicorn in a thread) reports each answer of status >= 400 with a JSON
error body as (route template, method, code). The router sets `scope["route"]` on the request's own scope dict, which
the wrapper holds. Production code is untouched. Servers in subprocesses (tests/e2e, tests/faults, tests/integration,
the live fuzz) are not seen.

tests/contract/test_error_codes.py compares what was recorded with what each public route declares.
"""

import json
import os
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# (route template or None when no route matched, method, error code, status)
RECORDED: set[tuple[str | None, str, str, int]] = set()
ON_DEMAND = "TAAS_CHECK_ERROR_CODES"  # set to 1: the check runs on a partial run too
_MAX_BODY = 1 << 16


def on_demand() -> bool:
    return os.environ.get(ON_DEMAND, "") not in ("", "0")


class Recorder:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status, body = 0, bytearray()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status >= 400 and len(body) < _MAX_BODY:
                body.extend(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if status >= 400:
                code = _code(bytes(body))
                if code is not None:
                    route = scope.get("route")
                    RECORDED.add((getattr(route, "path", None), scope["method"], code, status))


def _code(body: bytes) -> str | None:
    try:
        doc: Any = json.loads(body)
    except ValueError:
        return None
    err = doc.get("error") if isinstance(doc, dict) else None
    code = err.get("code") if isinstance(err, dict) else None
    return code if isinstance(code, str) else None


def install() -> None:
    """Every FastAPI app of this process records its error answers (idempotent)."""
    from fastapi import FastAPI

    build = FastAPI.build_middleware_stack
    if getattr(build, "_records_errors", False):
        return

    def recording(self: FastAPI) -> ASGIApp:
        return Recorder(build(self))

    recording._records_errors = True  # type: ignore[attr-defined]
    FastAPI.build_middleware_stack = recording  # type: ignore[method-assign]
