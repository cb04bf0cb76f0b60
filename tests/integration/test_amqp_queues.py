"""On an AMQP broker (RabbitMQ), a message sent to one queue lands in that queue only.

Each queue is declared with its own direct exchange and routing key
(ocrq/pipeline/app.py). Declared without them, kombu binds every queue to the
default exchange under one key, and a message for ``gpu`` was copied into
``cpu`` and ``webhooks`` as well: every step ran three times.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator

import pytest
from celery import Celery
from kombu import Connection, Producer

from ocrq.names import Task
from ocrq.pipeline.app import create_celery_app
from ocrq.settings import Settings

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


def _rabbitmq_answers() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
        return True
    except OSError:
        return False


pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(not _rabbitmq_answers(), reason="no RabbitMQ on 127.0.0.1:5672"),
]


@pytest.fixture
def app() -> Iterator[Celery]:
    tag = secrets.token_hex(4)
    s = Settings(broker_url=AMQP_URL, queue_gpu=f"t{tag}.gpu", queue_cpu=f"t{tag}.cpu",
                 queue_webhooks=f"t{tag}.webhooks")
    app = create_celery_app(s)
    with Connection(AMQP_URL) as conn:
        channel = conn.channel()
        # The queues as Celery declares them (a worker at start, a producer on publish).
        for queue in app.amqp.queues.values():
            queue.bind(channel).declare()
        yield app
        for queue in app.amqp.queues.values():
            bound = queue.bind(channel)
            bound.delete()
            if bound.exchange.name:
                bound.exchange.delete()


def _depths(app: Celery) -> dict[str, int]:
    with Connection(AMQP_URL) as conn:
        channel = conn.channel()
        return {q.name: q.bind(channel).queue_declare(passive=True).message_count
                for q in app.amqp.queues.values()}


def test_a_message_for_one_queue_reaches_that_queue_only(app: Celery) -> None:
    s = app.ocrq_settings  # type: ignore[attr-defined]
    gpu, cpu, hooks = s.queue_gpu, s.queue_cpu, s.queue_webhooks
    app.signature(Task.DETECT.value, args=({"job_id": "x"},), queue=gpu).apply_async()
    for job in ("x", "y"):
        app.signature(Task.REORDER.value, args=([], {"job_id": job}), queue=cpu).apply_async()
    for job in ("x", "y", "z"):
        app.signature(Task.WEBHOOK.value, args=(job, 1), queue=hooks).apply_async()
    assert _depths(app) == {gpu: 1, cpu: 2, hooks: 3}


def test_a_message_on_a_queues_exchange_and_key_reaches_that_queue_only(app: Celery) -> None:
    """What the bindings themselves say (any AMQP producer, not only Celery's own)."""
    with Connection(AMQP_URL) as conn:
        producer = Producer(conn.channel())
        for n, queue in enumerate(app.amqp.queues.values(), start=1):
            for _ in range(n):
                producer.publish({"n": n}, exchange=queue.exchange,
                                 routing_key=queue.routing_key, serializer="json")
    s = app.ocrq_settings  # type: ignore[attr-defined]
    assert _depths(app) == {s.queue_gpu: 1, s.queue_cpu: 2, s.queue_webhooks: 3}
