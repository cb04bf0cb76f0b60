"""Regression tests of the fixes the Redis blink forced, each on its own, against
real servers (a private Redis stopped and started, a SQLite file): the retry of a
step, the worker's broker channel closing after its Redis went away, the API
reading the row when the cache missed a job's end, and a 503 with Retry-After."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

from ocrq.chaos.servers import RedisServer, free_port
from ocrq.localcluster import LocalCluster
from ocrq.pipeline import kombu_fix, work
from ocrq.pipeline.retry import retry_io, transient
from ocrq.pipeline.state import Services
from ocrq.settings import Settings
from ocrq.storage import JobStatus
from ocrq.storage import jobs as store
from web import create_app

pytestmark = [pytest.mark.services, pytest.mark.faults, pytest.mark.timeout(120)]


@pytest.fixture
def redis_server(tmp_path: Path) -> RedisServer:
    cluster = LocalCluster(Settings(), log_dir=tmp_path)
    server = RedisServer(cluster, tmp_path / "redis")
    server.start()
    yield server
    cluster.stop(grace_s=5)


def test_a_step_is_retried_through_a_redis_restart(redis_server: RedisServer) -> None:
    client = redis_server.client()
    redis_server.stop()
    threading.Timer(1.0, redis_server.start).start()
    t0 = time.monotonic()
    assert retry_io(lambda: client.incr("n"), "test step", retry_for_s=30) == 1
    assert time.monotonic() - t0 >= 0.9  # it waited for the server, then ran once
    redis_server.stop()
    with pytest.raises(Exception) as err:  # past its cap the error goes through
        retry_io(lambda: client.incr("n"), "test step", retry_for_s=0.5)
    assert transient(err.value)


def test_a_non_transient_error_is_not_retried() -> None:
    calls = []

    def step() -> None:
        calls.append(1)
        raise ValueError("a bug, not a blink")

    with pytest.raises(ValueError):
        retry_io(step, "test step", retry_for_s=30)
    assert calls == [1]


@pytest.mark.parametrize("redis_up", [False, True])
def test_a_broker_channel_closes_after_its_connection_was_collected(
        redis_server: RedisServer, redis_up: bool) -> None:
    # The state a worker's consumer reached when Redis restarted (its log: close ->
    # restore_unacked_once -> _connparams -> AttributeError 'hostname', "Unrecoverable
    # error", the worker gone): the transport collected (client None, pools dropped)
    # while its channel still held an unacknowledged message.
    kombu_fix.install()
    conn = Connection(redis_server.url(0))
    channel = conn.default_channel
    conn.Producer(channel).publish({"x": 1}, routing_key="q",
                                   declare=[conn.SimpleQueue("q").queue])
    assert channel.basic_get("q", no_ack=False) is not None  # unacknowledged now
    if not redis_up:
        redis_server.stop()
    channel._pool = None
    channel.connection.client = None
    conn.maybe_close_channel(channel)  # unpatched kombu 5.7: AttributeError
    if redis_up:  # the close put the message back on its queue, as kombu means to
        assert redis_server.client().llen("q") == 1


def test_the_api_reads_the_row_when_the_cache_missed_the_end(tmp_path: Path) -> None:
    from ocrq.cli.serve import upgrade

    url = f"sqlite:///{tmp_path / 'ocrq.sqlite3'}"
    upgrade(url)
    services = Services(Settings(database_url=url, redis_url="redis://127.0.0.1:6379/14"))
    job, _ = store.create_job(services.db, id=f"blink{time.time_ns()}", bid="b", tid="t",
                              status="running", image_name="p.png", width=1, height=1,
                              batches_done=0)
    services.cache.put(job.id, {**work.flat_from_row(job, None),
                                "checked_at": time.time() - work.RECHECK_S})
    # A worker finished it while Redis was down: the row says failed, the cache running.
    store.finish_job(services.db, job.id, JobStatus.FAILED, error={"code": "x"})
    try:
        doc = work.document(services, job.id)
        assert doc is not None and doc["status"] == "failed"
        assert services.cache.status(job.id) == "failed"  # re-cached from the row
    finally:
        services.redis.delete(services.cache.key(job.id))


def test_the_api_answers_503_with_retry_after_while_redis_is_down(
        web_settings: Settings) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    app = create_app(web_settings.with_(redis_url=dead))
    resp = app.test_client().get("/v1/jobs/0123456789abcdef0123456789abcdef")
    assert resp.status_code == 503, resp.get_data(as_text=True)
    assert resp.get_json()["error"]["code"] == "unavailable"
    assert int(resp.headers["Retry-After"]) > 0


def test_after_redis_lost_its_data_finished_jobs_get_their_lost_webhooks(
        web_settings: Settings) -> None:
    from ocrq.pipeline import sweeper, sweeper_hooks
    from ocrq.pipeline.app import create_celery_app
    from ocrq.storage.models import utcnow

    services = Services(web_settings.with_(job_deadline_s=600))
    app = create_celery_app(services.settings)
    broker = services.redis  # broker and store share db 14 here
    keys = (sweeper_hooks.ALIVE, sweeper_hooks.RECOVER, sweeper_hooks.RESENT)

    def finished(status: JobStatus, callback: bool, attempted: bool = False) -> str:
        job_id = f"lost{time.time_ns()}"
        store.create_job(services.db, id=job_id, bid="b", tid="t", status="running",
                         image_name="p.png", width=1, height=1, batches_done=0,
                         callback_url="http://127.0.0.1:9/hook" if callback else None,
                         created_at=utcnow())
        store.finish_job(services.db, job_id, status, error=None)
        if attempted:
            store.record_delivery(services.db, job_id=job_id, attempt=1, url="u",
                                  status_code=500, ok=False, duration_ms=1.0)
        return job_id

    def hooks() -> list[str]:
        return [json.loads(base64.b64decode(json.loads(m)["body"]))[0][0]
                for m in broker.lrange(services.settings.queue_webhooks, 0, -1)]

    lost = finished(JobStatus.SUCCEEDED, callback=True)
    failed = finished(JobStatus.FAILED, callback=True)
    finished(JobStatus.SUCCEEDED, callback=False)  # no webhook to send
    finished(JobStatus.CANCELLED, callback=True)  # a cancel sends none
    finished(JobStatus.SUCCEEDED, callback=True, attempted=True)  # on its way already
    try:
        broker.delete(*keys)  # another test's sweeps on this db may have left them
        broker.set(sweeper_hooks.ALIVE, "1")  # Redis kept its data: nothing is looked for
        assert sweeper.sweep(services, app).webhooks == []
        broker.delete(*keys)  # ... and now it lost it (flushed)
        assert sorted(sweeper.sweep(services, app).webhooks) == sorted([lost, failed])
        assert sorted(hooks()) == sorted([lost, failed])
        assert sweeper.sweep(services, app).webhooks == []  # once per job
    finally:
        broker.delete(*keys)


def test_a_restore_lock_left_by_a_killed_worker_expires_soon(
        redis_server: RedisServer) -> None:
    # kombu restores unacknowledged messages under a Redis lock; a worker SIGKILLed
    # while holding it leaves it behind. Its default lifetime (300 s) stopped every
    # restore for five minutes in the soak and jobs ran into their deadline.
    from ocrq.pipeline.app import CeleryConfig

    options = CeleryConfig(Settings(broker_url=redis_server.url(0))).broker_transport_options
    conn = Connection(redis_server.url(0), transport_options=options)
    qos = conn.default_channel.qos
    client = redis_server.client()
    # What the killed holder did, and then nothing: acquired, never released.
    assert client.lock(qos.unacked_mutex_key, timeout=qos.unacked_mutex_expire).acquire(
        blocking=False)
    assert 0 < client.ttl(qos.unacked_mutex_key) <= 30
    conn.release()


def test_a_running_job_whose_message_kombu_lost_is_redriven_once(
        web_settings: Settings) -> None:
    # kombu popped its next message (BRPOP) and the worker was killed before recording
    # it as unacknowledged: nothing will ever run the job's next step.
    from datetime import timedelta

    from ocrq.pipeline import sweeper
    from ocrq.pipeline.app import create_celery_app
    from ocrq.storage.models import utcnow

    s = web_settings.with_(job_deadline_s=3600, visibility_timeout_s=30, task_time_limit_s=60)
    services = Services(s)
    app = create_celery_app(s)
    broker = services.redis

    def job(age_s: float, status: str = "running") -> str:
        job_id = f"stall{time.time_ns()}"
        at = utcnow() - timedelta(seconds=age_s)
        store.create_job(services.db, id=job_id, bid="default", tid="ocr", status=status,
                         stage="recognize" if status == "running" else None,
                         image_name="p.png", width=1, height=1, batches_done=0,
                         created_at=at, started_at=at if status == "running" else None)
        services.blobs.put(job_id, b"png")
        services.cache.add_tasks(job_id, [f"task-{job_id}"])  # enqueued, once
        return job_id

    def sent() -> list[str]:
        return [json.loads(m)["headers"]["task"]
                for m in broker.lrange(s.queue_gpu, 0, -1) + broker.lrange(s.queue_cpu, 0, -1)]

    stalled, busy = job(30 + 60 + 5), job(30 + 60 - 20)
    queued = job(30 + 60 + 5, "queued")
    # As old, but a step given back while the tensor server is down: waiting, not lost.
    given_back = job(30 + 60 + 5)
    services.cache.put(given_back, {"id": given_back, "status": "running",
                                    "waiting": {"reason": "tensor_server_down"}})
    try:
        # Nothing waits on the queues: the old queued job lost its first message too.
        assert sorted(sweeper.sweep(services, app).redriven) == sorted([stalled, queued])
        assert sent() == ["ocrq.detect", "ocrq.detect"]  # their first step again
        assert sweeper.sweep(services, app).redriven == []  # once
        assert store.get_job(services.db, busy).status == "running"  # not touched
        # With a message waiting, an old queued job may just be behind it: left alone.
        waiting = job(30 + 60 + 5, "queued")
        assert sweeper.sweep(services, app).redriven == []
        assert store.get_job(services.db, waiting).status == "queued"
    finally:
        for job_id in (stalled, busy, queued, given_back):
            broker.delete(f"ocrq:sweep:stalled:{job_id}", services.blobs.key_for(job_id),
                          services.cache.key(job_id))


def test_a_job_committed_while_the_database_lost_its_reply_is_redriven(
        web_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    # Soak at 9a3a3a5: MariaDB restarted during a submit's COMMIT. The row was
    # committed, the web got "Lost connection to MySQL server during query" and
    # answered 503; the client's retry (same Idempotency-Key) replayed the queued
    # job, which had no image (it was stored after the row) and the sweeper failed
    # it `lost`. Now an INSERT that raises stores the image with the job's IN_DOUBT
    # entry, and the job is re-driven from it.
    from datetime import timedelta

    import pymysql
    from sqlalchemy.exc import OperationalError

    from ocrq.pipeline import sweeper
    from ocrq.pipeline.app import create_celery_app
    from ocrq.storage.models import utcnow
    from tests.fixtures import encode, render_page

    s = web_settings.with_(redrive_after_s=5, job_deadline_s=600)
    real = store.create_job

    def committed_then_lost(*args: Any, **fields: Any) -> Any:
        real(*args, **fields)  # committed ...
        raise OperationalError("COMMIT", {}, pymysql.err.OperationalError(  # ... no reply
            2013, "Lost connection to MySQL server during query"))

    monkeypatch.setattr(store, "create_job", committed_then_lost)
    client = create_app(s).test_client()
    png = encode(render_page(["TOTAL 42.00"]))
    headers = {"Idempotency-Key": f"lost-reply-{time.time_ns()}"}

    def post() -> Any:
        return client.post("/v1/jobs", data={"image": (io.BytesIO(png), "p.png")},
                           content_type="multipart/form-data", headers=headers)

    resp = post()
    assert resp.status_code == 503, resp.get_data(as_text=True)
    services = Services(s)
    monkeypatch.setattr(store, "create_job", real)
    again = post()  # the client's retry: the committed job, replayed
    assert again.status_code == 200, again.get_data(as_text=True)
    job_id = again.get_json()["id"]
    assert again.get_json()["status"] == "queued"
    assert services.redis.exists(services.blobs.key_for(job_id))  # its image is there
    app = create_celery_app(s)
    later = utcnow() + timedelta(seconds=6)
    try:
        done = sweeper.sweep(services, app, now=later)
        assert done.redriven == [job_id] and done.lost == []
        queued = services.redis.lrange(s.queue_gpu, 0, -1) + services.redis.lrange(
            s.queue_cpu, 0, -1)
        assert [json.loads(m)["headers"]["task"] for m in queued] == ["ocrq.detect"]
        assert store.get_job(services.db, job_id).status == "queued"
    finally:
        services.redis.delete(services.blobs.key_for(job_id), services.cache.key(job_id))


def test_the_image_of_a_submit_the_database_refused_is_dropped(
        web_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    # The other side of storing the image in doubt: an INSERT cut off before it
    # committed (MariaDB going down mid-query) leaves an image no job will delete; the
    # sweeper does, once the database answers and shows no row for it. (A database
    # that cannot be reached at all stores nothing: test_intake_image_after_row.py.)
    from datetime import timedelta

    import pymysql
    from sqlalchemy.exc import OperationalError

    from ocrq.pipeline import jobs, sweeper
    from ocrq.pipeline.app import create_celery_app
    from ocrq.storage.models import utcnow
    from tests.fixtures import encode, render_page

    s = web_settings.with_(redrive_after_s=5, job_deadline_s=600)

    def refused(*_: Any, **__: Any) -> Any:
        # Cut off mid-INSERT, never committed: the row may exist as far as intake knows.
        raise OperationalError("INSERT", {}, pymysql.err.OperationalError(
            2013, "Lost connection to MySQL server during query"))

    monkeypatch.setattr(store, "create_job", refused)
    services = Services(s)
    before = set(services.redis.zrange(jobs.IN_DOUBT, 0, -1))
    resp = create_app(s).test_client().post(
        "/v1/jobs", data={"image": (io.BytesIO(encode(render_page(["TOTAL 1.00"]))), "p.png")},
        content_type="multipart/form-data")
    assert resp.status_code == 503, resp.get_data(as_text=True)
    [job_id] = {m.decode() for m in set(services.redis.zrange(jobs.IN_DOUBT, 0, -1)) - before}
    key = services.blobs.key_for(job_id)
    assert services.redis.exists(key)
    app = create_celery_app(s)
    try:
        sweeper.sweep(services, app)  # too soon: a COMMIT may still land
        assert services.redis.exists(key)
        # (>= 1: another test sharing this Redis database may have left one too)
        assert sweeper.sweep(services, app, now=utcnow() + timedelta(seconds=6)).orphans >= 1
        assert not services.redis.exists(key)
        assert services.redis.zscore(jobs.IN_DOUBT, job_id) is None  # looked at once
    finally:
        services.redis.delete(key)
        services.redis.zrem(jobs.IN_DOUBT, job_id)


def test_a_finisher_killed_after_its_commit_is_completed_by_the_next_run(
        web_settings: Settings) -> None:
    # Soak at a836797: a worker SIGKILLed right after reorder committed the job's end,
    # before the cache, the image and the webhook. The message came back (visibility
    # timeout) and ran again; the row refused the end and nothing else happened: no
    # webhook, the image left, the cache saying running.
    from datetime import timedelta

    from sqlalchemy import update

    from ocrq.storage import Job
    from ocrq.storage.models import utcnow

    services = Services(web_settings)

    def cut_off(age_s: float) -> str:
        job_id = f"cut{time.time_ns()}"
        job, _ = store.create_job(services.db, id=job_id, bid="b", tid="t", status="running",
                                  image_name="p.png", width=1, height=1, batches_done=0)
        services.blobs.put(job_id, b"png")
        services.cache.put(job_id, work.flat_from_row(job, None))
        # The first run's first half, then the kill: the row ended age_s ago.
        assert store.finish_job(services.db, job_id, JobStatus.SUCCEEDED,
                                document={"text": "A"}, batches_done=1, batches_total=1)
        with services.db.session() as s:
            s.execute(update(Job).where(Job.id == job_id).values(
                finished_at=utcnow() - timedelta(seconds=age_s)))
        return job_id

    old, fresh = cut_off(work.RESUME_AFTER_S + 20), cut_off(0)
    try:
        # The redelivered step ends the job again: the row refuses; the rest is done.
        assert work.finish(services, old, JobStatus.SUCCEEDED, document={"text": "A"})
        assert services.cache.status(old) == "succeeded"
        assert services.cache.get(old)["result"] == {"text": "A"}  # type: ignore[index]
        assert not services.redis.exists(services.blobs.key_for(old))
        assert store.get_result(services.db, old) == {"text": "A"}  # one result row
        assert not work.finish(services, old, JobStatus.SUCCEEDED)  # done once
        # Ended just now: its finisher may be in its second half; not this call's job.
        assert not work.finish(services, fresh, JobStatus.SUCCEEDED)
        assert services.redis.exists(services.blobs.key_for(fresh))
        # Another end (a late failure of a succeeded job) is refused as before.
        assert not work.finish(services, cut_off(60), JobStatus.FAILED, error={"code": "x"})
    finally:
        for job_id in (old, fresh):
            services.redis.delete(services.blobs.key_for(job_id), services.cache.key(job_id),
                                  f"ocrq:finish:resumed:{job_id}")


def test_a_late_copy_sends_the_final_webhook_a_killed_finisher_did_not(
        web_settings: Settings) -> None:
    # Soak at aba7c2e: reorder's worker was SIGKILLed after the job's end was cached
    # and before its webhook was sent; the redelivered reorder saw the job ended and
    # returned, and the job never got its final webhook.
    from ocrq.pipeline import tasks
    from ocrq.pipeline.app import create_celery_app

    services = Services(web_settings)
    app = create_celery_app(web_settings)
    queue = web_settings.queue_webhooks

    def ended(status: JobStatus, callback: bool = True) -> str:
        job_id = f"late{time.time_ns()}"
        store.create_job(services.db, id=job_id, bid="b", tid="t", status="running",
                         image_name="p.png", width=1, height=1, batches_done=0,
                         callback_url="http://127.0.0.1:9/hook" if callback else None)
        assert work.finish(services, job_id, status, error=None)
        return job_id

    def sent() -> list[str]:
        return [json.loads(base64.b64decode(json.loads(m)["body"]))[0][0]
                for m in services.redis.lrange(queue, 0, -1)]

    cut_off, cancelled = ended(JobStatus.SUCCEEDED), ended(JobStatus.CANCELLED)
    no_hook, sent_by_finisher = ended(JobStatus.SUCCEEDED, callback=False), ended(
        JobStatus.FAILED)
    try:
        assert tasks.resend_final_webhook(app, services, cut_off)  # the killed one's
        assert not tasks.resend_final_webhook(app, services, cut_off)  # once
        assert not tasks.resend_final_webhook(app, services, cancelled)  # a cancel: none
        assert not tasks.resend_final_webhook(app, services, no_hook)
        assert sent() == [cut_off]
        # A job whose finisher sent it: nothing more.
        tasks.enqueue_webhook(app, sent_by_finisher, queue, services)
        assert not tasks.resend_final_webhook(app, services, sent_by_finisher)
        assert sorted(sent()) == sorted([cut_off, sent_by_finisher])
    finally:
        for job_id in (cut_off, cancelled, no_hook, sent_by_finisher):
            services.redis.delete(f"ocrq:webhook:sent:{job_id}", services.cache.key(job_id))
