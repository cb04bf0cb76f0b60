"""The real worker's sweeper finishes stuck jobs within their deadline plus one sweep
interval, re-drives a job its web process abandoned, and no per-task counter is
left behind (real worker process, Redis, SQLite, HTTP receiver).

The stuck jobs are written the way intake writes them (ocrq.storage, the blob
store, the status cache); what is missing is exactly what a crash would leave out:
no message on any queue.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ocrq.images import validate_image
from ocrq.storage import Job
from ocrq.storage import jobs as store
from ocrq.storage.models import utcnow
from tests.integration.cluster_harness import Cluster, line_image, one_worker_cluster

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]
WORKER = "sweeper1@test"
DEADLINE, INTERVAL, REDRIVE = 15, 2, 2
BEAT = 1.0  # cluster_env's OCRQ_HEARTBEAT_TTL_S=3: a node beats every second


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with one_worker_cluster(tmp_path_factory.mktemp("sweeper"), "cpu", WORKER,
                            "gpu,cpu,webhooks", OCRQ_JOB_DEADLINE_S=str(DEADLINE),
                            OCRQ_SWEEP_INTERVAL_S=str(INTERVAL),
                            OCRQ_REDRIVE_AFTER_S=str(REDRIVE),
                            OCRQ_ALLOW_PRIVATE_URLS="1") as c:
        yield c


@pytest.fixture
def hooks() -> Iterator[tuple[str, list[str]]]:
    """A webhook receiver on 127.0.0.1: (its URL, the paths it was called on)."""
    calls: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server API
            self.rfile.read(int(self.headers["Content-Length"]))
            calls.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}", calls
    srv.shutdown()


def record(c: Cluster, job_id: str, status: str, *, callback: str | None = None,
           image: bytes | None = None, tasks: list[str] | None = None) -> datetime:
    """A job row as intake writes it; optionally its image blob and task list."""
    plan = c.services.plans.resolve(None, "ocr-upright")
    width, height = validate_image(image, "line.png") if image else (10, 10)
    created = utcnow()
    store.create_job(c.services.db, id=job_id, bid=plan.bid, tid=plan.tid, status=status,
                     callback_url=callback, image_name="line.png", width=width,
                     height=height, batches_done=0, created_at=created,
                     started_at=created if status == "running" else None,
                     stage="recognize" if status == "running" else None)
    if image:
        c.services.blobs.put(job_id, image)
    if tasks:
        c.services.cache.add_tasks(job_id, tasks)
    return created


def wait_rows(c: Cluster, ids: list[str], timeout_s: float) -> dict[str, Job]:
    deadline = time.monotonic() + timeout_s
    rows: dict[str, Job] = {}
    while time.monotonic() < deadline and len(rows) < len(ids):
        for job_id in ids:
            job = store.get_job(c.services.db, job_id)
            if job is not None and job.finished_at is not None:
                rows[job_id] = job
        time.sleep(0.1)
    assert len(rows) == len(ids), (ids, list(rows), c.log_tail(WORKER))
    return rows


def test_stuck_jobs_end_within_deadline_plus_one_interval(
        cluster: Cluster, hooks: tuple[str, list[str]]) -> None:
    url, calls = hooks
    running, queued = "a1" * 16, "b2" * 16  # lost messages: the Redis broker was flushed
    abandoned, gone = "c3" * 16, "d4" * 16  # the web process died before the enqueue
    created = {
        # With its image: a running job whose image is gone fails "lost" at once.
        running: record(cluster, running, "running", callback=f"{url}/running",
                        image=line_image("Paid 3.00")),
        queued: record(cluster, queued, "queued", tasks=["lost-task"]),
        abandoned: record(cluster, abandoned, "queued", callback=f"{url}/abandoned",
                          image=line_image("Invoice 4711")),
        gone: record(cluster, gone, "queued"),
    }
    rows = wait_rows(cluster, list(created), DEADLINE + INTERVAL + 30)
    took = {k: (rows[k].finished_at - created[k]).total_seconds()  # type: ignore[operator]
            for k in created}
    bound = INTERVAL + BEAT + 2.0  # one interval, one heartbeat, the sweep's own time
    for job_id in (running, queued):
        assert rows[job_id].status == "failed", rows[job_id].error
        assert rows[job_id].error["code"] == "deadline_exceeded"  # type: ignore[index]
        assert DEADLINE <= took[job_id] <= DEADLINE + bound, took
    assert rows[gone].status == "failed" and rows[gone].error["code"] == "lost"  # type: ignore[index]
    assert REDRIVE <= took[gone] <= REDRIVE + bound, took
    # Re-driven by the sweeper, then read by the worker as any job.
    assert rows[abandoned].status == "succeeded", (rows[abandoned].error, took)
    assert "4711" in (store.get_result(cluster.services.db, abandoned) or {})["lines"][0]["text"]
    assert took[abandoned] < DEADLINE
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and sorted(calls) != ["/abandoned", "/running"]:
        time.sleep(0.1)
    assert sorted(calls) == ["/abandoned", "/running"]
    assert "re-driven" in cluster.log_tail(WORKER, 20_000)
    print(f"\nsweeper: time to terminal (s) {({k[:2]: round(v, 2) for k, v in took.items()})}")


def test_no_task_counter_outlives_its_task(cluster: Cluster,
                                           hooks: tuple[str, list[str]]) -> None:
    url, calls = hooks
    job_id = cluster.submit(line_image("Total 12.50"))
    assert cluster.wait_jobs([job_id], timeout_s=120)[job_id]["status"] == "succeeded"
    assert cluster.services.cache.tasks(job_id)  # its tasks were counted under these ids
    hooked = "e5" * 16
    record(cluster, hooked, "queued", callback=f"{url}/hooked",
           image=line_image("Paid 7.00"))  # re-driven, then a webhook task as well
    wait_rows(cluster, [hooked], DEADLINE + 30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (calls != ["/hooked"] or cluster.task_starts()):
        time.sleep(0.1)
    assert calls == ["/hooked"]
    assert cluster.task_starts() == {}  # every ocrq:delivery:* key went with its task


def test_overdue_is_measured_from_creation(cluster: Cluster) -> None:
    """A job created longer ago than the deadline goes at the next sweep, not later."""
    job_id = "f6" * 16
    store.create_job(cluster.services.db, id=job_id, bid="default", tid="ocr-upright",
                     status="running", image_name="x.png", width=1, height=1,
                     batches_done=0, created_at=utcnow() - timedelta(seconds=DEADLINE * 4))
    start = utcnow()
    row = wait_rows(cluster, [job_id], INTERVAL + 30)[job_id]
    assert row.error["code"] == "deadline_exceeded"  # type: ignore[index]
    assert (row.finished_at - start).total_seconds() <= INTERVAL + BEAT + 2.0  # type: ignore[operator]
