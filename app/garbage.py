"""Files of deleted rows, removed in the background from a durable queue.

A delete commits its rows' removal and, in the same transaction, the keys of their files (`blob_garbage`). Once
that transaction commits, `kick()` wakes this process's sweeper thread, which removes the files and then their queue
rows; the request never waits on the disk. A crash between the two leaves the queue rows behind and the reaper's
next pass (`sweep()`) finishes the work, so a file is never removed while its row exists, and never left behind for
good. Removing a file twice is harmless, so several API processes may sweep at once."""

import logging
import threading

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.db import get_sessionmaker, on_commit
from app.models import BlobGarbage
from app.storage import get_storage

log = logging.getLogger(__name__)
BATCH = 500

_wake = threading.Event()
_start_lock = threading.Lock()
_thread: threading.Thread | None = None


def discard(session: Session, keys: list[str | None]) -> None:
    """Queue files for removal in the caller's transaction; the sweeper wakes when it commits (not on a rollback)."""
    rows = [BlobGarbage(key=k) for k in dict.fromkeys(keys) if k]
    if rows:
        session.add_all(rows)
        on_commit(session, kick)


def sweep(limit: int = BATCH) -> int:
    """Remove up to limit queued files, oldest first; returns how many."""
    with get_sessionmaker()() as session:
        stmt = select(BlobGarbage.id, BlobGarbage.key).order_by(BlobGarbage.id).limit(limit)
        if session.bind.dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)  # concurrent sweepers take disjoint batches
        rows = session.execute(stmt).all()
        if not rows:
            return 0
        storage = get_storage()
        for _, key in rows:
            storage.delete(key)
        session.execute(delete(BlobGarbage).where(BlobGarbage.id.in_([row_id for row_id, _ in rows])))
        session.commit()
        return len(rows)


def _run() -> None:
    while True:
        _wake.wait()
        _wake.clear()
        try:
            while sweep() == BATCH:
                pass
        except Exception:  # the reaper's pass retries whatever is left
            log.exception("background file removal failed")


def kick() -> None:
    """Wake the sweeper (discard() arranges it for its transaction's commit)."""
    global _thread
    with _start_lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_run, name="taas-garbage", daemon=True)
            _thread.start()
    _wake.set()
