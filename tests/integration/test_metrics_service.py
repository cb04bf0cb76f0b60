"""/metrics of a real worker (python -m workers.cpu, prefork: its child counts into
multiprocess files, its main process serves the sum) and of the web, after a job."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from ocrq.localcluster import LocalCluster
from tests.fixtures import encode, render_page
from tests.integration.conftest import Stack

pytestmark = pytest.mark.services
Samples = list[tuple[str, dict[str, str], float]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def metrics_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, int]]:
    """One worker with OCRQ_METRICS_PORT set (Redis dbs 2 and 3, a SQLite file)."""
    tmp = tmp_path_factory.mktemp("stack-metrics")
    port = _free_port()
    stack = Stack("metrics", f"sqlite:///{tmp / 'ocrq.sqlite3'}", 2, 3, tmp)
    stack.settings = stack.settings.with_(metrics_port=port, metrics_host="127.0.0.1",
                                          metrics_dir=tmp / "prometheus")
    stack.cluster = LocalCluster(stack.settings, environ=stack.env)
    try:
        stack.start()
        yield stack, port
    finally:
        stack.stop()


def _scrape(url: str) -> Samples:
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 200, resp.text
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(resp.text)
            for s in f.samples]


def _sum(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for n, lab, v in samples
               if n == name and all(lab.get(k) == x for k, x in labels.items()))


def test_worker_and_web_metrics_after_a_job(metrics_stack: tuple[Stack, int],
                                            tmp_path: Path) -> None:
    stack, port = metrics_stack
    worker_url = f"http://127.0.0.1:{port}/metrics"
    before = _scrape(worker_url)
    assert _sum(before, "ocrq_stage_duration_seconds_count") == 0

    base = stack.web()
    png = encode(render_page(["Invoice 42", "Total 17.50"]), "png")
    resp = requests.post(f"{base}/v1/jobs", files={"image": ("page.png", png, "image/png")},
                         data={"bid": "default", "tid": "ocr"}, timeout=30)
    assert resp.status_code == 202, resp.text
    assert stack.wait(base, resp.json()["id"])["status"] == "succeeded"

    # The job is succeeded from inside the reorder task; its task_postrun (which
    # observes the task's duration) runs a moment after: wait for that, not a race.
    deadline = time.monotonic() + 10
    after = _scrape(worker_url)
    while not _sum(after, "ocrq_stage_duration_seconds_count", task="ocrq.reorder") \
            and time.monotonic() < deadline:
        time.sleep(0.05)
        after = _scrape(worker_url)
    for task in ("ocrq.detect", "ocrq.reorder"):
        assert _sum(after, "ocrq_stage_duration_seconds_count", task=task, device="cpu") >= 1
    assert _sum(after, "ocrq_stage_duration_seconds_sum") > 0
    # The engine's own step timings, by the model versions that ran.
    steps = {lab["step"]: lab["versions"] for n, lab, v in after
             if n == "ocrq_step_duration_seconds_count" and v > 0}
    assert "std:1" in steps["detect"] and "str:1" in steps["recognize"]
    assert _sum(after, "ocrq_recognize_batch_lines_sum") >= 2
    # Cost per page (issue 15): every step's CPU seconds, counted where it ran.
    for stage in ("rotate", "detect", "recognize", "reorder"):
        assert _sum(after, "ocrq_stage_cpu_seconds_total", stage=stage, device="cpu") > 0
        assert ("ocrq_stage_gpu_seconds_total", {"stage": stage, "device": "cpu"}, 0.0) in after
    assert _sum(after, "ocrq_jobs_total", bid="default", tid="ocr", status="succeeded") == 1
    assert _sum(after, "ocrq_tasks_in_progress") == 0
    assert ("ocrq_gpu_available", {}, 0.0) in after or ("ocrq_gpu_available", {}, 1.0) in after

    web = _scrape(f"{base}/metrics")
    assert _sum(web, "ocrq_queue_consumers", queue=stack.settings.queue_cpu) == 1
    assert _sum(web, "ocrq_queue_messages") == 0
    assert _sum(web, "ocrq_model_status", model="str", status="READY") >= 1
    assert _sum(web, "ocrq_model_status", status="FAILED") == 0
