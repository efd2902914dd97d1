"""The worker's HTTP client for the API's internal routes, retrying with backoff while the API is away."""

import logging
import random
import time
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger(__name__)


class ApiError(Exception):
    """The API answered with a client error (not retried)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class StaleAttempt(ApiError):
    """This worker no longer holds the job: stop without touching it."""


class InternalClient:
    """Calls /internal/… with the worker token."""

    def __init__(self, base_url: str, token: str, *, retry_seconds: float = 300.0):
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers={"Authorization": f"Bearer {token}"},
                                 timeout=httpx.Timeout(60.0, connect=5.0))
        self.retry_seconds = retry_seconds

    def close(self) -> None:
        self.http.close()

    def _request(self, method: str, path: str, *, retry_seconds: float | None = None, **kw: Any) -> httpx.Response:
        deadline = time.monotonic() + (self.retry_seconds if retry_seconds is None else retry_seconds)
        delay = 0.2
        while True:
            try:
                resp = self.http.request(method, path, **kw)
                if resp.status_code < 500:
                    break
                problem = f"HTTP {resp.status_code}"
            except httpx.TransportError as exc:
                problem = repr(exc)
            if time.monotonic() + delay > deadline:
                raise ConnectionError(f"{method} {path}: API unreachable ({problem})")
            log.warning("%s %s failed (%s); retrying in %.1fs", method, path, problem, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0) * (0.8 + 0.4 * random.random())
        if resp.status_code >= 400:
            try:
                err = resp.json()["error"]
                code, message = err["code"], err["message"]
            except Exception:
                code, message = "http_error", resp.text[:200]
            cls = StaleAttempt if code == "stale_attempt" else ApiError
            raise cls(resp.status_code, code, message)
        return resp

    def post(self, path: str, body: dict[str, Any], *, retry_seconds: float | None = None) -> dict[str, Any]:
        """POST JSON and return the JSON answer."""
        return self._request("POST", path, json=body, retry_seconds=retry_seconds).json()

    def download(self, path: str, dst: Path) -> None:
        """Stream a GET into dst atomically."""
        tmp = dst.with_suffix(dst.suffix + ".part")
        deadline = time.monotonic() + self.retry_seconds
        while True:
            try:
                with self.http.stream("GET", path) as resp:
                    if resp.status_code >= 400:
                        resp.read()
                        raise ApiError(resp.status_code, "download_failed", resp.text[:200])
                    with open(tmp, "wb") as f:
                        for chunk in resp.iter_bytes(1 << 20):
                            f.write(chunk)
                tmp.replace(dst)
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def upload(self, path: str, src: Path, params: dict[str, Any], headers: dict[str, str] | None = None
               ) -> dict[str, Any]:
        """PUT a file's bytes."""
        return self._request("PUT", path, params=params, content=src.read_bytes(), headers=headers).json()
