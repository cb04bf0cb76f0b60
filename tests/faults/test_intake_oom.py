"""A Redis at its maxmemory (noeviction, as the README recommends) refuses a
submit's writes as a whole: never the image alone with the message after it pushed.

The image, the status, the task ids and the first message go to Redis in one
round trip after the INSERT (issue 14's intake). Sent as a plain pipeline, Redis
runs each command on its own: the large SET refused for memory, the small ones
after it still ran, and a worker popped a message whose image was never stored
(a review of 7681ab9 saw it 4 times in 20 tries). As MULTI/EXEC, a refused command
aborts the whole transaction.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from ocrq.chaos.servers import RedisServer
from ocrq.localcluster import LocalCluster
from ocrq.pipeline.state import Services
from ocrq.settings import Settings
from ocrq.storage import jobs as store
from web import create_app

pytestmark = [pytest.mark.services, pytest.mark.faults, pytest.mark.timeout(120)]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    cluster = LocalCluster(Settings(), log_dir=tmp_path)
    server = RedisServer(cluster, tmp_path / "redis")
    server.start()
    yield server
    cluster.stop(grace_s=5)


def test_a_full_redis_never_gets_a_message_without_its_image(
        web_settings: Settings, redis_server: RedisServer) -> None:
    url = redis_server.url()
    settings = web_settings.with_(redis_url=url, broker_url=url)
    r = redis_server.client()
    r.config_set("maxmemory-policy", "noeviction")
    services = Services(settings)
    app = create_app(settings)
    client = app.test_client()
    small = cv2.imencode(".png", np.full((64, 64, 3), 255, np.uint8))[1].tobytes()
    assert client.post("/v1/jobs", data=small, query_string={"name": "s.png"},
                       headers={"Content-Type": "image/png"}).status_code == 202
    app.extensions["ocrq"].router.ttl_s = 3600.0  # no live-snapshot refresh mid-test
    noise = np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    big = cv2.imencode(".png", noise)[1].tobytes()  # ~470 KB: cannot fit, the rest can
    queues = (settings.queue_gpu, settings.queue_cpu)
    refused = 0
    for headroom in range(300_000, 500_001, 25_000):
        for q in queues:
            r.delete(q)
        r.config_set("maxmemory", r.info("memory")["used_memory"] + headroom)
        try:
            resp = client.post("/v1/jobs", data=big, query_string={"name": "big.png"},
                               headers={"Content-Type": "image/png"})
        finally:
            r.config_set("maxmemory", 0)
        body = resp.get_json()
        job_id = body.get("id") or (body.get("error") or {}).get("job_id")
        if resp.status_code == 202:
            assert job_id and r.exists(services.blobs.key_for(job_id))
            r.delete(services.blobs.key_for(job_id))
            continue
        refused += 1
        assert resp.status_code == 503, body
        if job_id is None:
            continue  # refused before any row
        pushed = [m for q in queues for m in r.lrange(q, 0, -1)
                  if job_id.encode() in base64.b64decode(json.loads(m)["body"])]
        assert pushed == [], f"headroom {headroom}: a message for {job_id} without its image"
        assert not r.exists(services.blobs.key_for(job_id))
        assert r.hget(services.cache.key(job_id), "status") in (None, b"failed")
        job = store.get_job(services.db, job_id)
        assert job is not None and job.status == "failed"
    assert refused, "no headroom tried was too small for the image: the test proved nothing"
