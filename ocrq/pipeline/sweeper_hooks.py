"""The sweeper's webhook rules (see ocrq/pipeline/sweeper.py): the webhooks a data
loss of Redis took with it, and those that gave up while their receiver was down."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from celery import Celery

from ocrq.pipeline.state import Services
from ocrq.pipeline.tasks import enqueue_webhook
from ocrq.storage import jobs as store

log = logging.getLogger("ocrq.pipeline.sweeper")
ALIVE = "ocrq:sweep:alive"  # no TTL: missing means Redis lost its data
RECOVER, RESENT = "ocrq:sweep:recover", "ocrq:sweep:resent"
RECOVER_S = 120  # sweeps in this long after a data loss look for lost webhooks
RECOVER_WINDOW_S = 900  # jobs finished this long before it


def after_data_loss(services: Services, app: Celery, now: datetime, limit: int) -> list[str]:
    """Webhooks whose messages Redis lost (flushed, failed over without its data).

    A key without a TTL marks a Redis that kept its data since the last sweep; when
    it is missing, for the next few sweeps every job finished in the last
    ``RECOVER_WINDOW_S`` with a callback and no attempt recorded gets its webhook
    (once per job). Only then: the query reads recent rows, not every sweep.
    """
    r = services.redis
    if r.set(ALIVE, "1", nx=True):  # it was missing (or this Redis is new)
        r.set(RECOVER, now.isoformat(), ex=RECOVER_S)
    detected = r.get(RECOVER)
    if detected is None:
        return []
    # A webhook sent after the loss was seen went to the live Redis (its queues were
    # declared again before this tick): only jobs that finished before are in doubt.
    before = datetime.fromisoformat(detected.decode())  # type: ignore[union-attr]
    s = services.settings
    window = timedelta(seconds=RECOVER_WINDOW_S)
    out = []
    for job in store.unreported(services.db, now - window - timedelta(seconds=s.job_deadline),
                                now - window, before, limit):
        if r.sadd(RESENT, job.id):
            r.expire(RESENT, RECOVER_S)
            enqueue_webhook(app, job.id, s.queue_webhooks, services)
            out.append(job.id)
    if out:
        log.warning("sweep: Redis lost its data; %d webhooks sent again", len(out))
    return out


def redrive_webhooks(services: Services, app: Celery, limit: int) -> list[str]:
    """Webhooks that gave up ``OCRQ_WEBHOOK_REDRIVE_AFTER_S`` ago start a new round
    of attempts, up to ``OCRQ_WEBHOOK_ROUNDS`` rounds: a receiver down for longer
    than one round's retry window still gets every final webhook once it is back."""
    s = services.settings
    if s.webhook_rounds <= 1:
        return []
    out = []
    for job_id in services.cache.webhooks_gave_up_before(
            time.time() - s.webhook_redrive_after_s, limit):
        n = services.cache.webhook_round(job_id, s.webhook_rounds * s.webhook_redrive_after_s
                                         + 86400)
        if n > s.webhook_rounds:
            log.warning("webhook for job %s: %d rounds given up; not sent again", job_id, n - 1)
            continue
        enqueue_webhook(app, job_id, s.queue_webhooks, services)
        out.append(job_id)
    if out:
        log.warning("sweep: %d webhooks that gave up sent again", len(out))
    return out
