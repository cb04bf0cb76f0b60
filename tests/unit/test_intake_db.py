"""Intake's database work on MariaDB (issue 14's load tuning): a submit's INSERT is one
Core statement, and the pool sends no ROLLBACK after a transaction that ended,
yet still rolls back one that may be open (a stale REPEATABLE READ snapshot on
a pooled connection would show the next user old rows).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pymysql.connections
import pytest
from sqlalchemy import select, text

from ocrq.storage import Database, Job
from ocrq.storage import jobs as store
from tests.databases import MARIADB, throwaway_mariadb


@pytest.fixture
def db() -> Iterator[Database]:
    with throwaway_mariadb() as url:
        database = Database(url)
        yield database
        database.engine.dispose()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every command PyMySQL sends (COM_PING as "PING"), in order."""
    out: list[str] = []
    original = pymysql.connections.Connection._execute_command

    def spy(self: Any, command: int, sql: Any) -> Any:
        word = sql.decode() if isinstance(sql, bytes) else str(sql)
        out.append("PING" if command == 14 else (word.split() or [""])[0].upper())
        return original(self, command, sql)

    monkeypatch.setattr(pymysql.connections.Connection, "_execute_command", spy)
    return out


def new_job(job_id: str, key: str | None = None) -> dict[str, Any]:
    return {"id": job_id, "bid": "b", "tid": "t", "status": "queued", "image_name": "r.jpg",
            "width": 10, "height": 20, "idempotency_key": key}


def test_submit_insert_is_ping_insert_commit(db: Database, sent: list[str]) -> None:
    store.create_job(db, **new_job("warm"))  # the pool's first connection
    sent.clear()
    job, created = store.create_job(db, **new_job("j1"))
    assert created
    assert sent == ["PING", "INSERT", "COMMIT"]  # no ROLLBACK on return
    # The returned job is complete without a session: defaults filled, nothing to load.
    assert (job.status, job.batches_done, job.stage, job.error) == ("queued", 0, None, None)
    assert job.created_at is not None
    row = store.get_job(db, "j1")
    assert row is not None and row.created_at == job.created_at
    assert (row.width, row.height, row.image_name) == (10, 20, "r.jpg")


def test_idempotency_key_replays_and_unknown_field_refused(db: Database) -> None:
    first, created = store.create_job(db, **new_job("k1", key="abc"))
    again, created_again = store.create_job(db, **new_job("k2", key="abc"))
    assert created and not created_again and again.id == first.id == "k1"
    with pytest.raises(TypeError, match="not columns"):
        store.create_job(db, **new_job("k3"), colour="red")


def test_open_transaction_is_rolled_back_on_return(db: Database, sent: list[str]) -> None:
    """A connection returned with its transaction open (raw DBAPI use: a SELECT, no
    commit) is rolled back; the next user of that pooled connection sees rows
    committed since, not the old REPEATABLE READ snapshot."""
    engine = db.engine
    raw = engine.raw_connection()  # the pool's only connection
    cur = raw.cursor()
    cur.execute("SELECT COUNT(*) FROM ocrq_jobs")
    assert cur.fetchone()[0] == 0
    cur.close()
    raw.close()  # back to the pool, its snapshot still open
    assert sent[-1] == "ROLLBACK"
    outside = pymysql.connect(**MARIADB, database=engine.url.database, autocommit=True)
    with outside.cursor() as c:
        c.execute("INSERT INTO ocrq_jobs (id, bid, tid, status, image_name, width, height, "
                  "batches_done, created_at) VALUES ('x', 'b', 't', 'queued', 'r', 1, 1, 0, "
                  "NOW(6))")
    outside.close()
    with engine.connect() as conn:  # the same pooled connection
        assert conn.execute(text("SELECT COUNT(*) FROM ocrq_jobs")).scalar_one() == 1
    sent.clear()
    with db.session() as s:  # the ORM's commit: ended, no ROLLBACK on return
        s.execute(select(Job.id)).all()
    assert sent == ["PING", "SELECT", "COMMIT"]


def test_a_connection_lost_mid_insert_is_still_a_connection_error(db: Database) -> None:
    # Soak at a836797: MariaDB restarted during a submit's INSERT; the reset tracking
    # read .info of the invalidated Connection in the rollback event, and the web
    # answered 500 (PendingRollbackError) instead of 503 (a retry).
    from ocrq.pipeline.retry import transient

    store.create_job(db, **new_job("warm"))
    with db.engine.connect() as conn:
        conn_id = conn.execute(text("SELECT CONNECTION_ID()")).scalar_one()
        conn.commit()
    killer = pymysql.connect(**MARIADB)
    with killer.cursor() as c:  # the pooled connection dies under the next INSERT
        c.execute(f"KILL {int(conn_id)}")
    killer.close()
    db.engine.pool._pre_ping = False  # type: ignore[attr-defined]  # reach the INSERT
    with pytest.raises(Exception) as err:
        store.create_job(db, **new_job("lost"))
    assert transient(err.value), repr(err.value)
    db.engine.pool._pre_ping = True  # type: ignore[attr-defined]
    job, created = store.create_job(db, **new_job("after"))  # the pool recovers
    assert created and job.id == "after"
