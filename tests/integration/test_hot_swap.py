"""Acceptance: model versions swapped and rolled out under load, on real worker processes.

One GPU-queue worker (CPU fallback on this machine) and one CPU worker, real
Redis broker, SQLite, jobs through the intake call the HTTP API uses.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from ocrq.cluster.rollout import wait
from tests.integration.cluster_harness import Cluster, gpu_and_cpu_cluster, line_image

pytestmark = [pytest.mark.services, pytest.mark.timeout(600)]
WORDS = ["Invoice 4711", "Total 12.50", "Paid cash", "Receipt 0042", "Thank you"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with gpu_and_cpu_cluster(tmp_path_factory.mktemp("hotswap")) as c:
        yield c


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    return [line_image(w) for w in WORDS]


def _versions(docs: dict[str, dict]) -> list[int]:
    out = []
    for doc in docs.values():
        assert doc["status"] == "succeeded", doc["error"]
        out.append(doc["result"]["models"]["str"])
    return out


def test_swap_recognition_to_v2_under_load(cluster: Cluster, images: list[bytes]) -> None:
    pids_before = cluster.pids()
    ids = [cluster.submit(images[i % len(images)]) for i in range(200)]
    # Activate while most of the 200 are still queued or running.
    while sum(cluster.document(i)["status"] == "succeeded" for i in ids[:20]) < 5:
        time.sleep(0.05)
    cluster.control().activate("str", 2, actor="test")
    rollout = wait(cluster.redis, "str", 2, timeout_s=60)
    assert rollout.done and not rollout.failed and len(rollout.serving) == 2, rollout
    after = [cluster.submit(images[i % len(images)]) for i in range(20)]
    docs = cluster.wait_jobs(ids + after)
    before_versions = _versions({i: docs[i] for i in ids})
    assert set(before_versions) == {1, 2}, "the swap happened while jobs were in flight"
    assert set(_versions({i: docs[i] for i in after})) == {2}
    # Text did not change (v2 is a copy of v1) and the models did not restart.
    for k, job_id in enumerate(ids[:10]):
        assert docs[job_id]["result"]["lines"][0]["text"] == WORDS[k % len(WORDS)]
    assert cluster.pids() == pids_before
    status = {(r["worker"], r["model"], r["version"]) for r in cluster.snapshot().status_rows()}
    assert all(v == "2 (active)" for (_, m, v) in status if m == "str")


def test_corrupt_version_fails_and_previous_keeps_serving(cluster: Cluster,
                                                          images: list[bytes]) -> None:
    serving = cluster.control().desired().versions["str"]
    bad = cluster.repo.add_version("str", cluster.repo.manifest("str", 1).weights_path)
    data = bytearray(bad.weights_path.read_bytes())
    data[len(data) // 3] ^= 0x55
    bad.weights_path.write_bytes(bytes(data))
    ids = [cluster.submit(images[i % len(images)]) for i in range(30)]
    cluster.control().activate("str", bad.version, actor="test")
    rollout = wait(cluster.redis, "str", bad.version, timeout_s=60)
    assert len(rollout.failed) == 2 and not rollout.serving, rollout
    assert all("checksum mismatch" in reason for reason in rollout.failed.values())
    ids += [cluster.submit(images[i % len(images)]) for i in range(10)]
    docs = cluster.wait_jobs(ids)
    assert set(_versions(docs)) == {serving}
    rows = cluster.snapshot().status_rows()
    failed = [r for r in rows if r["model"] == "str" and r["version"] == str(bad.version)]
    assert len(failed) == 2 and all(r["status"].startswith("FAILED (") for r in failed)
    # Roll back: the desired state returns to the version that kept serving.
    assert cluster.control().rollback("str").version == serving
    assert wait(cluster.redis, "str", serving, timeout_s=30).done


def test_canary_version_for_one_bid(cluster: Cluster, images: list[bytes]) -> None:
    control = cluster.control()
    base = control.desired().versions["str"]
    canary = 1 if base != 1 else 2
    control.activate("str", canary, bid="default", actor="test")
    assert wait(cluster.redis, "str", canary, bid="default", timeout_s=30).done
    docs = cluster.wait_jobs([cluster.submit(images[0], bid="default") for _ in range(4)])
    assert set(_versions(docs)) == {canary}
    control.rollback("str", bid="default")
    deadline = time.monotonic() + 30  # the withdrawal is a broadcast like any other
    while any("default" in m.get("bids", ()) for w in cluster.snapshot().workers
              for p in w.processes for m in p.models):
        assert time.monotonic() < deadline, "canary pin not withdrawn"
        time.sleep(0.1)
    docs = cluster.wait_jobs([cluster.submit(images[0], bid="default") for _ in range(4)])
    assert set(_versions(docs)) == {base}


def test_worker_started_later_loads_the_desired_version(cluster: Cluster) -> None:
    desired = cluster.control().desired().versions["str"]
    latest = cluster.repo.latest("str")
    assert desired != latest  # the newest on disk is the corrupt one: must not be chosen
    cluster.start_worker("cpu", "cpu2@test", "cpu")
    try:
        cluster.wait_ready("cpu2@test")
        late = next(w for w in cluster.snapshot().workers if w.name == "cpu2@test")
        assert late.ready_models()["str"] == desired
        # Booted straight onto it: the newest (corrupt) version was never even tried.
        assert [(m["version"], m["status"]) for p in late.processes for m in p.models
                if m["name"] == "str"] == [(desired, "READY")]
    finally:
        cluster.kill_worker("cpu2@test", sig=15)


