"""The migrations build exactly the schema the ORM describes, on SQLite and on MariaDB.

Each database is migrated with the project's own path (``ocrq db upgrade``), then
``alembic check`` runs autogenerate against it through migrations/env.py: any
difference (a table the ORM does not know, a type, an index, nullability, a server
default) is an operation autogenerate would emit, and fails the test.

The check runs in a fresh interpreter so that it sees only what env.py imports, not
the ORM classes other tests of this session happened to import.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from ocrq.cli.serve import MIGRATIONS, upgrade
from tests.databases import throwaway_mariadb

ROOT = Path(__file__).resolve().parents[2]
TABLES = {"alembic_version", "ocrq_jobs", "ocrq_results", "ocrq_webhook_deliveries",
          "ocrq_model_activations", "ocrq_api_keys", "ocrq_badcases"}


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """A throw-away MariaDB database, dropped afterwards."""
    with throwaway_mariadb(migrate=False) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ocrq.sqlite3'}"


def alembic_check(database_url: str) -> subprocess.CompletedProcess[str]:
    """``alembic check`` on the migrations, as an operator would run it."""
    env = {**os.environ, "OCRQ_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(MIGRATIONS / "alembic.ini"), "check"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)


def tables(database_url: str) -> set[str]:
    engine = create_engine(database_url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("mariadb", marks=pytest.mark.services)])
def test_autogenerate_finds_nothing_after_upgrade(backend: str,
                                                  request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(f"{backend}_url")
    upgrade(url)
    assert tables(url) == TABLES
    result = alembic_check(url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No new upgrade operations detected" in result.stdout + result.stderr


def test_check_reports_a_schema_that_drifted(sqlite_url: str) -> None:
    """The check itself can fail: an index missing from the database is reported."""
    upgrade(sqlite_url)
    engine = create_engine(sqlite_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP INDEX ix_ocrq_jobs_status")
    finally:
        engine.dispose()
    result = alembic_check(sqlite_url)
    assert result.returncode != 0
    assert "ix_ocrq_jobs_status" in result.stdout + result.stderr
