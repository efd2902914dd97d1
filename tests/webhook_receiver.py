"""A real webhook receiver for tests: an HTTP server on 127.0.0.1 that verifies every Standard Webhooks signature
with the endpoint's secret, records what arrived, and answers from a per-path plan (500 first, say)."""

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    at: float

    @property
    def payload(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP server that checks signatures with each path's secret and answers from a per-path plan."""

    server: ThreadingHTTPServer
    secrets: dict[str, str] = field(default_factory=dict)  # path -> the endpoint's secret
    plans: dict[str, list[int]] = field(default_factory=dict)  # path -> statuses to answer first (then 200)
    got: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.got if r.path == path]

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> int:
        try:
            Webhook(self.secrets[path]).verify(body, headers)
            verified = True
        except (KeyError, WebhookVerificationError):
            verified = False
        with self.lock:
            self.got.append(Received(path, headers, body, verified, time.monotonic()))
            plan = self.plans.get(path) or []
            status = plan.pop(0) if plan else 200
        return status if verified else 400


@contextmanager
def serve() -> Iterator[Receiver]:
    """A receiver listening on a free port of 127.0.0.1 until the block ends."""
    rec: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            status = rec.handle(self.path, dict(self.headers.items()), body)
            self.send_response(status)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    rec = Receiver(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
    thread = threading.Thread(target=rec.server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        rec.server.shutdown()
        rec.server.server_close()
