"""Acceptance: operators' views over HTTP and CLI, drain/resume under a job stream,
and routing around dead GPU workers — real workers, Redis, SQLite, HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from redis import Redis
from werkzeug.serving import make_server

from ocrq.cluster.drain import WorkerNotFound, drain
from ocrq.cluster.rollout import wait
from ocrq.errors import OcrqError
from ocrq.pipeline.routing import NoLiveWorker
from ocrq.storage import Job
from tests.integration.cluster_harness import ROOT, Cluster, gpu_and_cpu_cluster, line_image

pytestmark = [pytest.mark.services, pytest.mark.timeout(600)]

PLANS = """
default_bid: default
tids:
  ocr-upright:
    steps:
      - {step: detect, hardware: gpu}
      - {step: recognize, hardware: gpu}
      - {step: reorder, hardware: cpu}
bids:
  default: {}
  gpu-only:
    ocr-upright:
      options: {detect: {cpu_fallback: false}, recognize: {cpu_fallback: false}}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with gpu_and_cpu_cluster(tmp_path_factory.mktemp("ops"), PLANS) as c:
        yield c


TOKEN = "s3cret-admin"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def _serve(cluster: Cluster, **settings: str) -> Iterator[str]:
    from web import create_app

    app = create_app(cluster.settings.with_(**settings))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> Iterator[str]:
    yield from _serve(cluster, admin_token=TOKEN)


def test_model_changes_need_the_admin_token(cluster: Cluster, api: str) -> None:
    url = f"{api}/v1/models/str/activate"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = requests.post(url, json={"version": 2}, headers=headers, timeout=10)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", r.text
    r = requests.post(f"{api}/v1/models/str/rollback", json={}, timeout=10)
    assert r.status_code == 401
    # Nothing changed: still version 1 everywhere.
    assert cluster.control().desired().versions["str"] == 1
    # Without OCRQ_ADMIN_TOKEN the web process refuses model changes altogether.
    for base in _serve(cluster):
        r = requests.post(f"{base}/v1/models/str/activate", json={"version": 2},
                          headers=ADMIN, timeout=10)
        assert r.status_code == 403 and r.json()["error"]["code"] == "admin_disabled"
        assert "OCRQ_ADMIN_TOKEN" in r.json()["error"]["message"]
        assert requests.get(f"{base}/v1/models", timeout=10).status_code == 200  # reads stay open


@pytest.fixture(scope="module")
def image() -> bytes:
    return line_image("Order 1234")


def test_models_and_cluster_api(cluster: Cluster, api: str) -> None:
    snap = requests.get(f"{api}/v1/cluster", timeout=10).json()
    assert {w["name"] for w in snap["workers"]} == {"gpu1@test", "cpu1@test"}
    assert snap["routing"]["gpu"]["workers"] == ["gpu1@test"]
    assert snap["routing"]["cpu"]["models"]["str"] == [1]
    models = {m["name"]: m for m in requests.get(f"{api}/v1/models", timeout=10).json()["models"]}
    assert models["str"]["versions"] == [1, 2] and models["str"]["active"] == 1
    rows = [w for w in models["str"]["workers"] if w["active"]]
    assert len(rows) == 2 and all(w["status"] == "READY" and w["version"] == 1 for w in rows)
    memory = rows[0]["memory"]
    assert memory["rss_bytes"] > 50 * 2**20
    # This machine has no NVIDIA driver: the GPU part says so instead of failing.
    assert memory["gpus"] == [] and memory["gpu_note"].startswith("no NVIDIA GPU (NVML")

    r = requests.post(f"{api}/v1/models/str/activate", json={"version": 2}, headers=ADMIN,
                      timeout=10)
    assert r.status_code == 202 and r.json()["change"]["previous_version"] == 1
    assert wait(cluster.redis, "str", 2, timeout_s=30).done
    models = {m["name"]: m for m in requests.get(f"{api}/v1/models", timeout=10).json()["models"]}
    assert models["str"]["active"] == 2
    assert {w["version"] for w in models["str"]["workers"] if w["active"]} == {2}

    bad = requests.post(f"{api}/v1/models/str/activate", json={"version": 9}, headers=ADMIN,
                        timeout=10)
    assert bad.status_code == 404 and bad.json()["error"]["code"] == "model_not_found"
    assert requests.post(f"{api}/v1/models/nope/activate", json={"version": 1}, headers=ADMIN,
                         timeout=10).status_code == 404
    assert requests.post(f"{api}/v1/models/str/activate", json={"v": 1}, headers=ADMIN,
                         timeout=10).status_code == 400
    back = requests.post(f"{api}/v1/models/str/rollback", json={}, headers=ADMIN, timeout=10)
    assert back.status_code == 202 and back.json()["change"]["version"] == 1
    assert wait(cluster.redis, "str", 1, timeout_s=30).done
    history = requests.get(f"{api}/v1/models/str/history", timeout=10).json()["history"]
    assert [(h["version"], h["actor"]) for h in history[:2]] == [(1, "api"), (2, "api")]
    spec = requests.get(f"{api}/v1/openapi.json", timeout=10).json()
    paths = spec["paths"]
    assert {"/v1/models", "/v1/models/{name}/activate", "/v1/cluster"} <= set(paths)
    assert paths["/v1/models/{name}/activate"]["post"]["security"] == [{"adminToken": []}]
    assert spec["components"]["securitySchemes"]["adminToken"]["scheme"] == "bearer"


