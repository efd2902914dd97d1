"""Private PostgreSQL and Redis servers for one test run, started from the installed server binaries.

    with private_servers() as servers:
        servers.pg_admin   # postgresql://postgres@127.0.0.1:<port>/postgres (trust auth; create databases at will)
        servers.redis      # redis://127.0.0.1:<port>/0

Both live in one temporary directory, listen on 127.0.0.1 on free ports and keep nothing worth keeping (PostgreSQL
without fsync, Redis without persistence). On exit both are stopped and the directory is removed. As root (CI),
PostgreSQL runs as the `postgres` user: initdb and postgres refuse to run as root. Each server runs in a session of
its own, so a Ctrl-C reaches pytest (which then stops them), and on Linux it dies with the process that started it
if that one is killed without cleaning up. `scripts/test-deps.sh` installs the binaries (Debian's `postgresql` and
`redis-server` packages).
"""

import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

STARTUP_TIMEOUT_S = 60
# The suite runs several API processes at once, each with its pools (TAAS_READ_POOL_SIZE plus the ORM's up to 30),
# plus workers and the tests' own connections; Debian's default of 100 is what the suite used to run against.
MAX_CONNECTIONS = 300
INSTALL = "sudo apt-get install -y postgresql redis-server"
PREFIX = "taas-test-servers-"


class ServerError(RuntimeError):
    """A private server could not be found or started."""


@dataclass(frozen=True)
class Servers:
    pg_admin: str | None  # None when not asked for
    redis: str | None
    startup_s: float  # how long starting them took


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bindir() -> Path:
    """The directory with initdb and postgres: PATH, else the newest /usr/lib/postgresql/<version>/bin (Debian's
    packages put them there, off PATH), else `pg_config --bindir`."""
    candidates = [Path(p).parent for p in [shutil.which("initdb")] if p]
    debian = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.isdigit()]
    candidates += sorted(debian, key=lambda p: int(p.parent.name), reverse=True)
    if pg_config := shutil.which("pg_config"):
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        candidates += [Path(out)] if out else []
    for d in candidates:
        if all(os.access(d / name, os.X_OK) for name in ("initdb", "postgres")):
            return d
    raise ServerError(f"PostgreSQL's initdb and postgres are not installed (PATH, /usr/lib/postgresql/*/bin, "
                      f"pg_config --bindir): run `make test` as root, or: {INSTALL}")


def redis_server() -> str:
    binary = shutil.which("redis-server")
    if not binary:
        raise ServerError(f"redis-server is not installed: run `make test` as root, or: {INSTALL}")
    return binary


if sys.platform == "linux":
    _prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the forked child only calls it

    def _die_with_parent(sig: int) -> Callable[[], None]:
        # PR_SET_PDEATHSIG; preexec_fn runs after Popen's switch to another user, which would have cleared it
        return lambda: _prctl(1, int(sig))
else:
    def _die_with_parent(sig: int) -> None:
        return None


class _Server:
    """One server process in its own session, its output in a log file; stop() ends it with stop_signal."""

    def __init__(self, name: str, args: list[str], log: Path, stop_signal: int, **popen):
        self.name, self.log, self.stop_signal = name, log, stop_signal
        with open(log, "wb") as f:
            self.p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                      cwd=log.parent, start_new_session=True,
                                      preexec_fn=_die_with_parent(stop_signal), **popen)

    def tail(self, n: int = 3000) -> str:
        return self.log.read_bytes()[-n:].decode(errors="replace")

    def wait_ready(self, ready: Callable[[], bool], timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Poll ready() until it holds; fail with the log's tail if the server exits or the deadline passes."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self.p.poll() is not None:
                raise ServerError(f"{self.name} exited with status {self.p.returncode} while starting; the end of "
                                  f"its log:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise ServerError(f"{self.name} did not accept connections within {timeout:.0f} s; the end of "
                                  f"its log:\n{self.tail()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 15) -> None:
        """Send stop_signal, wait, then kill the whole process group if it lingers."""
        if self.p.poll() is None:
            self.p.send_signal(self.stop_signal)
            try:
                self.p.wait(timeout)
                return
            except subprocess.TimeoutExpired:
                pass
        with suppress(ProcessLookupError):
            os.killpg(self.p.pid, signal.SIGKILL)
        self.p.wait()


@contextmanager
def _postgres(tmp: Path, bindir: Path) -> Iterator[str]:
    as_postgres = {}  # Popen's arguments: as root, run as `postgres` (its group, no supplementary groups)
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            raise ServerError("running as root, so PostgreSQL must run as the `postgres` user, and there is none "
                              f"(Debian's postgresql package creates it: {INSTALL})") from None
        as_postgres = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    data, sockets = tmp / "pgdata", tmp / "pgsocket"
    for d in (data, sockets):
        d.mkdir(mode=0o700)
        if as_postgres:
            os.chown(d, as_postgres["user"], as_postgres["group"])
    init = subprocess.run([str(bindir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres", "-E", "UTF8",
                           "--locale=C.UTF-8", "--no-sync"], cwd=tmp, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, check=False, **as_postgres)
    if init.returncode:
        raise ServerError(f"initdb ({bindir}) failed with status {init.returncode}:\n"
                          f"{(init.stdout + init.stderr)[-3000:]}")
    port = free_port()
    server = _Server(f"PostgreSQL ({bindir / 'postgres'}, port {port})",
                     [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(sockets),
                      "-c", "listen_addresses=127.0.0.1", "-c", f"max_connections={MAX_CONNECTIONS}",
                      "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                     tmp / "postgres.log", signal.SIGINT, **as_postgres)  # SIGINT: fast shutdown, clients or not
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        server.wait_ready(lambda: _pg_ready(url))
        yield url
    finally:
        server.stop()


def _pg_ready(url: str) -> bool:
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=2).close()
        return True
    except psycopg.OperationalError:
        return False


@contextmanager
def _redis(tmp: Path, binary: str) -> Iterator[str]:
    port, data = free_port(), tmp / "redis"
    data.mkdir()
    server = _Server(f"Redis ({binary}, port {port})",
                     [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                      "--dir", str(data)], tmp / "redis.log", signal.SIGTERM)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        server.wait_ready(lambda: _redis_ready(url))
        yield url
    finally:
        server.stop()


def _redis_ready(url: str) -> bool:
    import redis

    try:
        with redis.Redis.from_url(url, socket_timeout=2) as r:
            return bool(r.ping())
    except redis.RedisError:
        return False


@contextmanager
def private_servers(postgres: bool = True, redis: bool = True) -> Iterator[Servers]:
    """Start the servers asked for (both by default) in a fresh temporary directory; stop and remove all on exit."""
    started = time.monotonic()
    bindir, redis_binary = postgres_bindir() if postgres else None, redis_server() if redis else None
    _remove_stale_dirs()
    tmp = Path(tempfile.mkdtemp(prefix=PREFIX))
    try:
        tmp.chmod(0o755)  # the `postgres` user must reach its directories in here
        (tmp / "owner.pid").write_text(str(os.getpid()))
        with ExitStack() as stack:
            pg_admin = stack.enter_context(_postgres(tmp, bindir)) if bindir else None
            redis_url = stack.enter_context(_redis(tmp, redis_binary)) if redis_binary else None
            yield Servers(pg_admin, redis_url, time.monotonic() - started)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_stale_dirs() -> None:
    """Remove the directories of earlier runs whose process is gone (killed before it could clean up; its servers
    died with it)."""
    for d in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        try:
            os.kill(int((d / "owner.pid").read_text()), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (OSError, ValueError):  # alive but not ours, or not one of these directories after all
            pass
