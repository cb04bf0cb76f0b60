"""A page that kills every worker process taking it fails its job instead of
coming back forever (acks_late + requeue on worker loss): real workers, Redis."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.integration.cluster_harness import Cluster, line_image, one_worker_cluster

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]
WORKER = "lost1@test"
LIMIT = 2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with one_worker_cluster(tmp_path_factory.mktemp("lost"), "cpu", WORKER, "gpu,cpu",
                            OCRQ_MAX_DELIVERIES=str(LIMIT)) as c:
        yield c


def _children(c: Cluster) -> list[psutil.Process]:
    return psutil.Process(c.workers[WORKER].pid).children()


def test_a_task_whose_worker_dies_each_time_fails_the_job(cluster: Cluster) -> None:
    seen = cluster.task_starts()
    job = cluster.submit(line_image("Killer page 1"))
    kills = 0
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        now = cluster.task_starts()
        fresh = {k: n for k, n in now.items() if n > seen.get(k, 0)}
        if fresh:
            seen = now
            if max(fresh.values()) <= LIMIT:  # a run of the task has begun: kill it
                for child in _children(cluster):
                    os.kill(child.pid, signal.SIGKILL)
                kills += 1
        if cluster.document(job)["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.005)
    doc = cluster.document(job)
    assert doc["status"] == "failed", (doc, kills, cluster.log_tail(WORKER))
    assert doc["error"]["code"] == "worker_lost", doc["error"]
    assert f"lost {LIMIT} times" in doc["error"]["message"]
    assert kills == LIMIT
    # The worker itself lives on and serves the next job.
    other = cluster.submit(line_image("Invoice 4711"))
    done = cluster.wait_jobs([other], timeout_s=120)[other]
    assert done["status"] == "succeeded", done
    assert "4711" in done["result"]["lines"][0]["text"]


def test_a_task_whose_worker_died_once_runs_again_and_succeeds(cluster: Cluster) -> None:
    seen = cluster.task_starts()
    job = cluster.submit(line_image("Survivor 42"))
    killed = False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not killed:
        now = cluster.task_starts()
        if any(n > seen.get(k, 0) for k, n in now.items()):
            for child in _children(cluster):
                os.kill(child.pid, signal.SIGKILL)
            killed = True
        time.sleep(0.005)
    assert killed
    done = cluster.wait_jobs([job], timeout_s=120)[job]
    assert done["status"] == "succeeded", (done, cluster.log_tail(WORKER))
    assert "42" in done["result"]["lines"][0]["text"]


def test_log_says_why(cluster: Cluster) -> None:
    assert "step was lost 2 times; giving up" in Path(cluster.tmp / "lost1.log").read_text()

