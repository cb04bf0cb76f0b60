"""End-to-end tests of the distributed pipeline: HTTP intake -> Celery canvas on
real worker processes -> MariaDB/SQLite + Redis -> polling and webhooks."""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import event

from ocrq.document import PageResult
from ocrq.images import decode_image
from ocrq.storage import Delivery, JobStatus, Result
from ocrq.storage import jobs as store
from tests.fixtures import encode, png_header_only, render_page
from tests.integration.conftest import Stack

pytestmark = pytest.mark.services

ONE_LINE = ["Invoice 42"]


@pytest.fixture(scope="module")
def one_line_png() -> bytes:
    return encode(render_page(ONE_LINE), "png")


@pytest.fixture(scope="module")
def page_200_png() -> bytes:
    # 8 columns x 25 short lines at 24 px: 200 lines that recognise quickly.
    cols = [[f"N{c * 25 + i:03d}" for i in range(25)] for c in range(8)]
    return encode(render_page([], columns=cols, size=24), "png")


@pytest.fixture
def st(stack: Stack) -> Iterator[Stack]:
    stack.reset()
    yield stack


def submit(base: str, data: bytes, name: str = "page.png", headers: dict | None = None,
           **fields: str) -> requests.Response:
    return requests.post(f"{base}/v1/jobs", files={"image": (name, data, "image/png")},
                         data=fields, headers=headers or {}, timeout=30)


def wait_stage(st: Stack, job_id: str, stage: str, min_done: int = 0,
               timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        flat = st.services.cache.get(job_id) or {}
        if flat.get("stage") == stage and int(flat.get("batches_done") or 0) >= min_done:
            return flat
        assert flat.get("status") not in ("succeeded", "failed", "cancelled"), flat
        time.sleep(0.005)
    raise AssertionError(f"job {job_id} never reached {stage}")


# --- end to end ----------------------------------------------------------------------------
def _end_to_end(st: Stack, data: bytes) -> None:
    base = st.web()
    r = submit(base, data, "receipt.png")
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "queued" and r.headers["Location"] == f"/v1/jobs/{job['id']}"
    doc = st.wait(base, job["id"])
    assert doc["status"] == "succeeded", doc["error"]
    assert doc["started_at"] and doc["finished_at"] and doc["progress"]["batches_done"] == 1
    result = requests.get(f"{base}/v1/jobs/{job['id']}/result", timeout=10).json()
    assert result == doc["result"]
    assert set(result["models"]) >= {"std", "str"}
    assert PageResult.from_dict(result).text() == "Invoice 42"
    # Cost per step, gathered from the tasks (and processes) that ran each step.
    cost = result["cost"]
    assert set(cost) == {"rotate", "detect", "recognize", "reorder", "total"}, cost
    for step in ("detect", "recognize"):
        assert cost[step]["cpu_s"] > 0, cost
    assert all(c["gpu_s"] == 0 for c in cost.values()), cost  # no GPU in these stacks
    total = sum(c["cpu_s"] for k, c in cost.items() if k != "total")
    assert abs(cost["total"]["cpu_s"] - total) < 1e-5, cost
    # The system of record has the same document and the model versions.
    assert store.get_result(st.services.db, job["id"]) == result
    assert store.get_job(st.services.db, job["id"]).status == "succeeded"


def test_end_to_end_mariadb(st: Stack, one_line_png: bytes) -> None:
    _end_to_end(st, one_line_png)


def test_end_to_end_sqlite_gpu_and_cpu_workers(sqlite_stack: Stack, one_line_png: bytes
                                               ) -> None:
    sqlite_stack.reset()
    _end_to_end(sqlite_stack, one_line_png)
    logs = sqlite_stack.logs()
    # The GPU entry point started without a GPU: its tensor server ran the forward
    # passes on the CPU, its feeder served the gpu queue ...
    assert "no CUDA device available: tensor server running on CPU" in logs
    gpu_log = next(sqlite_stack.tmp.glob("worker-sqlite-gpu.log")).read_text()
    assert "Task ocrq.detect[" in gpu_log and "Task ocrq.reorder[" not in gpu_log
    assert "LOAD std v1 on cpu" in gpu_log and "LOAD str v1 on cpu" in gpu_log
    cpu_log = next(sqlite_stack.tmp.glob("worker-sqlite-cpu.log")).read_text()
    assert "Task ocrq.reorder[" in cpu_log  # ... and reorder went to the cpu queue (the plan)
    # Models load once per worker process, not per task.
    assert logs.count("worker process models ready") == 2


def test_retention_purge(st: Stack) -> None:
    from datetime import timedelta

    from ocrq.storage.models import utcnow

    db = st.services.db
    old = utcnow() - timedelta(days=40)
    for job_id, created, status in (("old", old, "succeeded"), ("new", utcnow(), "succeeded"),
                                    ("oldrunning", old, "running")):
        store.create_job(db, id=job_id, bid="default", tid="ocr", status=status,
                         image_name="x.png", width=1, height=1, batches_done=0,
                         created_at=created)
    store.finish_job(db, "new", JobStatus.SUCCEEDED, document={"models": {}})
    with db.session() as s:
        s.add(Result(job_id="old", document={"models": {}}, models={}))
        s.add(Delivery(job_id="old", attempt=1, url="http://x", ok=True))
    assert store.purge(db, retention_days=30) == 1
    assert store.get_job(db, "old") is None and store.get_result(db, "old") is None
    assert store.deliveries(db, "old") == []
    assert store.get_job(db, "new") is not None  # recent
    assert store.get_job(db, "oldrunning") is not None  # unfinished jobs are never purged


@pytest.mark.parametrize("backend", ["sqlite", "mariadb"])
def test_migrations_upgrade_downgrade(backend: str, tmp_path: Path, mariadb_url: str) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, inspect

    from ocrq.cli.serve import MIGRATIONS, upgrade

    url = f"sqlite:///{tmp_path / 'm.sqlite3'}" if backend == "sqlite" else mariadb_url + "_mig"
    if backend == "mariadb":
        import pymysql

        from tests.integration.conftest import MARIADB

        with pymysql.connect(**MARIADB) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {url.rsplit('/', 1)[1]}")
    try:
        upgrade(url)
        tables = {"ocrq_jobs", "ocrq_results", "ocrq_webhook_deliveries"}
        engine = create_engine(url)
        assert tables <= set(inspect(engine).get_table_names())
        cfg = Config(str(MIGRATIONS / "alembic.ini"))
        cfg.set_main_option("sqlalchemy.url", url)
        command.downgrade(cfg, "base")
        assert not tables & set(inspect(engine).get_table_names())
        upgrade(url)
        assert tables <= set(inspect(engine).get_table_names())
        engine.dispose()
    finally:
        if backend == "mariadb":
            with pymysql.connect(**MARIADB) as conn, conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]}")


