"""The intake's pre-built first message (ocrq/pipeline/publish.py) is the message
Celery itself writes for the same signature: both are pushed to a real Redis and
read back, and compared field by field (only kombu's random delivery tag differs).
tests/integration/test_intake_fast_path.py has a real worker run such a job."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from redis import Redis

from ocrq.pipeline import canvas, publish
from ocrq.pipeline.app import create_celery_app
from ocrq.pipeline.messages import JobContext
from ocrq.settings import Settings
from tests.conftest import WEB_REDIS_DB

QUEUES = {"rotate": "gpu", "detect": "gpu", "recognize": "gpu", "reorder": "cpu"}


def _ctx(queues: dict[str, str], **extra: Any) -> JobContext:
    return JobContext(job_id="j1", bid="b1", tid="ocr", image_key="ocrq:img:j1",
                      name="r.jpg", width=600, height=900, queues=queues, batch_lines=32,
                      callback=True, **extra)


@pytest.fixture
def web_settings() -> Iterator[Settings]:
    """Broker and cache in one Redis database (WEB_REDIS_DB), queues of this test's own."""
    url = f"redis://127.0.0.1:6379/{WEB_REDIS_DB}"
    prefix = f"pub-{uuid.uuid4().hex[:12]}-"
    yield Settings(broker_url=url, redis_url=url, queue_gpu=f"{prefix}gpu",
                   queue_cpu=f"{prefix}cpu", queue_webhooks=f"{prefix}webhooks")
    redis = Redis.from_url(url)
    for key in redis.scan_iter(match=f"*{prefix}*"):
        redis.delete(key)
    redis.close()


@pytest.fixture
def app(web_settings: Settings) -> Celery:
    return create_celery_app(web_settings)


def _queues(s: Settings) -> dict[str, str]:
    return {k: s.queue_gpu if v == "gpu" else s.queue_cpu for k, v in QUEUES.items()}


def _decoded(raw: bytes) -> dict[str, Any]:
    msg = json.loads(raw)
    msg["body"] = json.loads(base64.b64decode(msg["body"]))
    return dict(msg)


