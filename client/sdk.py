"""A small Python client for the taas API. It needs only httpx and httpx-sse, so it can be copied anywhere.

    with Client("http://127.0.0.1:8000", api_key) as taas:
        ds = taas.datasets.wait(taas.datasets.upload(Path("digits.zip"))["id"])
        job = taas.jobs.create({"dataset_id": ds["id"], "hyperparameters": {"epochs": 3}})
        for event in taas.jobs.watch(job["id"]):  # live, resumed after a dropped connection
            print(event["seq"], event["type"], event["message"])
"""

from __future__ import annotations  # the resources have a method named list

import hashlib
import mimetypes
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, BinaryIO

import httpx
from httpx_sse import connect_sse

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
Progress = Callable[[int, int | None], None]  # (bytes done, bytes in all or None when unknown)


class TaasError(Exception):
    """Base of every error this client raises."""


class APIError(TaasError):
    """The API answered with an error body: `status`, `code`, `message`, `details`."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.details = status, code, message, details or {}


class ChecksumMismatch(TaasError):
    """A download's sha256 differs from the one the API announced."""


class StreamLost(TaasError):
    """The event stream could not be re-established after several tries."""


def is_terminal(event: dict[str, Any]) -> bool:
    """Whether an event is the job's move into a finished state."""
    return event.get("type") == "status" and (event.get("data") or {}).get("to") in TERMINAL


