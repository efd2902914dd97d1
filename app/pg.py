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
import contextlib
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


async def fetch(query: str, *args: Any) -> list[asyncpg.Record]:
    """Every row of one prepared statement, in autocommit."""
    p = await pool()
    for attempt in (1, 2):
        conn = await p.acquire()
        try:
            return await conn.fetch(query, *args)
        except _GONE as exc:
            with contextlib.suppress(asyncpg.InterfaceError):  # the pool may have taken a closed one back already
                conn.terminate()  # never back into the pool
            await p.expire_connections()
            if attempt == 2:
                raise
            log.warning("a pooled read connection was gone (%s); reading again on a fresh one", type(exc).__name__)
        finally:
            with contextlib.suppress(asyncpg.InterfaceError):
                await p.release(conn)
    raise AssertionError("unreachable")


class Coalesced:
    """One read that requests arriving together share: one statement and one round trip for all of them.

    Under load uvicorn starts several requests in the same pass of the event loop; each asks for its row here,
    and the first schedules a flush for the loop's next pass, by which time the others have asked too. The flush
    sends every request's arguments as arrays (`unnest($1::text[], …) WITH ORDINALITY AS q(…, i)`), and each
    request gets the row whose `i` is its position (None without one). Alone, a request costs what a plain
    statement does; sixteen at once cost one round trip instead of sixteen, on both sides of the connection.
    Every request still reads the database after it arrived: nothing is cached or reused between batches.

    A statement that fails for one request's values (PostgreSQL refusing a NUL byte, say) is run again for each
    request alone, so that every request gets its own answer."""

    def __init__(self, query: str):
        self.query = query  # arrays $1, $2, … (one per argument), rows carrying their ordinal as `i`
        self._batches: dict[asyncio.AbstractEventLoop, list[tuple[tuple[Any, ...], asyncio.Future]]] = {}
        self._tasks: set[asyncio.Task] = set()
        self.statements = 0  # sent so far (a test's, or a curious operator's, measure of the coalescing)

    async def fetchrow(self, *args: Any) -> asyncpg.Record | None:
        loop = asyncio.get_running_loop()
        batch = self._batches.get(loop)
        if batch is None:
            batch = self._batches[loop] = []
            loop.call_soon(self._flush, loop)
        fut = loop.create_future()
        batch.append((args, fut))
        return await fut

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        task = loop.create_task(self._answer(self._batches.pop(loop)))
        self._tasks.add(task)  # a reference until it is done
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, batch: list[tuple[tuple[Any, ...], asyncio.Future]]) -> None:
        waiting = [(args, fut) for args, fut in batch if not fut.done()]  # a cancelled request asks nothing
        if not waiting:
            return
        try:
            try:
                self.statements += 1
                rows = await fetch(self.query, *(list(column) for column in zip(*(a for a, _ in waiting), strict=True)))
                results = [None] * len(waiting)
                for row in rows:
                    results[row["i"] - 1] = row
            except asyncpg.PostgresError:
                if len(waiting) == 1:
                    raise
                for args, fut in waiting:  # one request's values spoilt the batch: each on its own
                    self._tasks.add(task := asyncio.ensure_future(self._answer([(args, fut)])))
                    task.add_done_callback(self._tasks.discard)
                return
        except BaseException as exc:
            for _, fut in waiting:
                if not fut.done():
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, fut), row in zip(waiting, results, strict=True):
            if not fut.done():
                fut.set_result(row)


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
