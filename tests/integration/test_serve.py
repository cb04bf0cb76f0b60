"""`ocrq serve` as a user runs it: web + workers, a job through it, Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests
from redis import Redis

from tests.fixtures import encode, render_page

pytestmark = pytest.mark.services
ROOT = Path(__file__).resolve().parents[2]


def test_serve_runs_a_job_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OCRQ_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.sqlite3'}",
           "OCRQ_BROKER_URL": "redis://127.0.0.1:6379/10",
           "OCRQ_REDIS_URL": "redis://127.0.0.1:6379/11"}
    for db in (10, 11):
        Redis(db=db).flushdb()
    proc = subprocess.Popen([sys.executable, "-c", "from ocrq.cli import main; main()", "serve",
                             "--port", str(port),
                             "--workers", "1"], cwd=ROOT, env=env,
                            stdout=(tmp_path / "serve.log").open("wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        job = None
        while time.monotonic() < deadline and job is None:
            try:
                r = requests.post(f"{base}/v1/jobs", timeout=10, files={
                    "image": ("p.png", encode(render_page(["Served"]), "png"), "image/png")})
                job = r.json()["id"]
            except requests.ConnectionError:
                time.sleep(0.3)
        assert job, (tmp_path / "serve.log").read_text()
        while time.monotonic() < deadline:
            doc = requests.get(f"{base}/v1/jobs/{job}", timeout=10).json()
            if doc["status"] in ("succeeded", "failed"):
                break
            time.sleep(0.1)
        assert doc["status"] == "succeeded", doc
        assert doc["result"]["lines"][0]["text"] == "Served"
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 3  # web, worker, its pool process
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C delivers
        rc = proc.wait(timeout=60)
    assert rc == 0, (tmp_path / "serve.log").read_text()
    time.sleep(0.5)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/healthz", timeout=2)
