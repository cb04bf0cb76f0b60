"""`ocrq purge` deletes in bounded batches, on SQLite and on MariaDB (real databases)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import event, func, select

from ocrq.cli.serve import purge as purge_command
from ocrq.storage import Database, Delivery, Job, JobStatus, Result
from ocrq.storage import jobs as store
from ocrq.storage.models import utcnow
from tests.databases import throwaway_mariadb


@pytest.fixture
def sqlite_url(migrated_sqlite: Path, tmp_path: Path) -> str:
    target = tmp_path / "ocrq.sqlite3"
    target.write_bytes(migrated_sqlite.read_bytes())
    return f"sqlite:///{target}"


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """A throw-away MariaDB database, migrated, dropped afterwards."""
    with throwaway_mariadb() as url:
        yield url


@pytest.fixture(params=["sqlite", "mariadb"])
def db(request: pytest.FixtureRequest) -> Iterator[Database]:
    url = request.getfixturevalue(f"{request.param}_url")
    database = Database(url)
    yield database
    database.engine.dispose()


def add_jobs(db: Database, n: int, status: JobStatus, age_days: float) -> list[str]:
    """``n`` jobs created ``age_days`` ago, each with a result and a delivery row."""
    created = utcnow() - timedelta(days=age_days)
    ids = [secrets.token_hex(16) for _ in range(n)]
    with db.session() as s:
        for i, job_id in enumerate(ids):
            s.add(Job(id=job_id, bid="b", tid="t", status=str(status), image_name="x.png",
                      width=10, height=10, batches_done=0,
                      created_at=created + timedelta(seconds=i)))
    with db.session() as s:
        for job_id in ids:
            s.add(Result(job_id=job_id, document={}, models={}))
            s.add(Delivery(job_id=job_id, attempt=1, url="http://x", ok=True))
    return ids


def count(db: Database, model: Any) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def job_deletes(db: Database) -> list[int]:
    """Records how many ids each DELETE on ocrq_jobs carried (filled as statements run)."""
    seen: list[int] = []

    def on_execute(_conn: Any, _cur: Any, statement: str, params: Any, _ctx: Any,
                   _many: bool) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM OCRQ_JOBS"):
            seen.append(len(params))

    event.listen(db.engine, "before_cursor_execute", on_execute)
    return seen


def test_purge_deletes_in_batches_and_keeps_what_it_must(db: Database) -> None:
    old = add_jobs(db, 10, JobStatus.SUCCEEDED, age_days=40)
    add_jobs(db, 2, JobStatus.RUNNING, age_days=40)  # old but unfinished: the sweeper's
    add_jobs(db, 3, JobStatus.FAILED, age_days=1)  # finished but young
    deletes = job_deletes(db)
    assert store.purge(db, 30, batch=3) == 10
    assert deletes == [3, 3, 3, 1]  # ceil(10 / 3) statements, none over the batch
    with db.session() as s:
        left = set(s.scalars(select(Job.id)))
    assert not left & set(old)
    assert len(left) == 5
    assert count(db, Result) == 5 and count(db, Delivery) == 5  # children went with them


def test_purge_max_batches_bounds_one_call_oldest_first(db: Database) -> None:
    old = add_jobs(db, 7, JobStatus.CANCELLED, age_days=50)
    assert store.purge(db, 30, batch=2, max_batches=2) == 4
    with db.session() as s:
        left = set(s.scalars(select(Job.id)))
    assert left == set(old[4:])  # the oldest went first
    assert store.purge(db, 30, batch=2) == 3
    assert count(db, Job) == 0
    assert store.purge(db, 30, batch=2) == 0


def test_cli_purge_uses_the_batch(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    add_jobs(db, 5, JobStatus.SUCCEEDED, age_days=10)
    res = CliRunner().invoke(purge_command, ["--days", "7", "--batch", "2"],
                             env={"OCRQ_DATABASE_URL": sqlite_url})
    assert res.exit_code == 0, res.output
    assert "purged 5 jobs" in res.output
    assert count(db, Job) == 0
    res = CliRunner().invoke(purge_command, ["--batch", "0"],
                             env={"OCRQ_DATABASE_URL": sqlite_url})
    assert res.exit_code != 0  # a batch of nothing would never finish
