"""Engine and sessions; SQLite gets WAL and a busy timeout so the embedded default tolerates concurrency."""

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from functools import cache

from fastapi import Request
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from app.config import get_settings

log = logging.getLogger(__name__)
PING_AFTER_IDLE_SECONDS = 5.0  # a pooled connection unused for longer is pinged before it is handed out


def make_engine(url: str) -> Engine:
    """An engine for url, with SQLite tuned for a multi-process embedded deployment."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # noqa: ANN001
            # Let SQLAlchemy issue BEGIN itself so that transactions start where we expect.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):  # noqa: ANN001
            # IMMEDIATE takes the write lock up front: no deadlock upgrading a read to a write.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # Keep as many connections as a busy process uses: a request holds one while it runs, and with 10 kept and
    # 16 requests in flight, every connection over 10 was opened and closed again per request (a server-side
    # fork each). The cap (pool_size + max_overflow) stays 30 per process.
    engine = create_engine(url, pool_size=20, max_overflow=10)

    # Pessimistic disconnect handling, but only for connections idle a while: a ping on every checkout
    # (pool_pre_ping) is one more round trip per request. A connection that dies while in use (the server went
    # away just now) fails that request once, and SQLAlchemy then invalidates the rest of the pool.
    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_conn, record):  # noqa: ANN001
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn, record, _proxy):  # noqa: ANN001
        if time.monotonic() - record.info.get("idle_since", 0.0) > PING_AFTER_IDLE_SECONDS:
            try:
                engine.dialect.do_ping(dbapi_conn)
            except Exception as exc:
                raise DisconnectionError(f"stale pooled connection: {exc}") from exc  # the pool retries afresh

    return engine


@cache
def get_engine() -> Engine:
    """The process-wide engine."""
    settings = get_settings()
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return make_engine(settings.resolved_database_url)


@cache
def get_sessionmaker() -> sessionmaker[Session]:
    """The process-wide session factory."""
    return sessionmaker(get_engine(), expire_on_commit=False)


@cache
def _autocommit(engine: Engine) -> Engine:
    return engine.execution_options(isolation_level="AUTOCOMMIT") if engine.dialect.name == "postgresql" else engine


@cache
def _read_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(_autocommit(engine), expire_on_commit=False)


def get_read_sessionmaker() -> sessionmaker[Session]:
    """Sessions for reads. PostgreSQL: on autocommit connections (sharing the pool), so a GET sends its SELECTs and
    nothing else (no BEGIN, no ROLLBACK: two round trips of four), each statement reading its own snapshot.
    SQLite: the usual sessions (its transactions are local)."""
    engine = get_engine()
    return _read_sessionmaker(engine) if engine.dialect.name == "postgresql" else get_sessionmaker()


READ_METHODS = frozenset({"GET", "HEAD"})


def reads_only(request: Request) -> bool:
    """A request that writes nothing: a GET or HEAD. (The dry run reads without this dependency, app/jobs/router.py;
    judging by the query string would hand any other POST carrying `dry_run=true` an autocommit session.)"""
    return request.method in READ_METHODS


def autocommit_begin(session: Session) -> AbstractContextManager[Connection]:
    """A connection of session's engine for one statement outside the session's transaction: on PostgreSQL in
    autocommit mode (one round trip instead of BEGIN, statement, COMMIT), on SQLite a short transaction of its own."""
    return _autocommit(session.get_bind().engine).begin()


async def get_db(request: Request) -> AsyncIterator[Session]:
    """A request-scoped session (FastAPI dependency); a GET's reads run without a transaction on PostgreSQL.

    Async on purpose: opening a session does no I/O, so FastAPI needn't hand it to a worker thread, and closing one
    hands it over only when a transaction is still open (an error before the commit: the ROLLBACK is I/O)."""
    read = reads_only(request)
    session = (get_read_sessionmaker() if read else get_sessionmaker())()
    try:
        yield session
    finally:
        if session.in_transaction() and not (read and session.get_bind().dialect.name == "postgresql"):
            await run_in_threadpool(session.close)
        else:
            session.close()  # nothing to roll back on the server: no I/O


def on_commit(session: Session, fn: Callable[[], None]) -> None:
    """Run fn once the session's current transaction has committed; forget it if the transaction rolls back."""
    session.info.setdefault("on_commit", []).append(fn)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    for fn in session.info.pop("on_commit", []):
        try:
            fn()
        except Exception:  # a hook must never turn a committed change into an error
            log.exception("on_commit hook failed")


@event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(session: Session, transaction) -> None:  # noqa: ANN001
    if transaction.parent is None:  # rolled back or closed: what it would have announced never happened
        session.info.pop("on_commit", None)
