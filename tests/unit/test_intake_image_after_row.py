"""A submit's Redis work is one round trip, after its INSERT (issue 14): the image
rides the pipeline that writes the status, the task ids and the first message.

Each blocking round trip costs a submit about twice its own CPU (the core goes
cold while it waits), so the image's own SET before the row was folded into that
pipeline. Counted at the real Redis and database: every packed send of a Redis
connection (a pipeline is one) and every SQL statement, in the order they happen.
Also: a replay stores no image, and an INSERT whose reply was lost still leaves
the image (with the id in IN_DOUBT) for the sweeper to re-drive or drop.
"""

from __future__ import annotations

import io
from typing import Any

import pymysql
import pytest
from flask import Flask
from redis.connection import AbstractConnection
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError, OperationalError

from ocrq.localcluster import free_port
from ocrq.pipeline import jobs
from ocrq.pipeline.state import Services
from ocrq.settings import Settings
from ocrq.storage import jobs as store
from ocrq.storage.group_commit import CommitInDoubt
from tests.fixtures import encode, render_page
from web import create_app


@pytest.fixture
def png() -> bytes:
    return encode(render_page(["TOTAL 42.00"]))


@pytest.fixture
def trips(web_app: Flask, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """In order: the first word of each SQL statement the app's engine runs, and
    "redis" for each round trip any Redis client of this process starts."""
    seen: list[str] = []
    send = AbstractConnection.send_packed_command

    def counted(self: Any, command: Any, check_health: bool = True) -> None:
        seen.append("redis")
        send(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    event.listen(web_app.extensions["ocrq"].db.engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_: seen.append(statement.split()[0].upper()))
    return seen


def post(web_app: Flask, png: bytes, key: str | None = None) -> Any:
    return web_app.test_client().post(
        "/v1/jobs", data={"image": (io.BytesIO(png), "p.png")},
        content_type="multipart/form-data", headers={"Idempotency-Key": key} if key else {})


def test_a_submit_is_its_insert_then_one_redis_round_trip(
        web_app: Flask, web_settings: Settings, trips: list[str], png: bytes) -> None:
    assert post(web_app, png).status_code == 202  # warm: pools, the live snapshot
    # The router re-reads the live snapshot once a second (not per request).
    web_app.extensions["ocrq"].router.ttl_s = 3600.0
    trips.clear()
    resp = post(web_app, png)
    assert resp.status_code == 202, resp.get_data(as_text=True)
    # Before: "redis" (the image's SET), "INSERT", "redis" (status, tasks, message).
    assert trips == ["INSERT", "redis"], trips
    services = Services(web_settings)
    job_id = resp.get_json()["id"]
    try:  # ... and that one round trip stored the image, the status and the message
        assert services.redis.exists(services.blobs.key_for(job_id))
        assert services.cache.get(job_id) is not None
        assert services.redis.llen(web_settings.queue_gpu) + services.redis.llen(
            web_settings.queue_cpu) == 2
    finally:
        services.redis.delete(services.blobs.key_for(job_id))


def test_a_replay_stores_no_image(web_app: Flask, web_settings: Settings,
                                  trips: list[str], png: bytes) -> None:
    first = post(web_app, png, "replay-no-image")
    assert first.status_code == 202
    web_app.extensions["ocrq"].router.ttl_s = 3600.0
    services = Services(web_settings)
    services.redis.delete(services.blobs.key_for(first.get_json()["id"]))
    before = set(services.redis.keys(f"{services.blobs.prefix}*"))
    trips.clear()
    again = post(web_app, png, "replay-no-image")
    # The key looked up, the status read. Before: the replay's image was stored first
    # and deleted after (two round trips for nothing).
    assert trips == ["SELECT", "redis"], trips
    assert again.status_code == 200 and again.get_json()["id"] == first.get_json()["id"]
    assert set(services.redis.keys(f"{services.blobs.prefix}*")) <= before


def test_an_insert_whose_reply_was_lost_leaves_the_image_in_doubt(
        web_app: Flask, web_settings: Settings, png: bytes,
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = store.create_job

    def committed_then_lost(*args: Any, **fields: Any) -> Any:
        real(*args, **fields)  # committed, and then the reply is lost
        raise OperationalError("INSERT", {}, pymysql.err.OperationalError(
            2013, "Lost connection to MySQL server during query"))

    monkeypatch.setattr(store, "create_job", committed_then_lost)
    services = Services(web_settings)
    before = set(services.redis.zrange(jobs.IN_DOUBT, 0, -1))
    assert post(web_app, png).status_code == 503
    [job_id] = {m.decode() for m in set(services.redis.zrange(jobs.IN_DOUBT, 0, -1)) - before}
    try:
        # The row exists: the sweeper re-drives it from this image (tests/faults/
        # test_fix_units.py runs that), or drops the image when there is no row.
        assert store.get_job(services.db, job_id) is not None
        assert services.blobs.get(services.blobs.key_for(job_id)) == png
    finally:
        services.redis.delete(services.blobs.key_for(job_id))
        services.redis.zrem(jobs.IN_DOUBT, job_id)


def test_a_database_that_cannot_be_reached_leaves_no_image(
        web_settings: Settings, png: bytes) -> None:
    # MariaDB down (nothing listens): the INSERT was never sent, so there is no row to
    # re-drive; storing the image in doubt would only fill Redis for the whole outage.
    settings = web_settings.with_(
        database_url=f"mysql+pymysql://root@127.0.0.1:{free_port()}/ocrq")
    services = Services(settings)
    before = set(services.redis.zrange(jobs.IN_DOUBT, 0, -1))
    images = set(services.redis.scan_iter(match=services.blobs.key_for("*")))
    resp = post(create_app(settings), png)
    assert resp.status_code == 503 and resp.headers.get("Retry-After")
    assert set(services.redis.zrange(jobs.IN_DOUBT, 0, -1)) == before
    assert set(services.redis.scan_iter(match=services.blobs.key_for("*"))) == images


def test_which_failures_of_the_insert_may_have_left_a_row() -> None:
    def mysql(code: int) -> OperationalError:
        return OperationalError("INSERT", {}, pymysql.err.OperationalError(code, "x"))

    assert store.row_may_exist(mysql(2013))  # lost during the query: maybe committed
    assert store.row_may_exist(mysql(2006))  # gone away: maybe
    assert not store.row_may_exist(mysql(2003))  # never connected
    assert not store.row_may_exist(mysql(1045))  # refused at login
    assert not store.row_may_exist(mysql(1698))  # refused by the auth plugin
    assert not store.row_may_exist(mysql(1040))  # too many connections
    assert store.row_may_exist(CommitInDoubt("the COMMIT did not end"))
    assert not store.row_may_exist(CommitInDoubt("no turn to commit", sent=False))
    assert not store.row_may_exist(IntegrityError("INSERT", {}, Exception("dup")))
    assert store.row_may_exist(RuntimeError("anything else"))  # the sweeper sorts it out