def test_fan_out_200_lines_same_text_as_engine(st: Stack, page_200_png: bytes) -> None:
    from ocrq.engine import Engine

    base = st.web()
    job = submit(base, page_200_png).json()
    doc = st.wait(base, job["id"])
    assert doc["status"] == "succeeded", doc["error"]
    page = PageResult.from_dict(doc["result"])
    n = len(page.lines)
    assert n >= 195  # the rendered page has 200 lines
    total = doc["progress"]["batches_total"]
    # Lines kept after recognition <= lines detected; batches cover the detected lines.
    assert total == doc["progress"]["batches_done"] >= math.ceil(n / 32) >= 7, doc["progress"]
    local = Engine.from_settings(st.settings).run(decode_image(page_200_png, "page.png"),
                                                  "page.png")
    assert page.text() == local.text(), (page.to_dict(), local.to_dict())


def test_dot_leaders_found_at_detection_reach_the_result(st: Stack) -> None:
    from ocrq.engine import Engine
    from tests.fixtures import dots, label_with

    image, _ = label_with(dots(18))
    base = st.web()
    doc = st.wait(base, submit(base, encode(image, "png")).json()["id"])
    assert doc["status"] == "succeeded", doc["error"]
    page = PageResult.from_dict(doc["result"])
    assert page.text() == "TOTAL AMT" + "." * 18
    # The line's polygon drawn out to the last dot, as in-process (Lines.leader_reach).
    local = Engine.from_settings(st.settings).run(image, "leader.png")
    assert [ln.polygon for ln in page.lines] == [ln.polygon for ln in local.lines]


def test_bid_options_and_json_base64_intake(st: Stack, one_line_png: bytes) -> None:
    base = st.web()
    r = requests.post(f"{base}/v1/jobs", json={
        "image_base64": base64.b64encode(one_line_png).decode(), "bid": "acme",
        "tid": "ocr-upright", "name": "one.png"}, timeout=30)
    assert r.status_code == 202, r.text
    doc = st.wait(base, r.json()["id"])
    assert (doc["bid"], doc["tid"], doc["status"]) == ("acme", "ocr-upright", "succeeded")
    assert "rot" not in doc["result"]["models"]  # the plan skips the orientation step


