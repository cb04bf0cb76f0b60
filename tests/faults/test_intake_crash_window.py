"""A web process killed between a submit's INSERT and its Redis pipeline (issue 14).

Intake stores the image in the same Redis round trip as the job's status and first
message, right after the row is committed (one round trip fewer per submit). A
process that dies in between leaves a committed, queued row with no image, no
status, no task ids and no message. The sweeper must settle it: failed ``lost``,
and its Idempotency-Key freed, so that the client's retry makes a new job instead
of replaying the dead one. Real MariaDB and Redis; the web process is a real child
killed with SIGKILL right after its INSERT returned.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from ocrq.localcluster import settings_env
from ocrq.pipeline import sweeper
from ocrq.pipeline.app import create_celery_app
from ocrq.pipeline.state import Services
from ocrq.settings import Settings
from ocrq.storage import jobs as store
from ocrq.storage.models import utcnow
from tests.databases import throwaway_mariadb
from tests.fixtures import encode, render_page
from web import create_app

pytestmark = [pytest.mark.services, pytest.mark.faults, pytest.mark.timeout(120)]

# The child: the intake app, whose INSERT commits and whose process is then killed
# (SIGKILL: no handler, no finally) before anything else of the submit runs.
CHILD = """
import os, signal, sys
from ocrq.settings import Settings
from ocrq.storage import jobs as store
from web import create_app

real = store.create_job

def committed_then_killed(*args, **fields):
    job, created = real(*args, **fields)
    print(job.id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

store.create_job = committed_then_killed
client = create_app(Settings.from_env()).test_client()
client.post("/v1/jobs", data=sys.stdin.buffer.read(), query_string={"name": "p.png"},
            headers={"Content-Type": "image/png", "Idempotency-Key": sys.argv[1]})
print("not killed", flush=True)
"""


@pytest.fixture
def settings(web_settings: Settings) -> Iterator[Settings]:
    with throwaway_mariadb() as url:
        yield web_settings.with_(database_url=url, redrive_after_s=5, job_deadline_s=600)


def test_a_job_whose_web_process_died_after_its_insert_is_failed_lost_and_its_key_freed(
        settings: Settings) -> None:
    png = encode(render_page(["TOTAL 42.00"]))
    key = f"crash-{time.time_ns()}"
    child = subprocess.run([sys.executable, "-c", CHILD, key], input=png,
                           capture_output=True, env=settings_env(settings), timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    job_id = child.stdout.decode().split()[0]
    services = Services(settings)
    # Half-done: the row committed, nothing of the Redis side written.
    job = store.get_job(services.db, job_id)
    assert job is not None and job.status == "queued"
    assert not services.redis.exists(services.blobs.key_for(job_id))
    assert services.cache.get(job_id) is None and not services.cache.tasks(job_id)
    assert services.redis.llen(settings.queue_gpu) == services.redis.llen(settings.queue_cpu) == 0
    app = create_celery_app(settings)
    # Too soon (the web process may still be on its way): left alone.
    assert job_id not in sweeper.sweep(services, app).lost
    done = sweeper.sweep(services, app, now=utcnow() + timedelta(seconds=6))
    assert done.lost == [job_id] and done.redriven == []
    job = store.get_job(services.db, job_id)
    assert job is not None and job.status == "failed" and job.error["code"] == "lost"  # type: ignore[index]
    # The client's retry with the same key: a new job, which runs (queued, with its
    # image and its message), not the dead one replayed.
    resp = create_app(settings).test_client().post(
        "/v1/jobs", data=png, query_string={"name": "p.png"},
        headers={"Content-Type": "image/png", "Idempotency-Key": key})
    assert resp.status_code == 202, resp.get_data(as_text=True)
    fresh = resp.get_json()["id"]
    try:
        assert fresh != job_id
        assert services.redis.exists(services.blobs.key_for(fresh))
        assert services.redis.llen(settings.queue_gpu) + services.redis.llen(
            settings.queue_cpu) == 1
    finally:
        services.redis.delete(services.blobs.key_for(fresh), services.cache.key(fresh),
                              services.cache.key(job_id))
