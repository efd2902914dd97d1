"""onnxruntime sessions cached by the artifact's sha256, and the bounded pool that runs predictions."""

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from app.config import get_settings
from app.errors import TaasError

T = TypeVar("T")


class ServerBusy(TaasError):
    status, code = 503, "server_busy"


class SessionCache:
    """The last `size` sessions used, by sha256; a session is loaded once even when many ask at the same time."""

    def __init__(self, size: int, threads: int):
        self.size, self.threads = size, threads
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, Future] = OrderedDict()

    def get(self, sha256: str, path: Path) -> Any:
        """The session of the ONNX file at path, whose content must hash to sha256."""
        with self._lock:
            entry = self._entries.get(sha256)
            mine = entry is None
            if mine:
                entry = self._entries[sha256] = Future()
            self._entries.move_to_end(sha256)
        if mine:
            try:
                session = self._load(sha256, path)
            except BaseException as exc:
                with self._lock:
                    if self._entries.get(sha256) is entry:
                        del self._entries[sha256]  # the next request tries again
                entry.set_exception(exc)
                raise
            with self._lock:
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)  # runs still holding an evicted session finish with it
            entry.set_result(session)
        return entry.result()

    def _load(self, sha256: str, path: Path) -> Any:
        import onnxruntime as ort  # here, not at import: an API process that never predicts never pays for it

        data = path.read_bytes()
        # The cache key must name what was loaded: a file replaced under the same key is not the cached one.
        if hashlib.sha256(data).hexdigest() != sha256:
            raise RuntimeError(f"{path} does not hash to its recorded sha256 {sha256}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])

    def __len__(self) -> int:
        return len(self._entries)


class Runtime:
    """A fixed pool of threads and a cap on the requests waiting for one."""

    def __init__(self, workers: int, queue: int, cache_size: int, threads: int):
        threads = threads or max(1, (os.cpu_count() or 1) // workers)
        self.sessions = SessionCache(cache_size, threads)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="predict")
        self._slots = threading.BoundedSemaphore(workers + queue)

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> "Future[T]":
        """Run fn in the pool, or refuse at once (503 server_busy) when the pool and its queue are full."""
        if not self._slots.acquire(blocking=False):
            raise ServerBusy("too many predictions in progress; retry shortly")
        try:
            future = self.pool.submit(fn, *args, **kwargs)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        return future


@cache
def get_runtime() -> Runtime:
    """The process-wide runtime, sized from the settings."""
    s = get_settings()
    return Runtime(workers=s.predict_workers, queue=s.predict_queue, cache_size=s.predict_cache_size,
                   threads=s.predict_threads)
