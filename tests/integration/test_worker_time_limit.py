"""The GPU worker's threads pool (``--inprocess``, OCRQ_GPU_WORKER_MODE=inprocess)
fails a job whose stage runs past the time limit (Celery enforces limits in
prefork children only, as the default GPU worker's feeders are) — real
worker, Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.fixtures import encode, render_page
from tests.integration.cluster_harness import Cluster, line_image, one_worker_cluster

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]
WORKER = "slow1@test"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with one_worker_cluster(tmp_path_factory.mktemp("limit"), "gpu", WORKER, "gpu,cpu",
                            OCRQ_TASK_TIME_LIMIT_S="1", OCRQ_GPU_WORKER_MODE="inprocess") as c:
        yield c


def test_a_stage_past_its_time_limit_fails_the_job(cluster: Cluster) -> None:
    cols = [[f"Line {c * 40 + i:03d} of a long page" for i in range(40)] for c in range(5)]
    page = encode(render_page([], columns=cols, size=24), "png")
    started = time.monotonic()
    job = cluster.submit(page)
    doc = cluster.wait_jobs([job], timeout_s=120)[job]
    assert doc["status"] == "failed", doc
    # 200 lines: detection, or a recognition batch of 64 lines, runs past 1 s on
    # one thread (which one first depends on the machine's load).
    assert doc["error"]["code"] == "time_limit"
    assert doc["error"]["task"] in ("detect", "recognize"), doc["error"]
    assert "1 s time limit" in doc["error"]["message"]
    assert time.monotonic() - started < 30
    # The thread runs on and finishes its pass; the job stays failed.
    time.sleep(8)
    assert cluster.document(job)["status"] == "failed"
    # Quick jobs on the same worker are not affected.
    quick = cluster.submit(line_image("Invoice 4711"))
    done = cluster.wait_jobs([quick], timeout_s=60)[quick]
    assert done["status"] == "succeeded", done
    # The whole log: JSON lines of the later job push the error out of a short tail.
    assert "still running after its 1 s time limit" in cluster.log_tail(WORKER, 10**7)