def _ocrq(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", "from ocrq.cli import main; main()", *args]
    return subprocess.run(cmd, cwd=ROOT, env=cluster.env, capture_output=True, text=True,
                          timeout=120)


def test_status_table_and_static_diff_cli(cluster: Cluster) -> None:
    status = _ocrq(cluster, "models", "status")
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.startswith("| worker"))
    assert [c.strip() for c in lines[header].strip("|").split("|")] == [
        "worker", "model", "version", "status", "device", "memory"]
    str_rows = [ln for ln in lines if "| str " in ln]
    assert len(str_rows) == 2 and all("READY" in ln and "no NVIDIA GPU" in ln for ln in str_rows)

    expected = cluster.tmp / "expected.yaml"
    expected.write_text(
        "groups:\n"
        "  gpu: {queues: [gpu], models: {std: 1, str: 1, dir: 1}}\n"
        "  cpu: {queues: [cpu], models: {str: 1}}\n")
    ok = _ocrq(cluster, "cluster", "diff", str(expected))
    assert ok.returncode == 0 and "no drift" in ok.stdout, ok.stdout + ok.stderr
    expected.write_text(
        "groups:\n"
        "  gpu: {queues: [gpu], models: {str: 2}, min_workers: 2}\n"
        "  tpu: {queues: [tpu]}\n")
    drift = _ocrq(cluster, "cluster", "diff", str(expected), "--json")
    assert drift.returncode == 1
    kinds = {(d["group"], d["kind"]) for d in json.loads(drift.stdout)}
    assert kinds == {("gpu", "workers"), ("gpu", "model-version"), ("tpu", "workers"),
                     ("cpu", "unexpected-group")}


def _stream(cluster: Cluster, image: bytes, stop: threading.Event, out: list[str]) -> None:
    while not stop.is_set():
        out.append(cluster.submit(image))
        time.sleep(0.05)


def test_drain_and_resume_during_a_stream_loses_nothing(cluster: Cluster, image: bytes) -> None:
    ids: list[str] = []
    stop = threading.Event()
    feeder = threading.Thread(target=_stream, args=(cluster, image, stop, ids))
    feeder.start()
    try:
        while len(ids) < 10:
            time.sleep(0.02)
        out = _ocrq(cluster, "workers", "drain", "gpu1@test", "--timeout", "60")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "stopped consuming gpu" in out.stdout and "drained" in out.stdout
        drained_at = len(ids)
        # The stream goes on; the drained worker must not take any of it.
        while len(ids) < drained_at + 10:
            time.sleep(0.05)
        time.sleep(1.0)
        gpu1 = next(w for w in cluster.snapshot().workers if w.name == "gpu1@test")
        assert gpu1.queues == () and gpu1.draining and gpu1.drained == ("gpu",)
        later = ids[drained_at:]
        assert all(cluster.document(i)["status"] == "queued" for i in later)
    finally:
        stop.set()
        feeder.join()
    out = _ocrq(cluster, "workers", "resume", "gpu1@test")
    assert out.returncode == 0 and "consuming gpu again" in out.stdout, out.stderr
    docs = cluster.wait_jobs(ids)
    assert len(docs) == len(ids) >= 20
    assert all(d["status"] == "succeeded" for d in docs.values())
    assert all(d["result"]["lines"][0]["text"] == "Order 1234" for d in docs.values())
    w = next(w for w in cluster.snapshot().workers if w.name == "gpu1@test")
    assert w.queues == ("gpu",) and not w.draining


