"""The web's /metrics through Flask's test client, with real Redis and a real SQLite
database and no worker: queue lengths, the job counter, the webhook backlog, and the
model status read from heartbeat records."""

from __future__ import annotations

import io
import uuid

import cv2
import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from ocrq.cluster.snapshot import build
from ocrq.observability.collectors import heartbeat_families
from ocrq.pipeline.state import Services
from ocrq.settings import Settings
from ocrq.storage import JobStatus
from ocrq.storage import jobs as store
from web import create_app


@pytest.fixture
def app(web_settings: Settings) -> Flask:
    return create_app(web_settings.with_(metrics_cache_s=0))  # every scrape reads afresh


def _samples(client: FlaskClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.mimetype == "text/plain"
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(resp.get_data(as_text=True))
            for s in family.samples}


def _value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
           **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def _png() -> bytes:
    page = np.full((48, 160, 3), 255, np.uint8)
    cv2.putText(page, "ocrq 42", (8, 34), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2)
    return cv2.imencode(".png", page)[1].tobytes()


def test_queue_lengths_and_cancelled_jobs(app: Flask, web_settings: Settings) -> None:
    client = app.test_client()
    s = web_settings
    before = _samples(client)
    for source in ("broker", "heartbeats", "database"):
        assert _value(before, "ocrq_metrics_source_up", source=source) == 1
    for queue in (s.queue_gpu, s.queue_cpu, s.queue_webhooks):
        assert _value(before, "ocrq_queue_messages", queue=queue) == 0
        assert _value(before, "ocrq_queue_consumers", queue=queue) == 0
    cancelled = {"bid": "default", "tid": "ocr", "status": "cancelled"}
    n0 = _value(before, "ocrq_jobs_total", **cancelled) or 0.0

    resp = client.post("/v1/jobs", data={"image": (io.BytesIO(_png()), "page.png")},
                       content_type="multipart/form-data")
    assert resp.status_code == 202, resp.get_data(as_text=True)
    queued = _samples(client)
    assert sum(_value(queued, "ocrq_queue_messages", queue=q) or 0
               for q in (s.queue_gpu, s.queue_cpu)) == 1

    assert client.delete(f"/v1/jobs/{resp.get_json()['id']}").status_code in (200, 202)
    after = _samples(client)
    assert _value(after, "ocrq_jobs_total", **cancelled) == n0 + 1


def test_webhook_backlog_counts_jobs_whose_webhook_has_not_ended(app: Flask,
                                                                 web_settings: Settings) -> None:
    client = app.test_client()
    db = Services(web_settings).db
    ids = []
    for _ in range(2):
        job, _created = store.create_job(db, id=uuid.uuid4().hex, bid="default", tid="ocr",
                                         status=str(JobStatus.QUEUED), image_name="p.png", width=8,
                                         height=8, callback_url="https://example.com/hook")
        assert store.finish_job(db, job.id, JobStatus.SUCCEEDED, document={"lines": []})
        ids.append(job.id)
    assert _value(_samples(client), "ocrq_webhook_backlog") == 2
    store.record_delivery(db, job_id=ids[0], attempt=1, url="https://example.com/hook",
                          status_code=200, ok=True, duration_ms=1.0)
    store.record_delivery(db, job_id=ids[1], attempt=1, url="https://example.com/hook",
                          status_code=500, ok=False, duration_ms=1.0, error="HTTP 500")
    assert _value(_samples(client), "ocrq_webhook_backlog") == 1  # 2nd: to be retried
    store.record_delivery(db, job_id=ids[1], attempt=8, url="https://example.com/hook",
                          status_code=500, ok=False, duration_ms=1.0,
                          error="HTTP 500; giving up after 8 attempts")
    assert _value(_samples(client), "ocrq_webhook_backlog") == 0


def test_model_status_is_a_state_set_per_version_and_process() -> None:
    node = {"name": "gpu1@h", "queues": ["gpu"], "pid": 10, "ts": 0}
    proc = {"worker": "gpu1@h", "pid": 12, "device": "cuda", "models": [
        {"name": "str", "version": 1, "status": "READY", "active": True},
        {"name": "str", "version": 2, "status": "FAILED", "active": False}]}
    families = heartbeat_families(build([node], [proc]), ["gpu", "cpu"])
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for f in families for s in f.samples}
    base = {"worker": "gpu1@h", "pid": "12", "model": "str"}

    def status(version: str, active: str, value: str) -> float:
        labels = {**base, "version": version, "active": active, "status": value}
        return samples[("ocrq_model_status", frozenset(labels.items()))]

    assert status("2", "false", "FAILED") == 1 and status("2", "false", "READY") == 0
    assert status("1", "true", "READY") == 1 and status("1", "true", "FAILED") == 0
    assert samples[("ocrq_queue_consumers", frozenset({("queue", "gpu")}))] == 1
    assert samples[("ocrq_queue_consumers", frozenset({("queue", "cpu")}))] == 0
