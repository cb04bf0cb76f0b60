"""The GPU worker entry point (CPU fallback here) merges recognition batches across jobs.

One ``python -m workers.gpu``: its tensor server (ONNX Runtime on the CPU
here) and 4 prefork feeder processes consuming every queue; several
multi-line pages are submitted at once. Each job must read exactly what the
in-process Engine reads on the same image, every feeder's models must be
served remotely, and the server's counters must show fewer recognition
forward passes than recognition calls: the feeders' batches met there.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from redis import Redis

from ocrq.cluster.snapshot import ProcessView
from ocrq.models.repository import ModelRepository
from ocrq.models.serving.client import stats
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
    env = cluster_env(tmp, BROKER_DB, CACHE_DB, OCRQ_BATCH_WAIT_MS="100",
                      OCRQ_TENSOR_SOCKET=str(tmp / "tensor.sock"))
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


def _feeders(c: Cluster, n: int) -> tuple[ProcessView, ...]:
    """The worker's ``n`` feeder processes in the live snapshot (what /v1/cluster
    serves), once each has its OCR models ready (the harness waits for one)."""
    deadline = time.monotonic() + 90
    while True:
        procs = next(w for w in c.snapshot().workers if w.name == WORKER).processes
        if len(procs) >= n and all({"std", "str"} <= set(p.ready()) for p in procs):
            return procs
        assert time.monotonic() < deadline, f"{len(procs)} feeders ready, not {n}"
        time.sleep(0.5)


def _str_counters(c: Cluster) -> dict[str, int]:
    """The recogniser's batching counters in the tensor server (one process merges)."""
    models = stats(c.env["OCRQ_TENSOR_SOCKET"])["models"]
    return next(m["stats"] for m in models.values() if m["name"] == "str")


def test_concurrent_jobs_share_recognition_passes_and_read_like_the_engine(
        cluster: Cluster) -> None:
    from ocrq.document import PageResult
    from ocrq.engine import Engine
    from ocrq.images import decode_image

    images = [page(i) for i in range(8)]
    feeders = _feeders(cluster, 4)
    assert len(feeders) == 4  # prefork children, one per -c
    for proc in feeders:  # forward passes in the server, on its device
        ocr = [m for m in proc.models if m["name"] in ("std", "str")]
        assert {m["backend"] for m in ocr} == {"remote"}, ocr
        assert {m["device"] for m in ocr} == {"cpu"} and proc.device == "cpu", ocr
    before = _str_counters(cluster)
    ids = [cluster.submit(data, tid="ocr", name=f"p{i}.png") for i, data in enumerate(images)]
    docs = cluster.wait_jobs(ids, timeout_s=120)

    engine = Engine.from_settings(cluster.settings.with_(batch_wait_ms=0.0))
    for job_id, data in zip(ids, images, strict=True):
        doc = docs[job_id]
        assert doc["status"] == "succeeded", doc.get("error")
        local = engine.run(decode_image(data, "p.png", cluster.settings), name="p.png")
        got = PageResult.from_dict(doc["result"])
        assert len(got.lines) >= 5
        assert got.text() == local.text(), (got.text(), local.text())

    after = _str_counters(cluster)
    calls, passes = after["calls"] - before["calls"], after["passes"] - before["passes"]
    assert calls >= len(ids), after
    assert passes < calls, f"no recognition batches merged: {after}"
    assert after["max_rows"] <= after["max_batch"]