def test_resume_claims_nothing_a_stopped_worker_has_not_done(cluster: Cluster) -> None:
    """A worker that does not take its queues back (here SIGSTOPped: its control
    commands wait unread, as a lost or late broadcast would leave them) is not reported
    as consuming again: resume fails, keeps the drain, and works once rerun."""
    from ocrq.cluster.agent import drain_key
    from ocrq.cluster.drain import consumed_queues, resume

    name = "gpu1@test"
    report = drain(cluster.app, cluster.redis, name, timeout_s=60)
    assert report.queues == ["gpu"] and consumed_queues(cluster.app, name) == []
    group = cluster.workers[name].pid
    os.killpg(group, signal.SIGSTOP)
    try:
        with pytest.raises(OcrqError, match="run the command again"):
            resume(cluster.app, cluster.redis, name, confirm_s=3)
        assert cluster.redis.get(drain_key(name)) is not None  # remembered for the rerun
    finally:
        os.killpg(group, signal.SIGCONT)
    assert resume(cluster.app, cluster.redis, name) == ["gpu"]
    assert consumed_queues(cluster.app, name) == ["gpu"]
    assert cluster.redis.get(drain_key(name)) is None


def test_drain_unknown_worker_is_a_clear_error(cluster: Cluster) -> None:
    with pytest.raises(WorkerNotFound, match="nope@test"):
        drain(cluster.app, cluster.redis, "nope@test", timeout_s=1)


def test_kill_every_gpu_worker_new_jobs_run_on_cpu(cluster: Cluster, image: bytes) -> None:
    cluster.kill_worker("gpu1@test")  # SIGKILL: no goodbye, the heartbeat just stops
    # Until its heartbeat expires the intake still routes to 'gpu': these get stranded
    # there, and the CPU worker takes them over (or fails the gpu-only one) once it has.
    stranded = [cluster.submit(image) for _ in range(4)]
    gpu_only = cluster.submit(image, bid="gpu-only")
    broker = Redis.from_url(cluster.settings.broker_url)
    assert broker.llen("gpu") >= 1, "the test meant to strand messages on the gpu queue"
    docs = cluster.wait_jobs(stranded + [gpu_only], timeout_s=60)
    assert all(docs[i]["status"] == "succeeded" for i in stranded)
    assert docs[gpu_only]["status"] == "failed"
    assert docs[gpu_only]["error"]["code"] == "no_live_worker"
    assert broker.llen("gpu") == 0
    deadline = time.monotonic() + 15
    while any(w.name == "gpu1@test" for w in cluster.snapshot().workers):
        assert time.monotonic() < deadline, "dead worker still in the snapshot"
        time.sleep(0.2)
    time.sleep(1.1)  # the intake's snapshot cache (1 s)
    ids = [cluster.submit(image) for _ in range(10)]
    docs = cluster.wait_jobs(ids, timeout_s=120)
    assert all(d["status"] == "succeeded" for d in docs.values())
    # A plan that forbids CPU fails fast: refused at intake, nothing recorded.
    with cluster.services.db.session() as s:
        before = s.query(Job).count()
    started = time.monotonic()
    with pytest.raises(NoLiveWorker, match="forbids CPU fallback"):
        cluster.submit(image, bid="gpu-only")
    assert time.monotonic() - started < 5
    with cluster.services.db.session() as s:
        assert s.query(Job).count() == before
