"""The Celery app, configured in one place from :class:`Settings`."""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from ocrq.pipeline import kombu_fix
from ocrq.settings import Settings


class CeleryConfig:
    """Every Celery setting ocrq uses (time limits, acks, serialisation, queues)."""

    def __init__(self, settings: Settings) -> None:
        s = settings
        self.broker_url = s.broker_url
        # Chords need a result backend; Redis keeps the join counters and batch results.
        self.result_backend = s.redis_url
        self.result_expires = s.image_ttl_s
        self.task_serializer = "json"
        self.result_serializer = "json"
        self.accept_content = ["json"]
        # Each queue its own direct exchange and routing key: a Queue without them
        # is bound to the default exchange (named after the default queue) on
        # AMQP brokers, and a message for one queue is then copied into all three.
        self.task_queues = [Queue(q, Exchange(q, type="direct"), routing_key=q)
                            for q in (s.queue_gpu, s.queue_cpu, s.queue_webhooks)]
        self.task_default_queue = s.queue_cpu
        self.task_default_exchange = s.queue_cpu
        self.task_default_routing_key = s.queue_cpu
        self.task_time_limit = s.task_time_limit_s
        self.task_soft_time_limit = max(1, s.task_time_limit_s - 30)
        # Stage tasks ack after they ran (a killed worker's task is redelivered) and are
        # rejected, not acked, when the worker process dies under them.
        self.task_acks_late = True
        self.task_reject_on_worker_lost = True
        # Redis redelivers a message nobody acknowledged after this (its worker is
        # gone): longer than any task may run or a webhook retry may wait (ETA),
        # else a message still in good hands would run twice. Workers sweep for
        # such messages every 10 s (kombu's default: every 100 s).
        # kombu restores those under a Redis lock that lives 300 s by default: a worker
        # SIGKILLed while holding it (the soak's kills did) stopped every restore for
        # five minutes, and jobs ran into their deadline. A scan takes far less than 30 s.
        self.broker_transport_options = {"visibility_timeout": s.visibility_timeout,
                                         "unacked_restore_throttle": 1,
                                         "unacked_mutex_expire": 30}
        self.result_backend_transport_options = {"retry_policy": {"timeout": 5.0}}
        # A publish (next stage, chord, webhook) rides out a broker restart of a few
        # seconds instead of failing its job: Celery's default gives up after ~0.6 s.
        self.task_publish_retry_policy = {"max_retries": 30, "interval_start": 0.1,
                                          "interval_step": 0.5, "interval_max": 2.0}
        self.broker_connection_retry_on_startup = True
        self.worker_prefetch_multiplier = 1  # GPU workers must not hoard; CPU use the same
        # Task events cost a publish per state change; Flower switches them on at
        # run time (its enable_events broadcast), so they are off unless watched.
        self.worker_send_task_events = False
        self.worker_hijack_root_logger = False
        # Only the tasks: worker process wiring (signals) is connected by workers/,
        # in the order workers/lifecycle.py documents.
        self.include = ["ocrq.pipeline.tasks"]

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def create_celery_app(settings: Settings, name: str = "ocrq") -> Celery:
    kombu_fix.install()  # a broker restart must not end the worker (see the module)
    app = Celery(name)
    app.config_from_object(CeleryConfig(settings).as_dict())
    app.ocrq_settings = settings  # type: ignore[attr-defined]
    return app
