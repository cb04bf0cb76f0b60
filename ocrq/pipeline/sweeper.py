"""The sweeper: no job stays unfinished past its deadline, old jobs are purged.

Jobs normally end through their own tasks (success, a failure's errback, a time
limit, a cancel). The sweeper catches what those paths cannot see:

* **Overdue.** A job still ``queued`` or ``running`` ``OCRQ_JOB_DEADLINE_S`` after
  it was created is failed with ``deadline_exceeded``. Examples: the database was
  down when the job should have finished, or every message of the job was lost
  (the broker's Redis was flushed). A task of the job that turns up later sees
  the job ended and does nothing.
* **Abandoned at intake.** A job still ``queued`` ``OCRQ_REDRIVE_AFTER_S`` after it
  was created, with no task ever recorded for it, was left by a web process that
  died between writing the row and enqueueing the job, or whose INSERT committed
  while the database's reply was lost (the client got a 503). Intake stores the
  image in the pipeline that enqueues the job, right after the row, and at once
  when the INSERT raised (the reply lost), so the latter still has it in Redis,
  and the job is re-driven: its first tasks are built and sent, as intake would
  have done. Without its image (a web process that died between its INSERT and
  that pipeline; expired, flushed), nothing can ever run the job: it is failed
  with ``lost`` at once, and its Idempotency-Key is freed (a retry makes a new
  job, as for a job intake failed itself). Only jobs younger than the task list's TTL
  (``OCRQ_RESULT_CACHE_TTL_S``) and the deadline are re-driven. After that, a
  missing task list proves nothing, and the deadline decides.
* **Images without a row.** A submit whose INSERT failed (the database down or
  restarting) leaves its image and its id in ``IN_DOUBT``; once the database
  answers, ``OCRQ_REDRIVE_AFTER_S`` later, the image of an id with no row is
  deleted (a row means the INSERT committed after all: the rule above runs the job).
* **Lost while running.** A job still ``running`` ``OCRQ_REDRIVE_AFTER_S`` after it
  was created whose image is gone from Redis (flushed) is failed with ``lost``.
* **Stalled.** A job running longer than a visibility timeout plus a task's time
  limit since it started, or queued that long while nothing waits on the stage
  queues, with its image, is re-driven once (a message kombu lost).
* **Webhooks Redis lost** (flushed with their queue): after a data loss, jobs
  finished in the last 15 minutes with a callback and no attempt get theirs.
* **Webhooks that gave up** (receiver down past the retry window) start a new
  round ``OCRQ_WEBHOOK_REDRIVE_AFTER_S`` later, up to ``OCRQ_WEBHOOK_ROUNDS`` rounds.
* **Retention.** Every ``OCRQ_PURGE_INTERVAL_S``, finished jobs older than
  ``OCRQ_RESULT_RETENTION_DAYS`` are deleted in batches of ``OCRQ_PURGE_BATCH``,
  and bad cases older than ``OCRQ_BADCASE_RETENTION_DAYS``.

A failed job is finished the same way :func:`ocrq.pipeline.tasks.fail_job` finishes
one: the database first, then the cache, and then the webhook when the job's row
has a callback. Every worker runs :func:`tick` after each node heartbeat
(workers/lifecycle.py). A Redis lock per interval lets one worker sweep and the
others skip. So a job is never left unfinished longer than its deadline, plus one
sweep interval, plus one heartbeat.

Each sweep does a bounded amount of work: ``PER_SWEEP`` jobs and ``PURGE_BATCHES``
batches. The sweep runs on the heartbeat thread, and a long sweep would make the
worker look dead. When there is more to do, the lock is released, so the next
heartbeat continues the work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from celery import Celery
from redis import Redis

from ocrq.pipeline import canvas, state, work
from ocrq.pipeline import sweeper_hooks as hooks
from ocrq.pipeline.jobs import IN_DOUBT, first_context
from ocrq.pipeline.state import Services
from ocrq.pipeline.tasks import enqueue_webhook
from ocrq.settings import Settings
from ocrq.storage import Job, JobStatus
from ocrq.storage import badcases as kept
from ocrq.storage import jobs as store
from ocrq.storage.models import utcnow

log = logging.getLogger(__name__)
SWEEP_LOCK = "ocrq:sweep:lock"
PURGE_LOCK = "ocrq:sweep:purge"
PER_SWEEP = 200  # jobs failed or re-driven per sweep (the heartbeat thread waits on it)
PURGE_BATCHES = 10  # batches of OCRQ_PURGE_BATCH per sweep


@dataclass
class Sweep:
    """What one sweep did (job ids), for logs and tests."""

    overdue: list[str] = field(default_factory=list)  # failed: deadline_exceeded
    lost: list[str] = field(default_factory=list)  # failed: lost (queued, image gone)
    redriven: list[str] = field(default_factory=list)
    webhooks: list[str] = field(default_factory=list)  # gave up earlier: sent again
    purged: int = 0
    badcases_purged: int = 0
    orphans: int = 0  # images of submits that never got a row, deleted
    more: bool = False  # work was left for the next sweep

    def __bool__(self) -> bool:
        return bool(self.overdue or self.lost or self.redriven or self.purged
                    or self.badcases_purged or self.orphans)


def sweep(services: Services, app: Celery, now: datetime | None = None,
          purge: bool = False) -> Sweep:
    """One sweep, without any lock: the overdue and abandoned jobs, then (``purge``)
    one bounded share of the retention purge."""
    s = services.settings
    now = now or utcnow()
    out = Sweep()
    # First: a job failed below has no attempt yet, and its webhook is on its way.
    out.webhooks = hooks.after_data_loss(services, app, now, PER_SWEEP)
    for job in store.overdue(services.db, now - timedelta(seconds=s.job_deadline), PER_SWEEP):
        if _fail(services, app, job, "deadline_exceeded", _overdue_message(job, s.job_deadline)):
            out.overdue.append(job.id)
    out.lost += _lost_while_running(services, app, now - timedelta(seconds=s.redrive_after_s))
    out.redriven += _stalled(services, app, now)
    out.webhooks += hooks.redrive_webhooks(services, app, PER_SWEEP)
    # The job's task list lives this long: an older job without one may have had tasks.
    window = min(s.job_deadline, s.result_cache_ttl_s)
    queued = store.queued_between(services.db, now - timedelta(seconds=window),
                                  now - timedelta(seconds=s.redrive_after_s), PER_SWEEP)
    for job in queued:
        if services.cache.tasks(job.id):
            continue  # enqueued: running, or waiting in a queue; the deadline decides
        if not services.redis.exists(services.blobs.key_for(job.id)):
            message = ("this job was never enqueued (its web process stopped after "
                       "recording it) and its image is not stored")
            if _fail(services, app, job, "lost", message):
                out.lost.append(job.id)
                _release_key(services, job.id)
        elif _redrive(services, app, job):
            out.redriven.append(job.id)
    out.orphans = _images_without_row(services, now)
    out.more = (len(out.overdue) >= PER_SWEEP or len(queued) >= PER_SWEEP
                or out.orphans >= PER_SWEEP)
    if purge:
        out.purged = store.purge(services.db, s.result_retention_days, now,
                                 batch=s.purge_batch, max_batches=PURGE_BATCHES)
        out.more = out.more or out.purged >= PURGE_BATCHES * max(1, s.purge_batch)
        # Bad cases keep their own retention (OCRQ_BADCASE_RETENTION_DAYS).
        out.badcases_purged = kept.purge(services.db, s.badcase_retention_days, now,
                                         batch=s.purge_batch, max_batches=PURGE_BATCHES)
        out.more = out.more or out.badcases_purged >= PURGE_BATCHES * max(1, s.purge_batch)
    return out


def _release_key(services: Services, job_id: str) -> None:
    """Nothing ran: a retry with the same Idempotency-Key gets a new job. A failure
    here must not end the sweep (the job is no longer queued: no later sweep comes
    back to it), so it is logged: the key then replays the failed job."""
    try:
        store.release_idempotency_key(services.db, job_id)
    except Exception:
        log.exception("sweep: could not free the Idempotency-Key of lost job %s", job_id)


def _images_without_row(services: Services, now: datetime) -> int:
    """Submits whose INSERT failed: the image of an id without a row is deleted (the
    job never existed; the client got a 503). Looked at ``OCRQ_REDRIVE_AFTER_S`` after
    the failure, so a COMMIT still under way has landed."""
    r, s = services.redis, services.settings
    before = now.replace(tzinfo=UTC).timestamp() - s.redrive_after_s
    done = 0
    for raw in r.zrangebyscore(IN_DOUBT, 0, before, start=0, num=PER_SWEEP):
        job_id = raw.decode() if isinstance(raw, bytes) else str(raw)
        if store.get_job(services.db, job_id) is None:
            services.blobs.delete(services.blobs.key_for(job_id))
            done += 1
        r.zrem(IN_DOUBT, job_id)
    return done


def _lost_while_running(services: Services, app: Celery, before: datetime) -> list[str]:
    """Running jobs whose image is gone: their broker lost everything (a flushed Redis,
    a failover without its data). Nothing can run their steps again; without this
    they would wait for their deadline. A job that ends writes its row before it
    deletes its image, so a row still running without an image is never a success.
    """
    lost = []
    for job in store.overdue(services.db, before, PER_SWEEP):
        if job.status != JobStatus.RUNNING or services.redis.exists(
                services.blobs.key_for(job.id)):
            continue
        message = (f"this job's image and messages were lost from Redis while it ran "
                   f"(in {job.stage or '?'}): the broker was flushed or lost its data")
        if _fail(services, app, job, "lost", message):
            lost.append(job.id)
    return lost


def _stalled(services: Services, app: Celery, now: datetime) -> list[str]:
    """Running jobs started longer ago than a visibility timeout plus a task's time
    limit, image still there: re-driven from their first step, once.

    kombu's Redis transport pops a message (BRPOP) before it records it as
    unacknowledged; a worker killed in between loses it for good (seen in the soak:
    LPUSH, RPOP, nothing else in the AOF), and its job would wait for its deadline.
    By then every message of a healthy job has run or come back (a lost delivery
    returns after the visibility timeout, a step ends within its limit), so a second
    run costs at most work: the first to finish wins, the other finds the job ended.
    """
    s = services.settings
    started_before = now - timedelta(seconds=s.visibility_timeout + s.task_time_limit_s)
    out = []
    idle = _stage_queues_empty(s)
    for job in store.overdue(services.db, started_before, PER_SWEEP):
        # A queued job that old lost its first message only if nothing waits on the
        # stage queues (else it may be waiting behind them: the deadline decides).
        stalled = (job.started_at is not None and job.started_at < started_before) \
            if job.status == JobStatus.RUNNING else idle
        # A step given back (its backend down) holds its message for a later try: that
        # job is waiting, not stalled (pipeline/retry.py bounds the wait).
        stalled = stalled and not (job.status == JobStatus.RUNNING
                                   and services.cache.waiting(job.id))
        if (not stalled or not services.redis.exists(services.blobs.key_for(job.id))
                or not services.redis.set(f"ocrq:sweep:stalled:{job.id}", "1", nx=True,
                                          ex=max(1, s.job_deadline))):
            continue
        if _redrive(services, app, job):
            out.append(job.id)
    return out


def _stage_queues_empty(s: Settings) -> bool:
    """Whether no message waits on the gpu and cpu queues (a Redis broker's lists)."""
    if not s.broker_url.startswith("redis"):
        return False
    broker = Redis.from_url(s.broker_url, socket_timeout=5)
    try:
        return not any(broker.llen(q) for q in (s.queue_gpu, s.queue_cpu))
    finally:
        broker.close()


def redeclare_queues(app: Celery) -> None:
    """Declare the queues again on a Redis broker (one SADD each).

    kombu keeps each exchange's bindings in a Redis key; a flushed broker loses
    them, and every message published after it is dropped without an error until
    someone declares the queues again. Run after every heartbeat.
    """
    if not str(app.conf.broker_url).startswith("redis"):
        return  # AMQP brokers keep their bindings
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for queue in app.amqp.queues.values():
            queue(channel).declare()


def tick(services: Services, app: Celery, owner: str = "") -> Sweep | None:
    """Sweep if this interval is not yet someone else's; None when skipped."""
    s = services.settings
    if s.sweep_interval_s <= 0:
        return None
    beat = int(max(1.0, s.heartbeat_ttl_s / 3))
    # The lock expires one heartbeat early: the beat that follows it lands within
    # the interval, not up to a heartbeat after it.
    if not _claim(services.redis, SWEEP_LOCK, max(1, s.sweep_interval_s - beat), owner):
        return None
    purge = s.purge_interval_s > 0 and _claim(services.redis, PURGE_LOCK,
                                               s.purge_interval_s, owner)
    done = sweep(services, app, purge=purge)
    if done:
        log.warning("sweep: %d overdue and %d lost jobs failed, %d re-driven, %d purged",
                    len(done.overdue), len(done.lost), len(done.redriven), done.purged)
    if done.more:  # the next heartbeat goes on where this one stopped
        services.redis.delete(SWEEP_LOCK, *([PURGE_LOCK] if purge else []))
    return done


def after_beat(app: Celery, rescuer: Callable[[], None] | None, owner: str
               ) -> Callable[[], None]:
    """What a node runs after each heartbeat: the queues declared again (a flushed
    Redis broker), the broker rescue (if any), then a tick.

    Each is logged on its own, so one failing (the database down) never stops the other.
    """
    def run() -> None:
        try:
            redeclare_queues(app)
        except Exception as exc:
            log.warning("queues not declared again: %s", exc)
        if rescuer is not None:
            try:
                rescuer()
            except Exception as exc:
                log.warning("rescue of stranded messages failed: %s", exc)
        try:
            tick(state.get_state(), app, owner)
        except Exception as exc:
            log.warning("sweep failed: %s", exc)

    return run


def _claim(redis: Redis, key: str, ttl_s: int, owner: str) -> bool:
    return bool(redis.set(key, owner or "?", nx=True, ex=max(1, int(ttl_s))))


def _overdue_message(job: Job, deadline_s: int) -> str:
    where = f" (in {job.stage})" if job.stage else ""
    return (f"this job did not finish within its {deadline_s} s deadline: it was still "
            f"{job.status}{where}; its messages were lost or its worker stopped answering")


def _fail(services: Services, app: Celery, job: Job, code: str, message: str) -> bool:
    """fail_job's path for a job at hand: finish it, then its webhook if its row has one."""
    if not work.finish(services, job.id, JobStatus.FAILED,  # short: the heartbeat waits
                       error={"code": code, "message": message}, retry_for_s=5):
        return False  # it ended meanwhile
    log.warning("job %s failed by the sweeper: %s", job.id, code)
    if job.callback_url:
        enqueue_webhook(app, job.id, services.settings.queue_webhooks, services)
    return True


def _redrive(services: Services, app: Celery, job: Job) -> bool:
    """Build and send the job's first tasks, as intake would have (pipeline.jobs)."""
    try:
        plan = services.plans.resolve(job.bid, job.tid)
        ctx = first_context(services, plan, job, services.router.queues(plan))
        if services.cache.get(job.id) is None:
            services.cache.put(job.id, work.flat_from_row(job, None))
        sig, ids = canvas.start(app, ctx)
        services.cache.add_tasks(job.id, ids)  # before sending: never re-driven twice
        sig.apply_async()
    except Exception as exc:  # no live worker for a step, plan gone: the deadline decides
        log.warning("job %s not re-driven: %s", job.id, exc)
        return False
    log.warning("job %s re-driven: it was never enqueued", job.id)
    return True


