"""The intake under both servers ocrq.localcluster starts: waitress (one process,
threads: `ocrq serve`) and gunicorn's gthread workers (N processes x threads:
the compose image, bench/load.py --server gunicorn). Each takes a job over HTTP
and queues it; gunicorn really runs the processes it was asked for.

Its own redis-server on a free port (no db number shared with another test) and
a SQLite file; no workers: the job stays queued.
"""

from __future__ import annotations

import socket
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest
import requests
from redis import Redis

from ocrq.cli.serve import upgrade
from ocrq.localcluster import LocalCluster, wait_redis
from ocrq.settings import Settings

pytestmark = pytest.mark.services


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("server, processes", [("waitress", 1), ("gunicorn", 2)])
def test_the_intake_takes_jobs_under_each_server(tmp_path: Path, server: str,
                                                 processes: int) -> None:
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
        web = cluster.start_web(port=web_port, threads=2, processes=processes, server=server)
        cluster.wait_ready(["web"], timeout_s=60)
        base = f"http://127.0.0.1:{web_port}"
        ids = []
        for _ in range(4):
            resp = requests.post(f"{base}/v1/jobs", files={"image": ("r.jpg", jpeg)}, timeout=30)
            assert resp.status_code == 202, resp.text
            ids.append(resp.json()["id"])
        for job_id in ids:
            assert requests.get(f"{base}/v1/jobs/{job_id}", timeout=30).json()["status"] == \
                "queued"
        assert Redis.from_url(s.broker_url).llen(s.queue_gpu) == 4
        children = psutil.Process(web.pid).children()
        assert len(children) == (processes if server == "gunicorn" else 0)


def test_waitress_runs_one_process_only(tmp_path: Path) -> None:
    cluster = LocalCluster(Settings(), log_dir=tmp_path)
    with pytest.raises(ValueError, match="waitress runs one process"):
        cluster.start_web(processes=2, server="waitress")
