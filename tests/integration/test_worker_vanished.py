"""A whole worker vanishes mid-task (node lost): Redis hands its unacknowledged
message to another worker after the visibility timeout — real workers, Redis."""

from __future__ import annotations

import time

import pytest

from tests.integration.cluster_harness import line_image, one_worker_cluster

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]


def test_a_task_taken_by_a_vanished_worker_runs_elsewhere(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    # The whole worker (node and pool) dies mid-task, as when its machine goes:
    # nobody requeues the message; Redis hands it out again after the
    # visibility timeout, and the job still succeeds on another worker.
    with one_worker_cluster(tmp_path_factory.mktemp("vanish"), "cpu", "gone@test", "gpu,cpu",
                            OCRQ_VISIBILITY_TIMEOUT_S="4") as c:
        seen = c.task_starts()
        job = c.submit(line_image("Orphan 77"))
        deadline = time.monotonic() + 60
        while not any(n > seen.get(k, 0) for k, n in c.task_starts().items()):
            assert time.monotonic() < deadline, c.log_tail("gone@test")
            time.sleep(0.005)
        lost = time.monotonic()
        c.kill_worker("gone@test")  # SIGKILL to the process group: nothing acks or requeues
        assert c.document(job)["status"] in ("queued", "running")  # not finished
        c.start_worker("cpu", "heir@test", "gpu,cpu")  # stopped with the cluster
        # The job's delivery counters are deleted when it ends: watch them while it runs.
        most, deadline = 0, time.monotonic() + 90
        while c.document(job)["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, c.log_tail("heir@test")
            most = max([most, *c.task_starts().values()])
            time.sleep(0.005)
        done = c.document(job)
        assert done["status"] == "succeeded", (done, c.log_tail("heir@test"))
        assert "77" in done["result"]["lines"][0]["text"]
        assert most == 2  # the same task, started a second time
        assert c.task_starts() == {}  # and its counter gone with the job
        assert time.monotonic() - lost >= 4  # not before the visibility timeout
