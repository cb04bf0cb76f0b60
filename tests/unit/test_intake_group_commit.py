"""Group commit of intake's job rows (ocrq/storage/group_commit.py) on MariaDB.

The table is held by another connection's ``LOCK TABLES ... READ`` (reads go on,
writes wait) while the submits arrive, so the first one is stuck in its INSERT and the
rest queue behind it: what happens under load, made certain. Then: every row committed
before its call returned, the queued rows in one autocommitted INSERT, and a row
refused for its own sake (an Idempotency-Key taken in the same batch, a value
too long) costs its batch-mates nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pymysql.connections
import pytest

from ocrq.storage import Database, Job
from ocrq.storage import jobs as store
from ocrq.storage.group_commit import GroupCommit
from tests.databases import MARIADB, throwaway_mariadb


@pytest.fixture
def db() -> Iterator[Database]:
    with throwaway_mariadb() as url:
        database = Database(url)
        store.create_job(database, **new_job("warm"))  # the pool's first connection
        yield database
        database.engine.dispose()


def new_job(job_id: str, key: str | None = None, name: str = "r.jpg") -> dict[str, Any]:
    return {"id": job_id, "bid": "b", "tid": "t", "status": "queued", "image_name": name,
            "width": 10, "height": 20, "idempotency_key": key}


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The first two words of every command PyMySQL sends from now on ("COMMIT" too)."""
    seen: list[str] = []
    original = pymysql.connections.Connection._execute_command

    def spy(self: Any, command: int, sql: Any) -> Any:
        text = bytes(sql).decode() if isinstance(sql, bytes | bytearray) else str(sql)
        seen.append(" ".join(text.split()[:2]).upper())
        return original(self, command, sql)

    monkeypatch.setattr(pymysql.connections.Connection, "_execute_command", spy)
    return seen


def held(db: Database, calls: list[Callable[[], Any]],
         before_release: Callable[[], None] | None = None) -> list[Any]:
    """Run ``calls`` in threads while the jobs table is write-locked elsewhere; release
    it once all but the first wait in the group's queue (after ``before_release``).
    Each call's result or error."""
    out: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            out[i] = calls[i]()
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            out[i] = exc

    lock = pymysql.connect(**MARIADB, database=db.engine.url.database)
    group: GroupCommit = db.grouped(Job.__table__)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    try:
        with lock.cursor() as cur:
            cur.execute("LOCK TABLES ocrq_jobs READ")
        threads[0].start()
        deadline = time.monotonic() + 20
        while not group._busy:  # the first is the leader, stuck in its INSERT
            assert time.monotonic() < deadline
            time.sleep(0.01)
        for t in threads[1:]:
            t.start()
        while len(group._queue) < len(calls) - 1:
            assert time.monotonic() < deadline, "the submits did not queue"
            time.sleep(0.01)
        if before_release is not None:
            before_release()
    finally:
        with lock.cursor() as cur:
            cur.execute("UNLOCK TABLES")
        lock.close()
    for t in threads:
        t.join(timeout=30)
    return out


def test_queued_rows_share_one_insert_and_one_commit(db: Database,
                                                     statements: list[str]) -> None:
    calls = [lambda i=i: store.create_job(db, **new_job(f"j{i}")) for i in range(12)]
    results = held(db, calls)
    assert all(created for _, created in results), results
    # The leader's row, then the 11 queued behind it: two autocommitted INSERTs (each
    # committed as it answers, so no COMMIT is sent).
    inserts = [x for x in statements if x == "INSERT INTO"]
    assert len(inserts) == 2 and "COMMIT" not in statements, statements
    ids = {j.id for j, _ in results}
    assert all(store.get_job(db, f"j{i}") is not None for i in range(12)) and len(ids) == 12


def test_a_key_taken_in_the_same_batch_replays_and_the_rest_commit(db: Database) -> None:
    calls = [lambda: store.create_job(db, **new_job("lead")),
             lambda: store.create_job(db, **new_job("k1", key="same")),
             lambda: store.create_job(db, **new_job("k2", key="same")),
             lambda: store.create_job(db, **new_job("long", name="x" * 300)),
             lambda: store.create_job(db, **new_job("other"))]
    lead, k1, k2, long, other = held(db, calls)
    assert lead[1] and other[1]  # committed despite their batch-mates
    assert {k1[1], k2[1]} == {True, False} and k1[0].id == k2[0].id  # one wins, one replays
    assert isinstance(long, Exception) and "long" in str(long).lower()
    assert store.get_job(db, "long") is None and store.get_job(db, "other") is not None


def test_a_lost_connection_fails_its_batch_and_the_next_recovers(db: Database) -> None:
    from ocrq.pipeline.retry import transient

    killed: list[int] = []

    def kill_the_leader() -> None:  # its connection, waiting on the lock, dies
        admin = pymysql.connect(**MARIADB)
        with admin.cursor() as cur:
            cur.execute("SELECT id FROM information_schema.processlist "
                        "WHERE info LIKE 'INSERT INTO ocrq_jobs%'")
            killed.extend(int(r[0]) for r in cur.fetchall())
            for i in killed:
                cur.execute(f"KILL {i}")
        admin.close()

    calls = [lambda: store.create_job(db, **new_job("lost")),
             *[lambda i=i: store.create_job(db, **new_job(f"n{i}")) for i in range(3)]]
    results = held(db, calls, before_release=kill_the_leader)
    assert len(killed) == 1, killed
    assert isinstance(results[0], Exception) and transient(results[0]), results[0]
    assert all(r[1] for r in results[1:]), results  # the next batch, a new connection
    assert store.get_job(db, "lost") is None


def test_a_hung_commit_does_not_park_the_queued_rows(db: Database) -> None:
    """The leader's INSERT hangs (the table locked, as a half-open socket would hold
    it): the queued rows give up after ``wait_s`` with an in-doubt error the intake
    answers 503 for, leave the queue, and the group works again once the leader ends."""
    from ocrq.pipeline.retry import transient
    from ocrq.storage.group_commit import CommitInDoubt

    group: GroupCommit = db.grouped(Job.__table__)
    group.wait_s = 1.0
    out: dict[str, Any] = {}

    def run(job_id: str) -> None:
        start = time.monotonic()
        try:
            out[job_id] = store.create_job(db, **new_job(job_id))
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            out[job_id] = exc
        out[job_id + "_s"] = time.monotonic() - start

    lock = pymysql.connect(**MARIADB, database=db.engine.url.database)
    with lock.cursor() as cur:
        cur.execute("LOCK TABLES ocrq_jobs READ")
    leader = threading.Thread(target=run, args=("hung",))
    leader.start()
    deadline = time.monotonic() + 20
    while not group._busy:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    queued = [threading.Thread(target=run, args=(f"q{i}",)) for i in range(3)]
    for t in queued:
        t.start()
    for t in queued:
        t.join(timeout=20)
    try:
        for i in range(3):
            err = out[f"q{i}"]
            assert isinstance(err, CommitInDoubt) and transient(err), err
            assert out[f"q{i}_s"] < 10, out
        assert not group._queue  # they left: no later leader commits them
    finally:
        with lock.cursor() as cur:
            cur.execute("UNLOCK TABLES")
        lock.close()
    leader.join(timeout=30)
    assert out["hung"][1] is True  # the leader's own row committed once the lock went
    assert store.create_job(db, **new_job("after"))[1] and not group._busy
    assert all(store.get_job(db, f"q{i}") is None for i in range(3))
