"""Opaque, time-ordered ids with a type prefix (a ULID behind it)."""

from ulid import ULID

PREFIXES = ("ds", "job", "model", "bm", "evt", "key", "art", "wh", "msg")


def new_id(prefix: str) -> str:
    """A new id such as ``job_01J…``."""
    assert prefix in PREFIXES, prefix
    return f"{prefix}_{str(ULID()).lower()}"
