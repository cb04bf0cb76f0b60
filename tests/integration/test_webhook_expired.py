"""A job that fails after its Redis cache entry expired still sends its webhook:
whether it has one is read from its row (real worker, Redis TTLs, SQLite)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ocrq.pipeline import jobs
from ocrq.pipeline.state import Services
from ocrq.webhooks import HEADER_SIGNATURE, HEADER_TIMESTAMP, verify
from tests.integration.cluster_harness import line_image, make_cluster
from tests.unit.test_webhook_delivery import Hostile, answer

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]
SECRET = "expired-suite-secret"
WORKER = "late1@test"


def test_a_job_failing_after_its_cache_expired_sends_its_webhook(tmp_path: Path) -> None:
    c = make_cluster(tmp_path)
    c.env.update(OCRQ_WEBHOOK_SECRET=SECRET, OCRQ_ALLOW_PRIVATE_URLS="1")
    # Intake with one-second TTLs; no worker yet, so the job waits on its queue.
    intake = Services(c.settings.with_(allow_private_urls=True, image_ttl_s=1,
                                       result_cache_ttl_s=1))
    with Hostile(answer(200, {"Content-Length": "0"}, [])) as srv:
        try:
            doc, _ = jobs.submit(intake, c.app, line_image("Too late"), "line.png",
                                 tid="ocr-upright", callback_url=srv.url)
            job_id = doc["id"]
            time.sleep(2.5)
            assert intake.cache.get(job_id) is None  # the cache entry expired ...
            assert not intake.redis.exists(intake.blobs.key_for(job_id))  # ... the image too
            c.start_worker("cpu", WORKER, "gpu,cpu,webhooks")
            c.wait_ready(WORKER)
            deadline = time.monotonic() + 120
            while not srv.bodies and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            c.stop_all()
    assert srv.bodies, f"no webhook; worker log:\n{c.log_tail(WORKER)}"
    head = dict(line.split(": ", 1) for line in srv.heads[0].decode().split("\r\n")[1:])
    assert verify(SECRET, srv.bodies[0], head[HEADER_TIMESTAMP], head[HEADER_SIGNATURE])
    sent = json.loads(srv.bodies[0])
    assert (sent["id"], sent["status"]) == (job_id, "failed")
    assert sent["error"]["code"] == "image_expired", sent["error"]
