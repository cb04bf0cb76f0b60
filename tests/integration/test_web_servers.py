"""The intake under each web server: waitress (one process, threads), gunicorn's
gthread workers (N processes x threads: bench/load.py --server gunicorn) and
granian (`ocrq serve`'s default and the compose image's). Each takes jobs over
HTTP and queues them; gunicorn and granian really run the processes asked for.

Its own redis-server on a free port (no db number shared with another test) and
a SQLite file; no workers: the job stays queued.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def intake(tmp_path: Path) -> Iterator[tuple[LocalCluster, Settings, int, bytes]]:
    """A LocalCluster with its own redis-server on a free port, a migrated SQLite
    file, a free port for the web, and a small receipt JPEG; no workers."""
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
        yield cluster, s, web_port, jpeg


@pytest.mark.parametrize("server, processes", [("waitress", 1), ("gunicorn", 2)])
def test_the_intake_takes_jobs_under_each_server(tmp_path: Path, server: str,
                                                 processes: int) -> None:
    with intake(tmp_path) as (cluster, s, web_port, jpeg):
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


def test_granian_serves_the_intake_in_two_processes(tmp_path: Path) -> None:
    """`ocrq serve`'s default server (ocrq.cli.serve.start_web): both processes run,
    and the intake takes raw and multipart uploads."""
    with intake(tmp_path) as (cluster, s, web_port, jpeg):
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


def test_waitress_runs_one_process_only(tmp_path: Path) -> None:
    cluster = LocalCluster(Settings(), log_dir=tmp_path)
    with pytest.raises(ValueError, match="waitress runs one process"):
        cluster.start_web(processes=2, server="waitress")
