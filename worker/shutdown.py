"""Graceful shutdown: a worker told to stop (SIGTERM, a deploy) checkpoints and hands its job back.

Celery's prefork children turn SIGTERM into an immediate exit (billiard's handler), so the parent forwards its own
shutdown to its children as SIGUSR2, which each child turns into a flag: the training loop sees it at its next step.
"""

import contextlib
import logging
import os
import signal
import threading
from pathlib import Path

log = logging.getLogger(__name__)
_requested = threading.Event()


def requested() -> bool:
    """Whether this process was asked to shut down."""
    return _requested.is_set()


def _on_stop(signum: int, _frame: object) -> None:
    log.warning("shutdown requested (signal %s): handing the job back at the next step", signum)
    _requested.set()


STOP_SIGNAL = signal.SIGUSR2


def install_child_handler() -> None:
    """In a pool child: turn the parent's stop signal into a request to stop at the next step."""
    signal.signal(STOP_SIGNAL, _on_stop)


def forward_to_children() -> None:
    """In the parent: ask every child process to stop at its next step; also stop work in this process."""
    _requested.set()
    for pid in _children(os.getpid()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, STOP_SIGNAL)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return out
