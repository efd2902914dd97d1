"""Real service processes for integration tests: started in their own process group, killed as a group."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


class Proc:
    """A child process in its own session, logging to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT):
        self.log = log
        self._f = open(log, "wb")  # noqa: SIM115
        self.p = subprocess.Popen(args, env=env, cwd=cwd, stdout=self._f, stderr=subprocess.STDOUT,
                                  start_new_session=True)

    def alive(self) -> bool:
        return self.p.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        """Signal the whole group, then kill it if it lingers."""
        if self.alive():
            try:
                os.killpg(self.p.pid, sig)
                self.p.wait(timeout=timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        with suppress(ProcessLookupError):
            os.killpg(self.p.pid, signal.SIGKILL)
        self.p.wait(timeout=10)
        self._f.close()

    def tail(self, n: int = 4000) -> str:
        return self.log.read_bytes()[-n:].decode(errors="replace")


def taas(*args: str) -> list[str]:
    return [sys.executable, "-m", "client.cli", *args]


def poll(fn: Callable[[], object], timeout: float, what: str, interval: float = 0.2) -> object:
    """Poll fn until truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_healthy(url: str, proc: Proc, timeout: float = 60) -> None:
    def ok() -> bool:
        assert proc.alive(), proc.tail()
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    poll(ok, timeout, f"{url}/healthz")


def embedded_env(data: Path, port: int, **extra: str) -> dict[str, str]:
    """The environment of an embedded `taas serve` in data on port: this process's, minus any TAAS_ setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAAS_")}
    env.update({"TAAS_DATA_DIR": str(data), "TAAS_PORT": str(port), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    env.update(extra)
    return env


@contextmanager
def embedded_serve(tmp: Path, timeout: float = 120, **env: str) -> Iterator[tuple[str, Path, Proc]]:
    """One embedded `taas serve` (SQLite, filesystem broker, a worker) with its data in tmp/data, as a user runs it:
    (url, data dir, process), stopped as a group on exit. env: more environment variables for it (settings)."""
    from tests.conftest import free_port

    port, data = free_port(), tmp / "data"
    serve = Proc(taas("serve"), embedded_env(data, port, **env), tmp / "serve.log")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, serve, timeout=timeout)
        yield url, data, serve
    finally:
        serve.stop(signal.SIGTERM)


@contextmanager
def app_in_thread() -> Iterator[tuple[str, int]]:
    """create_app() under the current settings on a real port, served by uvicorn in a thread of this process (no
    lifespan: the test's TestClient runs one): (host, port)."""
    import threading

    import uvicorn

    from app.main import create_app
    from tests.conftest import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        poll(lambda: server.started, 20, "uvicorn to start", interval=0.05)
        yield "127.0.0.1", port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