def test_a_bids_lexicon_reaches_recognition(st: Stack) -> None:
    from tests.fixtures import blurred_line

    data = encode(blurred_line(), "png")
    base = st.web()
    texts = {}
    # literal: recognize.lexicon = [] and recognize.second_reading = 0 in plans.yaml
    for bid in ("default", "literal"):
        r = requests.post(f"{base}/v1/jobs", files={"image": ("m.png", data, "image/png")},
                          data={"bid": bid, "tid": "ocr-upright"}, timeout=30)
        doc = st.wait(base, r.json()["id"])
        assert doc["status"] == "succeeded", doc["error"]
        texts[bid] = PageResult.from_dict(doc["result"]).text()
    assert texts["default"] == "MEDIUM MONTH"
    assert texts["literal"] != "MEDIUM MONTH", texts


# --- polling from Redis --------------------------------------------------------------------
def test_status_polling_served_from_redis(st: Stack, one_line_png: bytes) -> None:
    base = st.web()
    job_id = submit(base, one_line_png).json()["id"]
    st.wait(base, job_id)
    statements: list[str] = []
    event.listen(st.app.extensions["ocrq"].db.engine, "before_cursor_execute",
                 lambda *a: statements.append(a[2]))
    for _ in range(3):
        assert requests.get(f"{base}/v1/jobs/{job_id}", timeout=10).json()["status"] == \
            "succeeded"
    assert statements == []
    # Cache gone (TTL): the DB answers and the cache is filled again.
    st.store.delete(st.services.cache.key(job_id))
    doc = requests.get(f"{base}/v1/jobs/{job_id}", timeout=10).json()
    assert doc["status"] == "succeeded" and doc["result"]["lines"]
    assert statements and st.services.cache.get(job_id) is not None


# --- failure, cancel, idempotency --------------------------------------------------------
def test_recognition_batch_failure_marks_job_failed(st: Stack, page_200_png: bytes) -> None:
    """A real failure inside the chord: the image blob disappears after detection."""
    base = st.web()
    job_id = submit(base, page_200_png, bid="acme").json()["id"]  # acme: 8 lines per batch
    wait_stage(st, job_id, "recognize", min_done=1)
    st.store.delete(st.services.blobs.key_for(job_id))
    doc = st.wait(base, job_id)
    assert doc["status"] == "failed"
    assert doc["error"]["code"] == "image_expired"
    assert doc["error"]["task"] == "ocrq.recognize"
    assert 1 <= doc["progress"]["batches_done"] < doc["progress"]["batches_total"]
    assert store.get_job(st.services.db, job_id).error["code"] == "image_expired"
    r = requests.get(f"{base}/v1/jobs/{job_id}/result", timeout=10)
    assert r.status_code == 409 and r.json()["error"]["status"] == "failed"


def test_cancel_revokes_queued_and_running_work(st: Stack, page_200_png: bytes,
                                                 one_line_png: bytes) -> None:
    from ocrq.cluster.drain import consumed_queues, drain, resume
    from ocrq.pipeline.app import create_celery_app

    base = st.web()
    app = create_celery_app(st.settings)
    workers = list(st.cluster.processes)  # node names
    running = submit(base, page_200_png, bid="acme").json()["id"]
    wait_stage(st, running, "recognize", min_done=1)
    # Stop the worker taking messages (it keeps at most one running and one prefetched
    # batch of the 25): the big job stays unfinished and the small one stays queued,
    # instead of racing the worker to the DELETE (the drain takes ~0.1 s, 23 batches'
    # margin after the first one is done).
    drained = {w: consumed_queues(app, w) for w in workers}
    try:
        for worker in workers:
            drain(app, st.store, worker, timeout_s=0)
        queued = submit(base, one_line_png).json()["id"]
        for job_id in (running, queued):
            r = requests.delete(f"{base}/v1/jobs/{job_id}", timeout=10)
            assert r.status_code == 200 and r.json()["status"] == "cancelled"
    finally:  # whatever failed: the session's workers consume again for later tests
        for worker, queues in drained.items():
            resume(app, st.store, worker, queues=queues)
        assert {w: consumed_queues(app, w) for w in workers} == drained
    # Let the worker drain the revoked messages (it must skip them, not run them).
    deadline = time.monotonic() + 30
    while st.queued_messages() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert st.queued_messages() == 0
    time.sleep(1.0)
    big = requests.get(f"{base}/v1/jobs/{running}", timeout=10).json()
    small = requests.get(f"{base}/v1/jobs/{queued}", timeout=10).json()
    assert big["status"] == small["status"] == "cancelled"
    assert big["progress"]["batches_done"] < big["progress"]["batches_total"]
    assert small["started_at"] is None  # its tasks were revoked before they ran
    assert store.get_result(st.services.db, running) is None
    assert requests.delete(f"{base}/v1/jobs/{running}", timeout=10).status_code == 200
    assert requests.delete(f"{base}/v1/jobs/nope", timeout=10).status_code == 404