def _raise_for(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        err = resp.json()["error"]
        raise APIError(resp.status_code, err["code"], err["message"], err.get("details"))
    except (ValueError, KeyError, TypeError):
        raise APIError(resp.status_code, "http_error", resp.text[:300] or resp.reason_phrase) from None


class _Reading:
    """A binary file that reports how much of it has been read (httpx reads uploads in 64 KiB chunks)."""

    def __init__(self, f: BinaryIO, total: int, progress: Progress):
        self.f, self.total, self.progress, self.done = f, total, progress, 0
        self.name = f.name

    def read(self, n: int = -1) -> bytes:
        chunk = self.f.read(n)
        self.done += len(chunk)
        self.progress(self.done, self.total)
        return chunk

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        pos = self.f.seek(offset, whence)
        self.done = pos  # httpx rewinds before sending; a rewound upload starts over
        return pos

    def tell(self) -> int:
        return self.f.tell()

    def fileno(self) -> int:
        return self.f.fileno()


class _Resource:
    def __init__(self, client: Client):
        self._c = client


class Datasets(_Resource):
    """`/v1/datasets`."""

    def upload(self, path: Path, *, name: str | None = None, progress: Progress | None = None,
               idempotency_key: str | None = None) -> dict[str, Any]:
        """Stream an archive to the API; the dataset comes back `processing` (see `wait`)."""
        size = path.stat().st_size
        with open(path, "rb") as f:
            body: Any = _Reading(f, size, progress) if progress else f
            return self._c.request("POST", "/v1/datasets", files={"file": (path.name, body)},
                                   data={"name": name or path.stem}, idempotency_key=idempotency_key,
                                   # the structure of the whole archive is checked before the answer
                                   timeout=httpx.Timeout(self._c.timeout, read=max(600.0, self._c.timeout)))

    def list(self, *, limit: int = 20, after: str | None = None) -> dict[str, Any]:
        """A page of datasets, newest first."""
        return self._c.request("GET", "/v1/datasets", params=_params(limit=limit, after=after))

    def get(self, dataset_id: str) -> dict[str, Any]:
        """One dataset."""
        return self._c.request("GET", f"/v1/datasets/{dataset_id}")

    def wait(self, dataset_id: str, *, timeout: float = 3600, interval: float = 0.5) -> dict[str, Any]:
        """Poll until the dataset is `ready` or `failed`."""
        deadline = time.monotonic() + timeout
        while (ds := self.get(dataset_id))["status"] == "processing":
            if time.monotonic() > deadline:
                raise TaasError(f"dataset {dataset_id} still processing after {timeout:.0f}s")
            time.sleep(interval)
        return ds


class Jobs(_Resource):
    """`/v1/jobs`."""

    def create(self, spec: dict[str, Any], *, dry_run: bool = False,
               idempotency_key: str | None = None) -> dict[str, Any]:
        """Submit a job (or, with dry_run, get its plan without queueing it)."""
        return self._c.request("POST", "/v1/jobs", json=spec, params={"dry_run": "true"} if dry_run else None,
                               idempotency_key=idempotency_key)

    def list(self, *, status: str | None = None, limit: int = 20, after: str | None = None) -> dict[str, Any]:
        """A page of jobs, newest first."""
        return self._c.request("GET", "/v1/jobs", params=_params(status=status, limit=limit, after=after))

    def get(self, job_id: str) -> dict[str, Any]:
        """One job."""
        return self._c.request("GET", f"/v1/jobs/{job_id}")

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job."""
        return self._c.request("POST", f"/v1/jobs/{job_id}/cancel")

    def metrics(self, job_id: str) -> list[dict[str, Any]]:
        """One row per epoch."""
        return self._c.request("GET", f"/v1/jobs/{job_id}/metrics")["data"]

    def watch(self, job_id: str, *, after_seq: int = 0) -> Iterator[dict[str, Any]]:
        """The job's events after after_seq, live, until it finishes; a dropped stream resumes after its last id."""
        last, failures = after_seq, 0
        while True:
            headers = {**self._c.headers, **({"Last-Event-ID": str(last)} if last else {})}
            try:
                with connect_sse(self._c.http, "GET", f"/v1/jobs/{job_id}/events", headers=headers,
                                 timeout=self._c.stream_timeout) as source:
                    if source.response.status_code == 204:  # finished, and we have seen everything
                        return
                    if source.response.status_code >= 400:
                        source.response.read()
                        _raise_for(source.response)
                    for sse in source.iter_sse():
                        if not sse.data:  # httpx-sse turns a keep-alive comment into an empty event
                            continue
                        event = sse.json()
                        last, failures = int(sse.id), 0
                        yield event
                        if is_terminal(event):
                            return
            except httpx.TransportError as exc:  # refused, reset, or silent past the read timeout
                error: Exception | None = exc
            else:  # closed before the end (an API restart, say); a 204 says when there is no more
                error = None
            failures += 1
            if failures > self._c.max_reconnects:
                raise StreamLost(f"lost the event stream of {job_id} after {failures} tries: {error!r}") from error
            time.sleep(min(self._c.reconnect_delay * 2 ** (failures - 1), 30.0))


class Models(_Resource):
    """`/v1/models` and predictions."""

    def list(self, *, limit: int = 20, after: str | None = None) -> dict[str, Any]:
        """A page of models, newest first."""
        return self._c.request("GET", "/v1/models", params=_params(limit=limit, after=after))

    def get(self, model_id: str) -> dict[str, Any]:
        """One model, with its metrics, lineage and artifacts."""
        return self._c.request("GET", f"/v1/models/{model_id}")

    def resolve(self, name: str) -> str:
        """A model id, given a model id or an alias name."""
        if name.startswith("model_"):
            return name
        return self._c.request("GET", f"/v1/aliases/{name}")["model_id"]

    def download(self, model_id: str, fmt: str, dest: Path, *, progress: Progress | None = None) -> str:
        """Write an artifact to dest (atomically), check it against the announced sha256 and return that."""
        tmp = dest.with_name(f".{dest.name}.part")
        digest = hashlib.sha256()
        url = f"/v1/models/{model_id}/artifacts/{fmt}"
        with self._c.http.stream("GET", url, headers=self._c.headers, timeout=self._c.stream_timeout) as resp:
            if resp.status_code >= 400:
                resp.read()
                _raise_for(resp)
            expected = resp.headers.get("x-checksum-sha256")
            length = resp.headers.get("content-length")
            total = int(length) if length and "content-encoding" not in resp.headers else None
            done = 0
            try:
                with open(tmp, "wb") as f:
                    for chunk in resp.iter_bytes(1 << 20):
                        f.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, total)
                if expected and digest.hexdigest() != expected:
                    raise ChecksumMismatch(f"{fmt} of {model_id}: got sha256 {digest.hexdigest()}, "
                                           f"expected {expected}")
                tmp.replace(dest)
            finally:
                tmp.unlink(missing_ok=True)
        return digest.hexdigest()

    def predict(self, model_id: str, images: list[Path], *, top_k: int | None = None) -> dict[str, Any]:
        """Top-k labels for each image (the model's ONNX artifact, run by the API)."""
        with ExitStack() as stack:
            files = [("files", (p.name, stack.enter_context(open(p, "rb")),
                                mimetypes.guess_type(p.name)[0] or "application/octet-stream")) for p in images]
            return self._c.request("POST", f"/v1/models/{model_id}/predict", files=files,
                                   params=_params(top_k=top_k))


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class Client:
    """The taas API at base_url, called with api_key; `datasets`, `jobs` and `models` hold the calls."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 30.0, http: httpx.Client | None = None,
                 max_reconnects: int = 10, reconnect_delay: float = 0.5):
        self.timeout = timeout
        self.headers = {"Authorization": f"Bearer {api_key}", "User-Agent": "taas-client"}
        self._owns_http = http is None
        self.http = http or httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)
        # Streams idle between events; the server's keep-alives (every 15 s) keep them under this read timeout.
        self.stream_timeout = httpx.Timeout(timeout, read=max(60.0, timeout))
        self.max_reconnects, self.reconnect_delay = max_reconnects, reconnect_delay
        self.datasets, self.jobs, self.models = Datasets(self), Jobs(self), Models(self)

    def request(self, method: str, path: str, *, idempotency_key: str | None = None, **kwargs: Any) -> Any:
        """One call; the JSON body, or APIError with the contract's code."""
        headers = {**self.headers, **({"Idempotency-Key": idempotency_key} if idempotency_key else {})}
        resp = self.http.request(method, path, headers=headers, **kwargs)
        _raise_for(resp)
        return resp.json() if resp.content else None

    def close(self) -> None:
        """Close the connection pool (unless it was handed in)."""
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
