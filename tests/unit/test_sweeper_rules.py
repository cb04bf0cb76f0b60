"""The sweeper's decisions on a real SQLite file, real Redis and a real broker queue.

Jobs are written the way intake writes them (ocrq.storage) with creation times in
the past; each test then runs one sweep and reads back the rows, the cache and
the messages the sweep sent.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from celery import Celery
from redis import Redis

from ocrq.pipeline import state, sweeper, work
from ocrq.pipeline.app import create_celery_app
from ocrq.pipeline.state import REDIS_IO_TIMEOUT_S, Services
from ocrq.settings import Settings
from ocrq.storage import JobStatus
from ocrq.storage import jobs as store
from ocrq.storage.db import DB_CONNECT_TIMEOUT_S, DB_IO_TIMEOUT_S
from ocrq.storage.group_commit import WAIT_S
from ocrq.storage.models import utcnow

DEADLINE, REDRIVE = 600, 60


@pytest.fixture
def services(web_settings: Settings) -> Iterator[Services]:
    s = web_settings.with_(job_deadline_s=DEADLINE, redrive_after_s=REDRIVE,
                           result_cache_ttl_s=300, sweep_interval_s=30, heartbeat_ttl_s=3)
    yield Services(s)


@pytest.fixture
def app(services: Services) -> Celery:
    return create_celery_app(services.settings)


def add_job(services: Services, status: JobStatus, age_s: float, *, callback: bool = False,
            blob: bool = False, tasks: bool = False, stage: str | None = None) -> str:
    job_id = secrets.token_hex(16)
    store.create_job(services.db, id=job_id, bid="default", tid="ocr", status=str(status),
                     callback_url="http://127.0.0.1:9/hook" if callback else None,
                     image_name="page.png", width=100, height=50, batches_done=0, stage=stage,
                     created_at=utcnow() - timedelta(seconds=age_s))
    if blob:
        services.blobs.put(job_id, b"not decoded by the sweeper")
    if tasks:
        services.cache.add_tasks(job_id, [f"task-{job_id}"])
    return job_id


def messages(services: Services, queue: str) -> list[dict[str, Any]]:
    """The task messages waiting on ``queue``: task name, id and arguments."""
    broker = Redis.from_url(services.settings.broker_url)
    out = []
    for raw in broker.lrange(queue, 0, -1):  # type: ignore[union-attr]
        env = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(env["body"]))
        out.append({"task": env["headers"]["task"], "id": env["headers"]["id"], "args": args})
    return out


def status(services: Services, job_id: str) -> tuple[str, str | None]:
    job = store.get_job(services.db, job_id)
    assert job is not None
    return job.status, (job.error or {}).get("code")


def test_overdue_jobs_fail_with_deadline_exceeded_and_their_webhook(
        services: Services, app: Celery) -> None:
    s = services.settings
    running = add_job(services, JobStatus.RUNNING, DEADLINE + 5, callback=True, stage="detect")
    queued = add_job(services, JobStatus.QUEUED, DEADLINE + 5, tasks=True)
    # Running jobs have their image (one without it was lost: failed at once, 'lost').
    young = add_job(services, JobStatus.RUNNING, DEADLINE - 30, callback=True, blob=True)
    done = add_job(services, JobStatus.SUCCEEDED, DEADLINE * 10)
    out = sweeper.sweep(services, app)
    assert sorted(out.overdue) == sorted([running, queued])
    assert status(services, running) == ("failed", "deadline_exceeded")
    assert status(services, queued) == ("failed", "deadline_exceeded")
    assert status(services, young) == ("running", None)
    assert status(services, done) == ("succeeded", None)
    error = store.get_job(services.db, running).error  # type: ignore[union-attr]
    assert "600 s deadline" in error["message"] and "running (in detect)" in error["message"]
    # One webhook, for the job with a callback, on the webhooks queue (fail_job's path).
    hooks = messages(services, s.queue_webhooks)
    assert [(m["task"], m["args"]) for m in hooks] == [("ocrq.webhook", [running, 1])]
    assert work.document(services, running)["status"] == "failed"  # type: ignore[index]
    assert not sweeper.sweep(services, app)  # nothing left: the next sweep does nothing


def test_abandoned_queued_job_with_its_image_is_redriven_once(
        services: Services, app: Celery) -> None:
    s = services.settings
    job_id = add_job(services, JobStatus.QUEUED, REDRIVE + 5, blob=True, callback=True)
    out = sweeper.sweep(services, app)
    assert out.redriven == [job_id] and not out.overdue and not out.lost
    assert status(services, job_id) == ("queued", None)
    sent = messages(services, s.queue_gpu) + messages(services, s.queue_cpu)
    assert len(sent) == 1, sent
    ctx = sent[0]["args"][0]
    assert sent[0]["task"] in ("ocrq.detect", "ocrq.rotate")
    assert ctx["job_id"] == job_id and ctx["image_key"] == services.blobs.key_for(job_id)
    assert ctx["name"] == "page.png" and ctx["callback"] is True
    assert services.cache.tasks(job_id) == [sent[0]["id"]]  # recorded: never re-driven twice
    assert services.cache.status(job_id) == "queued"  # pollers see it from Redis again
    assert not sweeper.sweep(services, app)
    assert len(messages(services, s.queue_gpu) + messages(services, s.queue_cpu)) == 1


def test_abandoned_queued_job_without_its_image_is_lost(
        services: Services, app: Celery) -> None:
    job_id = add_job(services, JobStatus.QUEUED, REDRIVE + 5, callback=True)
    out = sweeper.sweep(services, app)
    assert out.lost == [job_id] and not out.redriven
    assert status(services, job_id) == ("failed", "lost")
    hooks = messages(services, services.settings.queue_webhooks)
    assert [m["args"] for m in hooks] == [[job_id, 1]]


def test_queued_jobs_the_sweeper_must_leave_alone(services: Services, app: Celery) -> None:
    s = services.settings
    fresh = add_job(services, JobStatus.QUEUED, REDRIVE - 20, blob=True)  # intake may be on it
    enqueued = add_job(services, JobStatus.QUEUED, REDRIVE + 5, blob=True, tasks=True)
    # Older than its task list lives: no list proves nothing; the deadline decides.
    unknown = add_job(services, JobStatus.QUEUED, s.result_cache_ttl_s + 5, blob=True)
    assert not sweeper.sweep(services, app)
    for job_id in (fresh, enqueued, unknown):
        assert status(services, job_id) == ("queued", None)
    assert messages(services, s.queue_gpu) + messages(services, s.queue_cpu) == []


def test_a_job_that_ended_meanwhile_is_not_touched(services: Services, app: Celery) -> None:
    job_id = add_job(services, JobStatus.RUNNING, DEADLINE + 5, callback=True)
    work.finish(services, job_id, JobStatus.CANCELLED, error={"code": "cancelled"})
    assert not sweeper.sweep(services, app)
    assert status(services, job_id) == ("cancelled", "cancelled")
    assert messages(services, services.settings.queue_webhooks) == []


def test_sweep_purges_past_the_retention_only_when_asked(
        services: Services, app: Celery) -> None:
    old = add_job(services, JobStatus.SUCCEEDED, 31 * 86400)
    assert sweeper.sweep(services, app).purged == 0
    assert sweeper.sweep(services, app, purge=True).purged == 1
    assert store.get_job(services.db, old) is None


@pytest.fixture
def locks(services: Services) -> Iterator[None]:
    services.redis.delete(sweeper.SWEEP_LOCK, sweeper.PURGE_LOCK)
    yield
    services.redis.delete(sweeper.SWEEP_LOCK, sweeper.PURGE_LOCK)


@pytest.mark.usefixtures("locks")
def test_one_sweep_per_interval_across_workers(services: Services, app: Celery) -> None:
    job_id = add_job(services, JobStatus.RUNNING, DEADLINE + 5)
    first = sweeper.tick(services, app, "worker-a")
    assert first is not None and first.overdue == [job_id]
    assert sweeper.tick(services, app, "worker-b") is None  # the interval is worker-a's
    ttl = services.redis.ttl(sweeper.SWEEP_LOCK)
    assert 0 < ttl <= 30 - 1  # the interval less one heartbeat (3 s / 3)
    assert 3000 < services.redis.ttl(sweeper.PURGE_LOCK) <= 3600
    off = Services(services.settings.with_(sweep_interval_s=0))
    services.redis.delete(sweeper.SWEEP_LOCK)
    assert sweeper.tick(off, app) is None
    assert services.redis.exists(sweeper.SWEEP_LOCK) == 0


@pytest.mark.usefixtures("locks")
def test_after_beat_sweeps_even_when_the_rescue_fails(
        services: Services, app: Celery, monkeypatch: pytest.MonkeyPatch) -> None:
    # The worker's own state, as workers/lifecycle.py's heartbeat thread reads it;
    # restored afterwards so other tests in this process see theirs.
    monkeypatch.setattr(state, "_process", state._Process())
    state.configure(services.settings, preload=False)
    job_id = add_job(services, JobStatus.RUNNING, DEADLINE + 5)

    def rescue() -> None:
        raise ConnectionError("broker unreachable")

    sweeper.after_beat(app, rescue, "worker-a")()
    assert status(services, job_id) == ("failed", "deadline_exceeded")


def test_the_deadline_default_is_well_above_a_jobs_steps() -> None:
    s = Settings()
    assert s.job_deadline >= 4 * s.task_time_limit_s + s.visibility_timeout
    assert Settings(task_time_limit_s=1200).job_deadline >= 4 * 1200
    assert Settings(job_deadline_s=90).job_deadline == 90
    assert Settings.from_env({"OCRQ_JOB_DEADLINE_S": "120"}).job_deadline == 120


def test_the_redrive_wait_outlasts_the_slowest_submit() -> None:
    # A queued row without its image is failed `lost` after OCRQ_REDRIVE_AFTER_S; a
    # submit still on its way (a group-commit wait, a slow INSERT, a slow Redis) would
    # then store the image and answer 202 for a job already failed.
    # created_at is stamped before the group-commit wait; then a reconnect, the INSERT,
    # and the Redis transaction's connect and I/O.
    slowest = WAIT_S + DB_CONNECT_TIMEOUT_S + DB_IO_TIMEOUT_S + 2 * REDIS_IO_TIMEOUT_S
    assert Settings().redrive_after_s >= slowest + 20  # and two hosts' clocks
