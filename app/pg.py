"""Async reads on PostgreSQL (asyncpg) for the paths every request or every dashboard poll takes: the API key check,
`GET /v1/jobs/{id}` (the key and the job in one statement) and the dry run (the dataset and the weights in one).

Why a second driver: on the ORM a GET cost about 3 ms of CPU in the API process (two hops to worker threads, two
ORM queries, response re-validation), sixteen times what uvicorn and FastAPI alone cost. Here each read is one
prepared statement on the event loop, on an autocommit connection: no thread, no BEGIN/ROLLBACK, no ORM. The ORM
session stays the one writer; these are plain SELECTs, so every read sees every committed write at once (a revoked
key fails its very next request, in every process): nothing is cached.

One pool per event loop (uvicorn runs one per process; a TestClient runs one per client), created on first use and
closed by the app's lifespan. SQLite (the embedded default) has no async path: callers fall back to the ORM in a
worker thread, so `enabled()` decides."""

import asyncio
import json
import logging
from typing import Any

import asyncpg

from app.config import get_settings
from app.db import get_engine

log = logging.getLogger(__name__)

APPLICATION_NAME = "taas-api-reads"  # how these connections show in pg_stat_activity
_pools: dict[asyncio.AbstractEventLoop, "asyncio.Future[asyncpg.Pool]"] = {}


def enabled() -> bool:
    """Whether the database is PostgreSQL (the async path); False on SQLite."""
    return get_engine().dialect.name == "postgresql"


def dsn() -> str:
    """The engine's URL for asyncpg: the same server, database and credentials, without the SQLAlchemy driver."""
    return get_engine().url.set(drivername="postgresql").render_as_string(hide_password=False)


async def _init(conn: asyncpg.Connection) -> None:
    # SQLAlchemy's JSON columns are PostgreSQL `json`: decode them to Python values as the ORM does.
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep(_conn: asyncpg.Connection) -> None:
    """The pool's reset on release. asyncpg's default sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL` after every use: one more round trip per read. These connections only ever run autocommit SELECTs
    (no SET, LISTEN, cursor or lock outlives a statement), so there is nothing to reset."""


async def _create() -> asyncpg.Pool:
    return await asyncpg.create_pool(dsn(), min_size=1, max_size=get_settings().read_pool_size, init=_init, reset=_keep,
                                     max_inactive_connection_lifetime=60.0,
                                     server_settings={"application_name": APPLICATION_NAME})


async def pool() -> asyncpg.Pool:
    """This event loop's pool, created on first use (concurrent first callers share one creation)."""
    loop = asyncio.get_running_loop()
    fut = _pools.get(loop)
    if fut is None:
        fut = _pools[loop] = loop.create_task(_create())
    try:
        return await fut
    except BaseException:
        if _pools.get(loop) is fut and fut.done():
            del _pools[loop]  # the server was unreachable: the next request tries again
        raise


# A pooled connection the server closed (a restart, pg_terminate_backend, a proxy's idle timeout) fails the statement
# that finds out, with one of these, depending on when the client saw the close. A read is safe to repeat: the
# connection is dropped, the pool told to replace the others (after a restart they are all dead), and the read runs
# once more on a fresh one.
_GONE = (asyncpg.InterfaceError, asyncpg.InternalClientError, asyncpg.PostgresConnectionError,
         asyncpg.exceptions.OperatorInterventionError, ConnectionError, OSError)


async def fetchrow(query: str, *args: Any) -> asyncpg.Record | None:
    """One row (or None) from one prepared statement, in autocommit."""
    p = await pool()
    for attempt in (1, 2):
        conn = await p.acquire()
        try:
            return await conn.fetchrow(query, *args)
        except _GONE as exc:
            conn.terminate()  # never back into the pool
            await p.expire_connections()
            if attempt == 2:
                raise
            log.warning("a pooled read connection was gone (%s); reading again on a fresh one", type(exc).__name__)
        finally:
            await p.release(conn)
    raise AssertionError("unreachable")


class Attrs:
    """A record's columns as attributes, for code written against ORM rows (`JobRead.of`, say); with prefix,
    the columns named prefix + attribute."""

    __slots__ = ("_record", "_prefix")

    def __init__(self, record: asyncpg.Record, prefix: str = ""):
        self._record, self._prefix = record, prefix

    def __getattr__(self, name: str) -> Any:
        try:
            return self._record[self._prefix + name]
        except KeyError:
            raise AttributeError(name) from None


async def close() -> None:
    """Close this event loop's pool (the app's lifespan calls it on shutdown)."""
    fut = _pools.pop(asyncio.get_running_loop(), None)
    if fut is None:
        return
    try:
        p = await fut
    except Exception:
        return
    await p.close()
