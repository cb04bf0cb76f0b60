"""The GPU worker entry point (CPU fallback here) merges recognition batches across jobs.

One ``python -m workers.gpu`` process with 4 task threads consumes every
queue; several multi-line pages are submitted at once. Each job must read
exactly what the in-process Engine reads on the same image, and the worker's
heartbeat must show fewer recognition forward passes than recognition calls.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from redis import Redis

from ocrq.cluster.snapshot import ProcessView
from ocrq.models.repository import ModelRepository
from ocrq.settings import Settings
from tests.integration.cluster_harness import Cluster, cluster_env, migrate

pytestmark = [pytest.mark.services, pytest.mark.timeout(240)]
BROKER_DB, CACHE_DB = 14, 15
WORKER = "gpubatch@test"
# Monospaced lines of equal length: crops of different pages land in the same
# width bucket, so their recognition batches have the same shape and can merge.
LINES = ["Invoice no %04d", "Paper A4  %5.2f", "Pens box  %5.2f", "Total     %5.2f",
         "Paid cash %5.2f", "Thank you %5.2f"]


def page(i: int) -> bytes:
    from tests.fixtures import encode, render_page

    text = [LINES[0] % (4711 + i)] + [s % (1.25 * (i + 1) + k) for k, s in enumerate(LINES[1:])]
    return encode(render_page(text, font="DejaVuSansMono", size=24, margin=16))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("gpubatch")
    # A beat every second (TTL 3 s): counters are read soon after the jobs. A wait
    # generous on a loaded 2-core CI box, so concurrent batches reliably meet.
    env = cluster_env(tmp, BROKER_DB, CACHE_DB, OCRQ_BATCH_WAIT_MS="100")
    for db in (BROKER_DB, CACHE_DB):
        Redis(db=db).flushdb()
    settings = Settings.from_env(env)
    migrate(settings.database_url)
    ModelRepository(settings.model_root).ensure_defaults()
    c = Cluster(tmp, env, settings)
    c.start_worker("gpu", WORKER, "gpu,cpu,webhooks", concurrency=4)
    try:
        c.wait_ready(WORKER)
        yield c
    finally:
        c.stop_all()


def _process(c: Cluster, newer_than: float = 0.0) -> ProcessView:
    """The worker's process in the live snapshot (what /v1/cluster serves), from a
    heartbeat written after ``newer_than``."""
    deadline = time.monotonic() + 10
    while True:
        w = next(w for w in c.snapshot().workers if w.name == WORKER)
        (proc,) = w.processes  # threads: one process serves every task
        if proc.ts > newer_than or time.monotonic() > deadline:
            return proc
        time.sleep(0.2)


def test_concurrent_jobs_share_recognition_passes_and_read_like_the_engine(
        cluster: Cluster) -> None:
    from ocrq.document import PageResult
    from ocrq.engine import Engine
    from ocrq.images import decode_image

    images = [page(i) for i in range(8)]
    before = _process(cluster).batching["str v1"]
    ids = [cluster.submit(data, tid="ocr", name=f"p{i}.png") for i, data in enumerate(images)]
    docs = cluster.wait_jobs(ids, timeout_s=120)
    finished = time.time()

    engine = Engine.from_settings(cluster.settings.with_(batch_wait_ms=0.0))
    for job_id, data in zip(ids, images, strict=True):
        doc = docs[job_id]
        assert doc["status"] == "succeeded", doc.get("error")
        local = engine.run(decode_image(data, "p.png", cluster.settings), name="p.png")
        got = PageResult.from_dict(doc["result"])
        assert len(got.lines) >= 5
        assert got.text() == local.text(), (got.text(), local.text())

    after = _process(cluster, newer_than=finished).batching["str v1"]
    calls, passes = after["calls"] - before["calls"], after["passes"] - before["passes"]
    assert calls >= len(ids), after
    assert passes < calls, f"no recognition batches merged: {after}"
    assert after["max_rows"] <= after["max_batch"]
