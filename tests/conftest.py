"""Shared fixtures: a real PostgreSQL database per test session, settings pointed at temporary directories."""

import os
import secrets
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("TAAS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TAAS_TEST_REDIS", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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

    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    try:
        if migrate:
            from app.migrate import upgrade

            upgrade(url)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for the session, migrated, dropped at the end."""
    with temp_database("taas_test") as url:
        yield url


@pytest.fixture(scope="session")
def python() -> str:
    return sys.executable
