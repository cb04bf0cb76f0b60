"""A submit whose body is the image itself (``Content-Type: image/jpeg``, the fields in
the query string): issue 14's cheapest submit. Same answers as multipart: 202 and a
queued job, 4xx JSON errors for bad input, Idempotency-Key replays, API-key tenancy.
Real Redis and SQLite through the Flask app (tests/conftest.py's web_app)."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest
from flask import Flask

from ocrq.settings import Settings
from ocrq.storage import Database
from ocrq.storage import keys as store
from tests.conftest import assert_api_error
from tests.doc_fixtures import pdf
from web import create_app


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    page = np.full((120, 400, 3), 250, np.uint8)
    cv2.putText(page, "TOTAL 42.00", (10, 70), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 0, 0), 2)
    return cv2.imencode(".jpg", page)[1].tobytes()


def test_a_raw_jpeg_is_a_queued_job(web_app: Flask, jpeg: bytes,
                                    web_counts: Callable[[], tuple[int, int]]) -> None:
    client = web_app.test_client()
    resp = client.post("/v1/jobs?tid=ocr&name=till.jpg&bid=default", data=jpeg,
                       content_type="image/jpeg")
    assert resp.status_code == 202, resp.get_data(as_text=True)
    doc = resp.get_json()
    assert (doc["status"], doc["bid"], doc["tid"]) == ("queued", "default", "ocr")
    assert doc["image"] == {"name": "till.jpg", "width": 400, "height": 120}
    assert client.get(resp.headers["Location"]).get_json()["id"] == doc["id"]
    unnamed = client.post("/v1/jobs", data=jpeg, content_type="image/jpeg")
    assert unnamed.status_code == 202 and unnamed.get_json()["image"]["name"] == "image"
    assert web_counts() == (2, 2)
    # Not an image type: a body without multipart or JSON, as before (a 400).
    assert_api_error(client.post("/v1/jobs", data=jpeg,
                                 content_type="application/octet-stream"), 400, "bad_request")


def test_bad_raw_bodies_are_4xx_and_write_nothing(
        web_app: Flask, jpeg: bytes, web_counts: Callable[[], tuple[int, int]]) -> None:
    client = web_app.test_client()
    assert_api_error(client.post("/v1/jobs", data=b"", content_type="image/jpeg"),
                     400, "bad_request")
    assert_api_error(client.post("/v1/jobs", data=jpeg[: len(jpeg) // 2],
                                 content_type="image/jpeg"), 400, "invalid_image")
    assert_api_error(client.post("/v1/jobs", data=b"not an image at all",
                                 content_type="image/png"), 400, "invalid_image")
    assert_api_error(client.post("/v1/jobs?tid=" + "t" * 500, data=jpeg,
                                 content_type="image/jpeg"), 400, "bad_request")
    assert web_counts() == (0, 0)


def test_raw_uploads_replay_an_idempotency_key(web_app: Flask, jpeg: bytes) -> None:
    client = web_app.test_client()
    headers = {"Idempotency-Key": "raw-1"}
    first = client.post("/v1/jobs", data=jpeg, content_type="image/jpeg", headers=headers)
    again = client.post("/v1/jobs", data=jpeg, content_type="image/jpeg", headers=headers)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"


def test_a_raw_upload_belongs_to_the_keys_business(web_settings: Settings,
                                                   jpeg: bytes) -> None:
    app = create_app(web_settings.with_(auth="keys"))
    db = Database(web_settings.database_url)
    token_a = store.create_key(db, "default", "a")[1]
    token_b = store.create_key(db, "other", "b")[1]
    client = app.test_client()
    assert_api_error(client.post("/v1/jobs", data=jpeg, content_type="image/jpeg"),
                     401, "unauthorized")
    a = {"Authorization": f"Bearer {token_a}"}
    assert_api_error(client.post("/v1/jobs?bid=other", data=jpeg, content_type="image/jpeg",
                                 headers=a), 400, "bid_mismatch")
    resp = client.post("/v1/jobs", data=jpeg, content_type="image/jpeg", headers=a)
    assert resp.status_code == 202 and resp.get_json()["bid"] == "default"
    job = resp.get_json()["id"]
    assert client.get(f"/v1/jobs/{job}", headers=a).status_code == 200
    other = {"Authorization": f"Bearer {token_b}"}
    assert_api_error(client.get(f"/v1/jobs/{job}", headers=other), 404, "not_found")


def test_a_raw_pdf_is_a_job_of_pages(web_app: Flask,
                                     web_counts: Callable[[], tuple[int, int]]) -> None:
    """A document's pages go out as a group: Celery's own send (publish.py's fast path
    takes single tasks only), one message per page."""
    page = np.full((300, 200, 3), 255, np.uint8)
    cv2.putText(page, "PAGE", (20, 150), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2)
    resp = web_app.test_client().post("/v1/jobs?name=two.pdf", data=pdf([page, page], dpi=72),
                                      content_type="application/pdf")
    assert resp.status_code == 202, resp.get_data(as_text=True)
    assert resp.get_json()["progress"]["pages_total"] == 2
    assert web_counts() == (1, 2)
