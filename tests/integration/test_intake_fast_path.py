"""Issue 14's lean intake, end to end: real worker processes run the jobs whose first
message the intake built itself (ocrq/pipeline/publish.py, not Celery's producer),
whose rows were committed in groups (ocrq/storage/group_commit.py), submitted as a
raw image body and as multipart, many at once over real HTTP.

The web app never starts Celery's producer (its pool stays unmade): every message
came from the fast path, and the worker read them as its own.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select

from ocrq.document import PageResult
from ocrq.storage import Result
from ocrq.storage import jobs as store
from tests.fixtures import encode, render_page
from tests.integration.conftest import Stack
from web.extensions import celery

pytestmark = pytest.mark.services


@pytest.fixture
def st(stack: Stack) -> Iterator[Stack]:
    stack.reset()
    yield stack


def test_concurrent_raw_and_multipart_submits_are_run_by_a_real_worker(st: Stack) -> None:
    png = encode(render_page(["Invoice 42"]), "png")
    base = st.web()

    def raw(i: int) -> requests.Response:
        return requests.post(f"{base}/v1/jobs?name=r{i}.png", data=png,
                             headers={"Content-Type": "image/png",
                                      "Idempotency-Key": f"fast-{i}"}, timeout=30)

    def multipart(i: int) -> requests.Response:
        return requests.post(f"{base}/v1/jobs", files={"image": (f"m{i}.png", io.BytesIO(png))},
                             timeout=30)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: (raw if i % 2 else multipart)(i), range(8)))
    assert [r.status_code for r in answers] == [202] * 8, [r.text for r in answers]
    ids = [r.json()["id"] for r in answers]
    assert len(set(ids)) == 8
    for job_id in ids:
        doc = st.wait(base, job_id)
        assert doc["status"] == "succeeded", doc["error"]
        assert PageResult.from_dict(doc["result"]).text() == "Invoice 42"
    with st.services.db.session() as s:  # exactly one result row per job
        assert s.scalar(select(func.count()).select_from(Result)) == 8
    assert store.count_jobs(st.services.db) == 8
    assert raw(1).json()["id"] == ids[1]  # the key still replays
    with st.app.app_context():
        assert celery().amqp._producer_pool is None  # no message went through Celery