def _differences(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """Where two decoded messages differ (one level into headers and properties)."""
    out: dict[str, Any] = {}
    for part in ("headers", "properties"):
        a, b = ours.get(part, {}), theirs.get(part, {})
        out.update({f"{part}.{k}": (a.get(k), b.get(k)) for k in set(a) | set(b)
                    if a.get(k) != b.get(k)})
    out.update({k: (ours.get(k), theirs.get(k)) for k in set(ours) | set(theirs)
                if k not in ("headers", "properties") and ours.get(k) != theirs.get(k)})
    return out


@pytest.mark.parametrize("registered", [False, True], ids=["web", "tasks-imported"])
def test_the_built_message_is_celerys_own(app: Celery, web_settings: Settings,
                                          registered: bool) -> None:
    """As a web process sends it (the stage tasks not registered there: Celery's
    send_task) and as a process that registered them does (their time limits)."""
    s = web_settings
    broker = Redis.from_url(s.broker_url)
    sig, _ = canvas.start(app, _ctx(_queues(s), lexicon=("a", "b")))
    if registered:
        import ocrq.pipeline.tasks  # noqa: F401  the shared tasks, bound at finalize

        app.finalize(auto=True)
        sig.apply_async(ignore_result=True, argsrepr="(job j1)")  # Task.apply_async
    else:  # what Signature.apply_async does when the task is not registered here
        app.send_task(sig.task, args=sig.args, ignore_result=True, argsrepr="(job j1)",
                      **sig.options)
    pub = publish.publisher(app, s.redis_url)
    built = pub.message(sig, "(job j1)")
    assert built is not None and built[0] == s.queue_gpu
    pipe = broker.pipeline(transaction=False)
    assert pub.push(built, pipe)  # one Redis database here: it rides the pipeline
    pipe.execute()
    theirs, ours = (_decoded(m) for m in reversed(broker.lrange(s.queue_gpu, 0, -1)))
    assert theirs["properties"].pop("delivery_tag") != ours["properties"].pop("delivery_tag")
    assert ours == theirs, _differences(ours, theirs)
    assert ours["headers"]["task"] == "ocrq.detect" and ours["body"][0][0]["job_id"] == "j1"
    assert ours["body"][2]["errbacks"][0]["kwargs"] == {"job_id": "j1"}
    limits = [s.task_time_limit_s, s.task_time_limit_s - 30] if registered else [None, None]
    assert ours["headers"]["timelimit"] == limits


def test_what_is_not_one_plain_task_is_left_to_celery(app: Celery,
                                                      web_settings: Settings) -> None:
    s = web_settings
    pub = publish.publisher(app, s.redis_url)
    chain, _ = canvas.start(app, _ctx({**_queues(s), "rotate": s.queue_cpu}))
    pages, _ = canvas.start(app, _ctx(_queues(s), page_sizes=((10, 20), (30, 40))))
    assert pub.message(chain, "x") is None and pub.message(pages, "x") is None
    amqp = publish.FastPublisher(app, "amqp://guest@127.0.0.1//", s.redis_url)
    single, _ = canvas.start(app, _ctx(_queues(s)))
    assert amqp.message(single, "x") is None and pub.message(single, "x") is not None


def test_a_broker_in_another_database_of_the_server_rides_the_pipeline(
        app: Celery, web_settings: Settings) -> None:
    """The default settings (broker in database 0, cache in 1): the message is pushed to
    the broker's database by a script in the status pipeline, one round trip, and the
    pipeline's connection stays on the cache's database."""
    s = web_settings
    other = s.redis_url.rsplit("/", 1)[0] + "/13"
    pub = publish.FastPublisher(app, other, s.redis_url)
    sig, _ = canvas.start(app, _ctx(_queues(s)))
    built = pub.message(sig, "(job j1)")
    assert built is not None and pub.db == 13
    store = Redis.from_url(s.redis_url, single_connection_client=True)
    broker = Redis.from_url(other)
    probe = f"{s.queue_gpu}:probe"
    try:
        pipe = store.pipeline(transaction=False)
        assert pub.push(built, pipe)
        pipe.set(probe, b"1")  # after the script, on the same connection
        pipe.execute()
        assert _decoded(broker.rpop(s.queue_gpu))["headers"]["id"] == sig.id  # type: ignore[arg-type]
        assert store.llen(s.queue_gpu) == 0 and broker.llen(s.queue_gpu) == 0
        assert store.get(probe) == b"1" and broker.get(probe) is None
    finally:
        broker.delete(s.queue_gpu, probe)
        store.delete(probe)
        store.close()


@pytest.mark.parametrize(("broker", "store", "db"), [
    ("redis://h:6379/0", "redis://h:6379/1", 0),
    ("redis://h:6379", "redis://h:6379/1", 0),
    ("redis://:pw@h:6379/2", "redis://:pw@h:6379/1", 2),
    ("redis://h:6379/0", "redis://h:6380/1", None),  # another server
    ("redis://h:6379/0", "redis://:pw@h:6379/1", None),  # other credentials
    ("redis://h:6379/0", "rediss://h:6379/1", None),
    ("redis://h:6379/0?socket_timeout=1", "redis://h:6379/1", None),
    ("unix:///run/redis.sock?db=0", "unix:///run/redis.sock?db=1", None),
])
def test_which_brokers_share_the_stores_server(broker: str, store: str, db: int | None) -> None:
    assert publish.broker_db(broker, store) == db


def test_a_broker_on_another_server_gets_its_own_push(app: Celery,
                                                      web_settings: Settings) -> None:
    s = web_settings
    # Another address of the same server: the publisher cannot tell, so it sends alone.
    other = s.redis_url.replace("127.0.0.1", "localhost").rsplit("/", 1)[0] + "/13"
    pub = publish.FastPublisher(app, other, s.redis_url)
    sig, _ = canvas.start(app, _ctx(_queues(s)))
    built = pub.message(sig, "(job j1)")
    assert built is not None and pub.db is None
    store = Redis.from_url(s.redis_url)
    assert not pub.push(built, store.pipeline(transaction=False))
    pub.send(built)
    broker = Redis.from_url(other)
    try:
        assert _decoded(broker.rpop(s.queue_gpu))["headers"]["id"] == sig.id  # type: ignore[arg-type]
        assert store.llen(s.queue_gpu) == 0
    finally:
        broker.delete(s.queue_gpu)
