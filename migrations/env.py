"""Alembic environment: the URL comes from Settings; SQLite uses batch mode so migrations stay reversible."""

from alembic import context

from app.config import get_settings
from app.db import make_engine
from app.models import Base

target_metadata = Base.metadata


def run() -> None:
    url = context.config.attributes.get("url") or get_settings().resolved_database_url
    engine = make_engine(url)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata,
                          render_as_batch=conn.dialect.name == "sqlite", compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run()
