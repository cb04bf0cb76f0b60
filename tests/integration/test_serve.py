"""`ocrq serve` as a user runs it: web + workers, a job through it, Ctrl-C stops all;
and the module it starts and stops them with (ocrq.localcluster)."""

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

from ocrq.localcluster import LocalCluster, LocalClusterError, settings_env
from ocrq.settings import Settings
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


def test_settings_reach_child_processes_unchanged(tmp_path: Path) -> None:
    s = Settings.from_env({}, model_root=tmp_path / "models", plans_file=tmp_path / "p.yaml",
                          fp16=True, graph_rewrite=False, batch_wait_ms=2.5, threads=3,
                          worker_name="w1", lexicon="en,ms")
    env = settings_env(s, {"OCRQ_THREADS": "7", "OCRQ_NOT_A_FIELD": "x", "PATH": "/bin"})
    assert Settings.from_env(env) == s
    assert env["PATH"] == "/bin" and "OCRQ_NOT_A_FIELD" not in env
    # A field left unset must not be taken from the parent's environment either.
    plain = Settings.from_env({})
    assert Settings.from_env(settings_env(plain, {"OCRQ_PLANS_FILE": "/x.yaml"})) == plain


@pytest.mark.parametrize("ignores_sigterm", [True, False])
def test_stop_leaves_no_process_behind(tmp_path: Path, ignores_sigterm: bool) -> None:
    """One that ignores SIGTERM is killed at the deadline with its group; one that obeys
    but leaves a child behind has that child killed after it."""
    code = ("import signal, subprocess, sys, time\n"
            f"if {ignores_sigterm}: signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
            "print('up', flush=True)\n"
            "time.sleep(120)\n")
    cluster = LocalCluster(Settings.from_env({}), log_dir=tmp_path)
    proc = cluster.start_process("stubborn", [sys.executable, "-c", code])
    deadline = time.monotonic() + 30
    while "up" not in proc.log_tail() and time.monotonic() < deadline:
        time.sleep(0.05)
    children = psutil.Process(proc.pid).children(recursive=True)
    assert children, proc.log_tail()
    started = time.monotonic()
    cluster.stop(grace_s=1)
    assert time.monotonic() - started < 10
    assert proc.popen.returncode == (-signal.SIGKILL if ignores_sigterm else -signal.SIGTERM)
    time.sleep(0.2)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert cluster.processes == {}


def test_wait_ready_reports_a_process_that_exited(tmp_path: Path) -> None:
    cluster = LocalCluster(Settings.from_env({}), log_dir=tmp_path)
    cluster.start_process("web", [sys.executable, "-c", "print('port taken'); exit(3)"],
                          url="http://127.0.0.1:9")
    with pytest.raises(LocalClusterError, match="web exited with status 3: port taken"):
        cluster.wait_ready(timeout_s=30)
    assert cluster.exited() == {"web": 3}
    cluster.stop()
