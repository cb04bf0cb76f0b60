"""`ocrq serve`'s default intake server, granian (ocrq.cli.serve.start_web): N processes
really run, and each takes jobs over HTTP (raw and multipart) and queues them.

Its own redis-server on a free port and a SQLite file; no workers: jobs stay queued.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest
import requests
from redis import Redis

from ocrq.cli.serve import start_web, upgrade
from ocrq.localcluster import LocalCluster, free_port, wait_redis
from ocrq.settings import Settings

pytestmark = pytest.mark.services


def test_granian_serves_the_intake_in_two_processes(tmp_path: Path) -> None:
    redis_port, web_port = free_port(), free_port()
    url = f"redis://127.0.0.1:{redis_port}"
    s = Settings(database_url=f"sqlite:///{tmp_path / 'web.sqlite3'}", broker_url=f"{url}/0",
                 redis_url=f"{url}/1", model_root=tmp_path / "models",
                 webhook_secret="test-secret")
    upgrade(s.database_url)
    page = np.full((80, 300, 3), 255, np.uint8)
    cv2.putText(page, "TOTAL 9.99", (10, 55), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 0, 0), 2)
    jpeg = cv2.imencode(".jpg", page)[1].tobytes()
    with LocalCluster(s, log_dir=tmp_path) as cluster:
        cluster.start_process("redis", ["redis-server", "--port", str(redis_port), "--save", "",
                                        "--appendonly", "no", "--dir", str(tmp_path)],
                              service=True)
        wait_redis(s.broker_url)
        web = start_web(cluster, "127.0.0.1", web_port, server="granian", processes=2,
                        threads=2)
        cluster.wait_ready(["web"], timeout_s=60)
        base = f"http://127.0.0.1:{web_port}"
        ids = []
        for i in range(6):
            if i % 2:
                resp = requests.post(f"{base}/v1/jobs?name=r.jpg", data=jpeg,
                                     headers={"Content-Type": "image/jpeg"}, timeout=30)
            else:
                resp = requests.post(f"{base}/v1/jobs", files={"image": ("r.jpg", jpeg)},
                                     timeout=30)
            assert resp.status_code == 202, resp.text
            ids.append(resp.json()["id"])
        for job_id in ids:
            doc = requests.get(f"{base}/v1/jobs/{job_id}", timeout=30).json()
            assert doc["status"] == "queued" and doc["image"]["name"] == "r.jpg"
        assert Redis.from_url(s.broker_url).llen(s.queue_gpu) == 6
        bad = requests.post(f"{base}/v1/jobs", data=b"junk",
                            headers={"Content-Type": "image/jpeg"}, timeout=30)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_image"
        workers = [p for p in psutil.Process(web.pid).children(recursive=True)
                   if "granian" in " ".join(p.cmdline())]
        assert len(workers) == 2, [p.cmdline() for p in workers]
