"""Intake's database work on MariaDB (issue 14's load tuning): a submit's INSERT is one
autocommitted statement on the group commit's own connection (no ping, no COMMIT),
committed when it answers; a connection the server closed while idle is replaced
before the INSERT is sent. The pool sends no ROLLBACK after a transaction that
ended, yet still rolls back one that may be open (a stale REPEATABLE READ snapshot
on a pooled connection would show the next user old rows).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pymysql.connections
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

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
        word = bytes(sql).decode() if isinstance(sql, bytes | bytearray) else str(sql)
        out.append("PING" if command == 14 else (word.split() or [""])[0].upper())
        return original(self, command, sql)

    monkeypatch.setattr(pymysql.connections.Connection, "_execute_command", spy)
    return out


def new_job(job_id: str, key: str | None = None) -> dict[str, Any]:
    return {"id": job_id, "bid": "b", "tid": "t", "status": "queued", "image_name": "r.jpg",
            "width": 10, "height": 20, "idempotency_key": key}


def outside_count(db: Database) -> int:
    """Job rows another connection sees: what is committed."""
    outside = pymysql.connect(**MARIADB, database=db.engine.url.database, autocommit=True)
    with outside.cursor() as c:
        c.execute("SELECT COUNT(*) FROM ocrq_jobs")
        n = int(c.fetchone()[0])
    outside.close()
    return n


def group_connection_id(db: Database) -> int:
    """The server's id of the group commit's own connection (made by a first insert)."""
    conn = db.grouped(Job.__table__)._direct._conn  # type: ignore[union-attr]
    with conn.cursor() as cur:
        cur.execute("SELECT CONNECTION_ID()")
        return int(cur.fetchone()[0])


def test_submit_insert_is_one_autocommitted_statement(db: Database, sent: list[str]) -> None:
    store.create_job(db, **new_job("warm"))  # the group's connection, autocommit set
    sent.clear()
    job, created = store.create_job(db, **new_job("j1"))
    assert created
    assert sent == ["INSERT"]  # before: PING, INSERT, COMMIT
    assert outside_count(db) == 2  # committed: another connection sees it
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


def test_a_connection_lost_mid_statement_is_still_a_connection_error(db: Database) -> None:
    # Soak at a836797: MariaDB restarted during a submit's INSERT; the reset tracking
    # read .info of the invalidated Connection in the rollback event, and the web
    # answered 500 (PendingRollbackError) instead of 503 (a retry). The INSERT has its
    # own connection now; the pool's users (every other statement) still go through it.
    from ocrq.pipeline.retry import transient

    store.create_job(db, **new_job("warm"))
    with db.engine.connect() as conn:
        conn_id = conn.execute(text("SELECT CONNECTION_ID()")).scalar_one()
        conn.commit()
    killer = pymysql.connect(**MARIADB)
    with killer.cursor() as c:  # the pooled connection dies under the next statement
        c.execute(f"KILL {int(conn_id)}")
    killer.close()
    db.engine.pool._pre_ping = False  # type: ignore[attr-defined]  # reach the UPDATE
    with pytest.raises(Exception) as err:
        store.transition(db, "warm", stage="detect")
    assert transient(err.value), repr(err.value)
    db.engine.pool._pre_ping = True  # type: ignore[attr-defined]
    assert store.transition(db, "warm", stage="detect")  # the pool recovers


def test_a_connection_killed_while_idle_is_replaced_before_the_insert(
        db: Database, sent: list[str]) -> None:
    """What the pool's pre-ping did for the INSERT: the server closed the group's idle
    connection (a restart, wait_timeout, a KILL); the next submit must not send on it
    (its INSERT would be lost, an in-doubt 503) but commit on a new one."""
    store.create_job(db, **new_job("warm"))
    old = group_connection_id(db)
    admin = pymysql.connect(**MARIADB)
    with admin.cursor() as c:
        c.execute(f"KILL {old}")
        deadline = time.monotonic() + 10
        while True:  # KILL returns before the server has closed the socket
            c.execute("SELECT COUNT(*) FROM information_schema.processlist WHERE id = %s",
                      (old,))
            if c.fetchone()[0] == 0:
                break
            assert time.monotonic() < deadline, "the killed connection is still listed"
            time.sleep(0.05)
    admin.close()
    sent.clear()
    job, created = store.create_job(db, **new_job("after"))
    assert created and job.id == "after"
    # Sent once, on a new connection (its set-up first: autocommit on...), no error.
    assert sent.count("INSERT") == 1 and sent[-1] == "INSERT"
    assert group_connection_id(db) != old and outside_count(db) == 2


def test_a_connection_killed_during_the_insert_is_a_retry_and_replaced(db: Database) -> None:
    """The submit's INSERT waits on a lock and its connection is KILLed (a restart in
    mid-statement): the submit fails with a transient error (the API's 503 +
    Retry-After), nothing of it is written, and the next submit commits on a new one."""
    import threading

    from ocrq.pipeline.retry import transient

    store.create_job(db, **new_job("warm"))
    victim = group_connection_id(db)
    locker = pymysql.connect(**MARIADB, database=db.engine.url.database)
    out: dict[str, Any] = {}

    def submit() -> None:
        try:
            out["ok"] = store.create_job(db, **new_job("x1"))
        except Exception as exc:  # noqa: BLE001 - looked at below
            out["error"] = exc

    with locker.cursor() as lc:
        lc.execute("LOCK TABLES ocrq_jobs READ")  # the INSERT waits in the server
        t = threading.Thread(target=submit)
        t.start()
        admin = pymysql.connect(**MARIADB)
        with admin.cursor() as c:
            deadline = time.monotonic() + 10
            while True:  # until the INSERT is in flight on the group's connection
                c.execute("SELECT info FROM information_schema.processlist WHERE id = %s",
                          (victim,))
                row = c.fetchone()
                if row and row[0] and str(row[0]).upper().startswith("INSERT"):
                    break
                assert time.monotonic() < deadline, "the INSERT never reached the server"
                time.sleep(0.02)
            c.execute(f"KILL {victim}")
        admin.close()
        t.join(10)
        lc.execute("UNLOCK TABLES")
    locker.close()
    assert "error" in out and transient(out["error"]), out
    assert outside_count(db) == 1  # only "warm"
    job, created = store.create_job(db, **new_job("x2"))
    assert created and group_connection_id(db) != victim and outside_count(db) == 2


def test_the_groups_connection_is_replaced_after_an_error_and_when_due(db: Database) -> None:
    """Not only a lost connection: after any error but a row's own (here the server
    refusing writes on it, as an old primary left read-only after a switchover) and
    after the pool's recycle time, the next INSERT goes on a new connection."""
    store.create_job(db, **new_job("warm"))
    group = db.grouped(Job.__table__)._direct  # type: ignore[union-attr]
    first = group_connection_id(db)
    with group._conn.cursor() as cur:
        cur.execute("SET SESSION TRANSACTION READ ONLY")
    with pytest.raises(Exception) as err:
        store.create_job(db, **new_job("refused"))
    assert "READ ONLY" in str(err.value).upper(), repr(err.value)
    job, created = store.create_job(db, **new_job("next"))  # a fresh connection writes
    second = group_connection_id(db)
    assert created and second != first
    # A duplicate key is the row's own error: the connection stays.
    with pytest.raises(IntegrityError):
        store.create_job(db, **{**new_job("next"), "idempotency_key": None})
    assert group_connection_id(db) == second
    group._born -= group._recycle + 1  # due (the pool's pool_recycle)
    store.create_job(db, **new_job("later"))
    assert group_connection_id(db) != second and outside_count(db) == 3
