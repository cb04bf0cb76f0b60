"""Documents through the service: a 3-page PDF and a 2-page TIFF are one job each,
every page runs as its own canvas on the real worker, and the job's result lists
the pages with the text an in-process read of each page gives; intake refuses
too many pages and corrupt or encrypted PDFs before anything is recorded."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import requests

from ocrq import documents
from ocrq.document import PageResult
from ocrq.engine import Engine
from ocrq.storage import jobs as store
from tests.doc_fixtures import encrypted_pdf, pdf, tiff
from tests.fixtures import render_page
from tests.integration.conftest import Stack
from tests.integration.test_webhooks import Receiver

pytestmark = pytest.mark.services

LINES = [[f"Page {n} of three", f"Total {17 * n}.50 paid"] for n in (1, 2, 3)]


@pytest.fixture(scope="module")
def pages() -> list[np.ndarray]:
    return [render_page(lines) for lines in LINES]


@pytest.fixture(scope="module")
def engine(stack: Stack) -> Engine:
    return Engine.from_settings(stack.settings)


@pytest.fixture
def st(stack: Stack) -> Iterator[Stack]:
    stack.reset()
    yield stack


def _in_process(engine: Engine, data: bytes, name: str, st: Stack) -> list[str]:
    """Each page read in this process, rendered as the workers render it."""
    return [engine.run(img, name).text() for img in documents.pages(data, name, st.settings)]


def _task_lines(st: Stack, job_id: str) -> list[dict[str, Any]]:
    out = []
    for line in st.logs().splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            if rec.get("job_id") == job_id and rec.get("event") == "task_done":
                out.append(rec)
    return out


def _check_document(st: Stack, base: str, job_id: str, expected: list[str]) -> dict[str, Any]:
    doc = st.wait(base, job_id)
    assert doc["status"] == "succeeded", doc["error"]
    n = len(expected)
    assert doc["progress"]["pages_done"] == doc["progress"]["pages_total"] == n
    result = requests.get(f"{base}/v1/jobs/{job_id}/result", timeout=10).json()
    assert result == doc["result"] and result["page_count"] == n
    assert [p["page"] for p in result["pages"]] == list(range(1, n + 1))
    assert [PageResult.from_dict(p).text() for p in result["pages"]] == expected
    assert set(result["models"]) >= {"std", "str"}
    for p in result["pages"]:  # each page its own cost (its steps ran in its own tasks)
        assert p["cost"]["detect"]["cpu_s"] > 0 and p["cost"]["total"]["cpu_s"] > 0, p["cost"]
    assert store.get_result(st.services.db, job_id) == result  # the system of record
    # Each page was its own canvas: one detect task per page, one reorder per page.
    tasks = _task_lines(st, job_id)
    assert sum(1 for t in tasks if t["stage"] == "detect") == n, tasks
    assert sum(1 for t in tasks if t["stage"] == "reorder") == n, tasks
    # The pages' scratch hash and the document's blob are gone.
    assert not st.store.exists(f"ocrq:pages:{job_id}")
    assert not st.store.exists(st.services.blobs.key_for(job_id))
    return doc


def test_pdf_pages_are_one_job_each_page_its_own_canvas(st: Stack, pages: list[np.ndarray],
                                                        engine: Engine) -> None:
    data = pdf(pages)
    expected = _in_process(engine, data, "doc.pdf", st)
    assert len(expected) == 3 and all(f"Total {17 * n}" in t for n, t in zip(
        (1, 2, 3), expected, strict=True)), expected
    base = st.web()
    r = requests.post(f"{base}/v1/jobs", files={"image": ("doc.pdf", data, "application/pdf")},
                      timeout=30)
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["progress"]["pages_total"] == 3 and accepted["progress"]["pages_done"] == 0
    doc = _check_document(st, base, accepted["id"], expected)
    # The job's image is the document's first page, at the render DPI.
    info = documents.inspect(data, "doc.pdf", st.settings)
    assert info is not None
    assert (doc["image"]["width"], doc["image"]["height"]) == info.sizes[0]


def test_tiff_pages_by_base64_data_url(st: Stack, pages: list[np.ndarray],
                                       engine: Engine) -> None:
    data = tiff(pages[:2])
    expected = _in_process(engine, data, "scan.tif", st)
    assert len(expected) == 2
    base = st.web()
    r = requests.post(f"{base}/v1/jobs", json={"name": "scan.tif",
                                               "image_base64": base64.b64encode(data).decode()},
                      timeout=30)
    assert r.status_code == 202, r.text
    _check_document(st, base, r.json()["id"], expected)


def test_pdf_by_data_url(st: Stack, pages: list[np.ndarray]) -> None:
    base = st.web()
    url = "data:application/pdf;base64," + base64.b64encode(pdf(pages[:1])).decode()
    r = requests.post(f"{base}/v1/jobs", json={"image_base64": url}, timeout=30)
    assert r.status_code == 202, r.text
    doc = st.wait(base, r.json()["id"])
    assert doc["status"] == "succeeded" and doc["result"]["page_count"] == 1


def test_intake_refuses_bad_documents_before_any_job(st: Stack,
                                                      pages: list[np.ndarray]) -> None:
    base = st.web(max_pages=2)

    def post(data: bytes, name: str) -> requests.Response:
        return requests.post(f"{base}/v1/jobs", files={"image": (name, data, "application/pdf")},
                             timeout=30)

    for data, name in ((pdf(pages), "three.pdf"), (tiff(pages), "three.tif")):
        r = post(data, name)
        assert r.status_code == 413, r.text
        err = r.json()["error"]
        assert (err["code"], err["reason"], err["limit"]) == ("image_too_large",
                                                               "too_many_pages", 2)
    good = pdf(pages[:1])
    r = post(good[: len(good) // 2], "cut.pdf")
    assert r.status_code == 400 and r.json()["error"]["reason"] == "corrupt", r.text
    r = post(encrypted_pdf(pages[0]), "locked.pdf")
    assert r.status_code == 400 and r.json()["error"]["reason"] == "encrypted", r.text
    r = post(b"%PDF-1.7\n" + b"\x00" * 200, "junk.pdf")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_image", r.text
    big = st.web(pdf_dpi=2000, max_image_pixels=1_000_000)
    r = requests.post(f"{big}/v1/jobs", files={"image": ("big.pdf", good, "application/pdf")},
                      timeout=30)
    assert r.status_code == 413 and r.json()["error"]["reason"] == "too_many_pixels", r.text
    assert st.job_rows() == 0


def test_a_document_finishes_once_with_one_webhook(st: Stack, pages: list[np.ndarray]) -> None:
    """Four pages racing to be the last: exactly one finish, one webhook."""
    receiver = Receiver()
    try:
        base = st.web(allow_private_urls=True)  # the receiver is on loopback
        data = pdf([*pages, pages[0]])
        r = requests.post(f"{base}/v1/jobs", files={"image": ("four.pdf", data, "application/pdf")},
                          data={"callback_url": receiver.url}, timeout=30)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        doc = st.wait(base, job_id)
        assert doc["status"] == "succeeded", doc["error"]
        receiver.wait(1)
        time.sleep(2.0)  # a second webhook would come now
        assert len(receiver.calls) == 1
        body = json.loads(receiver.calls[0][1])
        assert body["id"] == job_id and body["result"]["page_count"] == 4
        assert len(store.deliveries(st.services.db, job_id)) == 1
    finally:
        receiver.close()
