"""Under the prefork pool (CPU workers) a stage past its time limit fails its job
with the same ``time_limit`` error as under the threads pool — not as an
``internal_error`` (Celery raises SoftTimeLimitExceeded inside the task)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures import encode, render_page
from tests.integration.cluster_harness import Cluster, line_image, one_worker_cluster

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]
WORKER = "slowcpu1@test"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # Hard limit 2 s, soft limit 1 s (CeleryConfig: hard - 30 s, at least 1 s).
    with one_worker_cluster(tmp_path_factory.mktemp("limitcpu"), "cpu", WORKER, "gpu,cpu",
                            OCRQ_TASK_TIME_LIMIT_S="2", OCRQ_THREADS="1") as c:
        yield c


def test_a_prefork_stage_past_its_soft_limit_fails_the_job_with_time_limit(
        cluster: Cluster) -> None:
    cols = [[f"Line {c * 40 + i:03d} of a long page" for i in range(40)] for c in range(5)]
    job = cluster.submit(encode(render_page([], columns=cols, size=24), "png"))
    doc = cluster.wait_jobs([job], timeout_s=120)[job]
    assert doc["status"] == "failed", doc
    assert doc["error"]["code"] == "time_limit", doc["error"]
    assert doc["error"]["task"] in ("detect", "recognize"), doc["error"]
    assert "s time limit" in doc["error"]["message"]
    # The child survived its soft limit and serves the next job.
    quick = cluster.submit(line_image("Invoice 4711"))
    done = cluster.wait_jobs([quick], timeout_s=60)[quick]
    assert done["status"] == "succeeded", done
