"""Shared fixtures: a real PostgreSQL database per test session, settings pointed at temporary directories.

The servers: TAAS_TEST_PG (an admin URL; the suite creates and drops databases of its own there) and TAAS_TEST_REDIS
when set, else private ones started from the installed binaries (tests/servers.py) the first time a test needs one:
when a module imports PG_ADMIN or REDIS_URL from here, or temp_database runs. So a run that needs neither (tests/worker
on a GPU machine) starts none. They are stopped when pytest ends (pytest_unconfigure, or at exit).
"""

import atexit
import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests import error_record
from tests.servers import free_port as free_port  # re-exported: tests import it from here
from tests.servers import private_servers

ROOT = Path(__file__).resolve().parent.parent
_servers = ExitStack()  # the private servers of this run, if any
atexit.register(_servers.close)
_urls: tuple[str, str] | None = None  # (PostgreSQL admin URL, Redis URL), once known
_summary = ""
error_record.install()  # every in-process app records its error answers (tests/contract/test_error_codes.py)
LAST = "tests/contract/test_error_codes.py::test_each_public_route_declares_the_codes_it_answers"


def servers() -> tuple[str, str]:
    """(PostgreSQL admin URL, Redis URL): TAAS_TEST_PG and TAAS_TEST_REDIS when set, else private servers started
    now (once), their URLs exported in those variables so that child processes agree."""
    global _urls, _summary
    if _urls is None:
        pg, redis = os.environ.get("TAAS_TEST_PG", ""), os.environ.get("TAAS_TEST_REDIS", "")
        if not (pg and redis):
            started = _servers.enter_context(private_servers(postgres=not pg, redis=not redis))
            for var, url in (("TAAS_TEST_PG", started.pg_admin), ("TAAS_TEST_REDIS", started.redis)):
                if url:
                    os.environ[var] = url
                    _servers.callback(os.environ.pop, var, None)
            pg, redis = pg or started.pg_admin, redis or started.redis
            names = [n for n, url in (("PostgreSQL", started.pg_admin), ("Redis", started.redis)) if url]
            _summary = f"private {' and '.join(names)} started in {started.startup_s:.1f} s: {pg}, {redis}"
        _urls = (pg, redis)
    return _urls


def __getattr__(name: str) -> str:
    """PG_ADMIN and REDIS_URL, resolved (servers started) on first use."""
    if name == "PG_ADMIN":
        return servers()[0]
    if name == "REDIS_URL":
        return servers()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The error-code check judges what the rest of the run recorded: it runs last."""
    last = [i for i in items if i.nodeid == LAST]
    items[:] = [i for i in items if i.nodeid != LAST] + last


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _summary:
        terminalreporter.write_line(_summary)


def pytest_unconfigure(config: pytest.Config) -> None:
    global _urls
    _servers.close()
    _urls = None


def reset_caches() -> None:
    """Forget process-wide singletons after the environment changed."""
    import app.queue
    import app.storage
    from app.config import get_settings
    from app.db import get_engine, get_sessionmaker

    if get_engine.cache_info().currsize:
        get_engine().dispose()
    for f in (get_settings, get_engine, get_sessionmaker, app.queue._producer):
        f.cache_clear()
    app.storage._storage = None


@contextmanager
def temp_database(prefix: str, *, migrate: bool = True) -> Iterator[str]:
    """A PostgreSQL database of its own (migrated unless told otherwise), dropped on exit."""
    import psycopg

    admin = servers()[0]
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    try:
        if migrate:
            from app.migrate import upgrade

            upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for the session, migrated, dropped at the end."""
    with temp_database("taas_test") as url:
        yield url


@pytest.fixture(scope="session")
def python() -> str:
    return sys.executable
