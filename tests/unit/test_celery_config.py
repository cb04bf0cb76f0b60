"""The Celery settings derived from ocrq's (one config class, no broker needed)."""

from __future__ import annotations

from ocrq.pipeline.app import CeleryConfig
from ocrq.settings import Settings


def test_visibility_timeout_outlasts_every_task_and_webhook_wait():
    s = Settings()
    opts = CeleryConfig(s).broker_transport_options
    # Longer than a task may run and than a webhook retry may wait for its ETA...
    assert opts["visibility_timeout"] > max(s.task_time_limit_s, s.webhook_backoff_max_s)
    # ... but a lost worker's message comes back in minutes, not hours.
    assert opts["visibility_timeout"] <= 30 * 60
    assert opts["unacked_restore_throttle"] == 1  # swept every 10 s
    longer = Settings(task_time_limit_s=1800)
    assert CeleryConfig(longer).broker_transport_options["visibility_timeout"] == 2 * 1800 + 60
    fixed = Settings.from_env(environ={"OCRQ_VISIBILITY_TIMEOUT_S": "90"})
    assert CeleryConfig(fixed).broker_transport_options["visibility_timeout"] == 90
    assert CeleryConfig(s).task_acks_late and CeleryConfig(s).task_reject_on_worker_lost