def test_idempotent_resubmit(st: Stack, one_line_png: bytes) -> None:
    base = st.web()
    key = {"Idempotency-Key": "order-7"}
    first = submit(base, one_line_png, headers=key)
    again = submit(base, one_line_png, headers=key)
    other_bid = submit(base, one_line_png, headers=key, bid="acme")
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert other_bid.json()["id"] != first.json()["id"]
    assert st.job_rows() == 2
    for job_id in (first.json()["id"], other_bid.json()["id"]):
        assert st.wait(base, job_id)["status"] == "succeeded"


# --- bad inputs: 4xx JSON and nothing queued ------------------------------------------
@pytest.mark.parametrize("case", ["not_image", "too_large_bytes", "pixel_bomb", "unknown_tid",
                                  "unknown_bid", "image_url_loopback", "callback_private",
                                  "no_image"])
def test_bad_inputs_are_refused_before_enqueue(st: Stack, one_line_png: bytes,
                                               case: str) -> None:
    base = st.web(max_upload_bytes=200_000)
    before = (st.job_rows(), st.queued_messages())
    if case == "not_image":
        r = submit(base, b"hello, this is text", "notes.png")
        expect = (400, "invalid_image")
    elif case == "too_large_bytes":
        r = submit(base, one_line_png + b"\0" * 400_000)
        expect = (413, "request_entity_too_large")
    elif case == "pixel_bomb":
        r = submit(base, png_header_only(30000, 30000))
        expect = (413, "image_too_large")
    elif case == "unknown_tid":
        r = submit(base, one_line_png, tid="handwriting")
        expect = (400, "unknown_plan")
        assert r.json()["error"]["known"] == ["ocr", "ocr-upright"]
    elif case == "unknown_bid":
        r = submit(base, one_line_png, bid="globex")
        expect = (400, "unknown_plan")
        assert "acme" not in r.json()["error"]["message"]  # other bids are not listed
    elif case == "image_url_loopback":
        r = requests.post(f"{base}/v1/jobs", json={"image_url": f"{base}/healthz"}, timeout=10)
        expect = (400, "unsafe_url")
    elif case == "callback_private":
        r = submit(base, one_line_png, callback_url="http://10.1.2.3/hook")
        expect = (400, "unsafe_url")
    else:
        r = requests.post(f"{base}/v1/jobs", json={"bid": "default"}, timeout=10)
        expect = (400, "bad_request")
    assert (r.status_code, r.json()["error"]["code"]) == expect, r.text
    assert r.json()["error"]["message"]
    assert (st.job_rows(), st.queued_messages()) == before == (0, 0)


def test_health_readiness_and_openapi(st: Stack) -> None:
    base = st.web()
    assert requests.get(f"{base}/healthz", timeout=10).json() == {"status": "ok"}
    ready = requests.get(f"{base}/readyz", timeout=10)
    assert ready.status_code == 200 and set(ready.json()["checks"].values()) == {"ok"}
    spec = requests.get(f"{base}/v1/openapi.json", timeout=10).json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/result"} <= set(spec["paths"])
    # A broker nobody listens on: not ready, and the answer says which check failed.
    down = st.web(broker_url="redis://127.0.0.1:1/0")
    r = requests.get(f"{down}/readyz", timeout=30)
    assert r.status_code == 503 and r.json()["checks"]["broker"].startswith("error")
    # Submitting there: 503 JSON, and the job is recorded as failed, not left queued.
    image = encode(render_page(ONE_LINE), "png")
    key = {"Idempotency-Key": "retry-after-broker-outage"}
    r = submit(down, image, headers=key)
    assert (r.status_code, r.json()["error"]["code"]) == (503, "enqueue_failed"), r.text
    failed_id = r.json()["error"]["job_id"]
    job = store.get_job(st.services.db, failed_id)
    assert job.status == "failed" and job.error["code"] == "enqueue_failed"
    # The client retries with the same key once the broker is back: a new job runs.
    r = submit(base, image, headers=key)
    assert r.status_code == 202 and r.json()["id"] != failed_id, r.text
