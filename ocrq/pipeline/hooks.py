"""A job's webhooks: one delivery attempt (recorded), and whether its final one went.

Called by the webhook task and the finishing paths (ocrq/pipeline/tasks.py) and the
sweeper; no Celery here.
"""

from __future__ import annotations

import json
import logging
import time

from ocrq.pipeline.state import Services
from ocrq.pipeline.work import delivery_ttl, flat_from_row, shape
from ocrq.storage import JobStatus
from ocrq.storage import jobs as store
from ocrq.webhooks import backoff_s, deliver, secret_for

log = logging.getLogger(__name__)


def _sent_key(job_id: str) -> str:
    return f"ocrq:webhook:sent:{job_id}"


def webhook_enqueued(state: Services, job_id: str) -> None:
    """Note that the job's final webhook is on its way (for as long as its status)."""
    state.redis.set(_sent_key(job_id), "1", ex=max(1, state.settings.result_cache_ttl_s))


def final_webhook_missing(state: Services, job_id: str) -> bool:
    """Whether the job ended (succeeded or failed) with a callback and no final webhook
    was ever enqueued for it (a cancel sends none)."""
    if state.redis.exists(_sent_key(job_id)):
        return False
    job = store.get_job(state.db, job_id)
    return (job is not None and bool(job.callback_url)
            and job.status in (str(JobStatus.SUCCEEDED), str(JobStatus.FAILED)))


def has_callback(state: Services, job_id: str) -> bool:
    """Whether the job has a callback_url: from its row, which outlives any cache entry."""
    job = store.get_job(state.db, job_id)
    return job is not None and bool(job.callback_url)


def webhook_attempt(state: Services, job_id: str, attempt: int,
                    task_id: str | None = None) -> float | None:
    """One delivery attempt, recorded. Returns the delay before the next, or None.

    Like a stage task, an attempt whose worker process died under it (killed
    while it waited on the receiver, say) is redelivered at most
    ``max_deliveries`` times; its next start records the give-up instead.
    """
    job = store.get_job(state.db, job_id)
    if job is None or not job.callback_url:
        return None
    s = state.settings
    record = {"job_id": job_id, "attempt": attempt, "url": job.callback_url}
    n = state.cache.delivery(task_id, delivery_ttl(s)) if task_id else 1
    try:
        if n > s.max_deliveries:
            log.error("webhook for job %s: attempt %d was lost %d times; giving up",
                      job_id, attempt, n - 1)
            store.record_delivery(state.db, **record, status_code=None, ok=False, duration_ms=0.0,
                                  error=f"worker_lost: the worker process sending attempt "
                                        f"{attempt} died {n - 1} times; giving up")
            return None
        doc = shape(flat_from_row(job, store.get_result(state.db, job_id)))
        body = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
        res = deliver(job.callback_url, body, secret_for(s, job.bid),
                      timeout_s=s.webhook_timeout_s, allow_private=s.allow_private_urls,
                      event_id=f"{job_id}.{job.status}")
        last = not res.ok and attempt >= s.webhook_max_attempts
        error = f"{res.error}; giving up after {attempt} attempts" if last else res.error
        store.record_delivery(state.db, **record, status_code=res.status_code, error=error,
                              ok=res.ok, duration_ms=round(res.duration_ms, 2))
        if res.ok or last:
            if last:
                log.warning("webhook for job %s gave up after %d attempts: %s", job_id, attempt,
                            res.error)
                state.cache.webhook_gave_up(job_id, time.time())  # the sweeper sends it again
            return None
        return backoff_s(attempt, s.webhook_backoff_s, s.webhook_backoff_max_s)
    finally:
        # This message ran to an end (a new message carries the next attempt); only a
        # process that died under it (no finally) leaves the counter for its redelivery.
        if task_id:
            state.cache.forget_deliveries([task_id])
