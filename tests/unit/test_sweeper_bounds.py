"""Nothing grows without bound: per-task start counters go when their task is done,
and a client's image name is cut before it rides every message (real Redis, SQLite,
broker queues, HTTP receiver)."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from redis import Redis

from ocrq.pipeline import hooks, work
from ocrq.pipeline.app import create_celery_app
from ocrq.pipeline.jobs import submit
from ocrq.pipeline.state import Services
from ocrq.settings import Settings
from ocrq.storage import JobStatus
from ocrq.storage import jobs as store
from tests.fixtures import encode, render_page


@pytest.fixture
def services(web_settings: Settings) -> Services:
    return Services(web_settings.with_(allow_private_urls=True, webhook_timeout_s=2.0))


def new_job(services: Services, job_id: str, callback_url: str | None = None) -> None:
    store.create_job(services.db, id=job_id, bid="default", tid="ocr", status="running",
                     callback_url=callback_url, image_name="p.png", width=1, height=1,
                     batches_done=0)


def counter(services: Services, task_id: str) -> tuple[bool, int]:
    key = services.cache.delivery_key(task_id)
    return bool(services.redis.exists(key)), int(services.redis.ttl(key))


def test_stage_counters_live_bounded_and_go_when_the_job_ends(services: Services) -> None:
    job_id = "c0ffee" + services.settings.queue_cpu.replace("-", "")[:20]
    new_job(services, job_id)
    ids = [f"{job_id}-detect", f"{job_id}-recognize-0", f"{job_id}-reorder"]
    services.cache.add_tasks(job_id, ids)
    for task_id in ids:
        assert work.redelivery_error(services, task_id, job_id, "detect") is None
    exists, ttl = counter(services, ids[0])
    # Bounded by the job's deadline plus one redelivery, not a week.
    assert exists and 0 < ttl <= work.delivery_ttl(services.settings) < 2 * 3600
    assert work.finish(services, job_id, JobStatus.SUCCEEDED, document={"lines": []})
    assert [counter(services, t)[0] for t in ids] == [False, False, False]


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    srv = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}/hook"
    srv.shutdown()


def test_webhook_attempt_counter_goes_after_the_attempt(services: Services,
                                                         receiver: str) -> None:
    ok_job, bad_job = "ab" * 16, "cd" * 16
    new_job(services, ok_job, receiver)
    new_job(services, bad_job, "http://127.0.0.1:9/closed")  # refused: a retry is due
    assert hooks.webhook_attempt(services, ok_job, 1, "hook-task-ok") is None
    assert hooks.webhook_attempt(services, bad_job, 1, "hook-task-bad") is not None
    assert [d.ok for d in store.deliveries(services.db, ok_job)] == [True]
    assert counter(services, "hook-task-ok")[0] is False
    assert counter(services, "hook-task-bad")[0] is False  # the retry is a new message


def test_a_huge_image_name_is_cut_before_any_message(services: Services) -> None:
    s = services.settings
    app = create_celery_app(s)
    name = "n" * (1024 * 1024) + ".png"
    doc, created = submit(services, app, encode(render_page(["Total 12.50"], size=24)), name)
    assert created
    assert doc["image"]["name"] == "n" * 255
    broker = Redis.from_url(s.broker_url)
    raws = [raw for q in (s.queue_gpu, s.queue_cpu) for raw in broker.lrange(q, 0, -1)]  # type: ignore[union-attr]
    assert len(raws) == 1
    assert len(raws[0]) < 16_384  # the whole message, headers included
    args, _kwargs, _embed = json.loads(base64.b64decode(json.loads(raws[0])["body"]))
    assert args[0]["job_id"] == doc["id"] and args[0]["name"] == "n" * 255
    job = store.get_job(services.db, doc["id"])
    assert job is not None and job.image_name == "n" * 255
