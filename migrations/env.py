"""Alembic environment: the URL comes from the caller (ocrq db upgrade) or Settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from ocrq.settings import Settings
from ocrq.storage.models import Base

config = context.config
# Every ORM table is declared in ocrq.storage.models, so this metadata is complete:
# autogenerate (and `alembic check`) compare the database against all of it.
target_metadata = Base.metadata
# Types and server defaults too, not only tables, columns and indexes.
COMPARE = {"compare_type": True, "compare_server_default": True}


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or Settings.from_env().database_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=True, **COMPARE)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(_url())
    with engine.connect() as connection:
        # Batch mode: SQLite cannot ALTER most things in place; harmless on MariaDB.
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=True, **COMPARE)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
