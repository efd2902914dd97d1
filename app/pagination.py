"""Cursor pagination: newest first, `after=<id>` continues below that id (ids are time-ordered)."""

from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import Session


def page(session: Session, stmt: Select, id_col: Any, *, limit: int, after: str | None
         ) -> tuple[list[Any], bool]:
    """Rows of stmt newest first, and whether more follow."""
    if after:
        stmt = stmt.where(id_col < after)
    rows = list(session.scalars(stmt.order_by(id_col.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit
