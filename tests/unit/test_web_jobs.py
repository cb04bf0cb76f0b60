"""/v1/jobs through Flask's test client, with no worker running: validation, the
error shape, and nothing recorded or enqueued for a refused request.

An accepted job stays ``queued`` here (nobody consumes the broker), which is what
the result and cancel endpoints are checked against.
"""

from __future__ import annotations

import base64
import io
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from ocrq.plans import Plans
from ocrq.settings import Settings
from tests.conftest import assert_api_error
from tests.databases import throwaway_mariadb
from web import create_app

Counts = Callable[[], tuple[int, int]]


def _png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def png() -> bytes:
    """A small, valid PNG: one dark word on white (about 3 kB)."""
    page = np.full((48, 160, 3), 255, np.uint8)
    cv2.putText(page, "ocrq 42", (8, 34), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2)
    return _png(page)


def noise_png(side: int) -> bytes:
    """A PNG that does not compress: about 3 * side**2 bytes."""
    return _png(np.random.default_rng(side).integers(0, 256, (side, side, 3), np.uint8))


def post_file(client: FlaskClient, data: bytes, name: str = "page.png",
              headers: dict[str, str] | None = None, **fields: str) -> TestResponse:
    form: dict[str, Any] = {"image": (io.BytesIO(data), name), **fields}
    return client.post("/v1/jobs", data=form, content_type="multipart/form-data",
                       headers=headers or {})


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def client(web_app: Flask) -> FlaskClient:
    return web_app.test_client()


# --- accepted ------------------------------------------------------------------------
def _assert_accepted(resp: TestResponse, counts: Counts) -> dict[str, Any]:
    assert resp.status_code == 202, resp.get_data(as_text=True)
    doc = resp.get_json()
    assert isinstance(doc["id"], str) and doc["id"]
    assert doc["status"] == "queued" and doc["error"] is None and doc["result"] is None
    assert (doc["bid"], doc["tid"]) == ("default", "ocr")
    assert resp.headers["Location"] == f"/v1/jobs/{doc['id']}"
    assert "Idempotent-Replayed" not in resp.headers
    rows, queued = counts()
    assert rows == 1 and queued >= 1  # recorded, and its first step is on a queue
    return doc


def test_multipart_image_is_accepted(client: FlaskClient, png: bytes,
                                     web_counts: Counts) -> None:
    doc = _assert_accepted(post_file(client, png, "receipt.png"), web_counts)
    assert doc["image"] == {"name": "receipt.png", "width": 160, "height": 48}
    polled = client.get(f"/v1/jobs/{doc['id']}")
    assert polled.status_code == 200 and polled.get_json()["id"] == doc["id"]
    assert polled.get_json()["status"] == "queued"


def test_json_base64_image_is_accepted(client: FlaskClient, png: bytes,
                                       web_counts: Counts) -> None:
    resp = client.post("/v1/jobs", json={"image_base64": b64(png), "name": "scan.png",
                                         "tid": "ocr-upright"})
    assert resp.status_code == 202, resp.get_data(as_text=True)
    assert resp.get_json()["tid"] == "ocr-upright"
    assert resp.get_json()["image"]["name"] == "scan.png"
    assert web_counts()[0] == 1


def test_idempotency_key_replays_the_same_job(client: FlaskClient, png: bytes,
                                              web_counts: Counts) -> None:
    key = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    first = post_file(client, png, headers=key)
    doc = _assert_accepted(first, web_counts)
    before = web_counts()
    again = post_file(client, png, headers=key)
    assert again.status_code == 200, again.get_data(as_text=True)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == doc["id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert web_counts() == before  # no second row, nothing more on the queues
    other = post_file(client, png, headers={"Idempotency-Key": f"k-{uuid.uuid4().hex}"})
    assert other.status_code == 202 and other.get_json()["id"] != doc["id"]
    assert web_counts()[0] == 2


# --- refused: 4xx JSON, nothing recorded, nothing enqueued ---------------------------
def _multipart(fields: dict[str, Any]) -> dict[str, Any]:
    return {"data": fields, "content_type": "multipart/form-data"}


def _file(data: bytes, **fields: str) -> dict[str, Any]:
    return _multipart({"image": (io.BytesIO(data), "page.png"), **fields})


REFUSED: dict[str, tuple[Callable[[bytes], dict[str, Any]], int, str]] = {
    "multipart_without_image": (lambda png: _multipart({"bid": "default"}), 400, "bad_request"),
    "multipart_wrong_field": (
        lambda png: _multipart({"file": (io.BytesIO(png), "page.png")}), 400, "bad_request"),
    "empty_file": (lambda png: _file(b""), 400, "invalid_image"),
    "not_an_image": (lambda png: _file(b"hello, this is text"), 400, "invalid_image"),
    "truncated_png": (lambda png: _file(png[: len(png) // 2]), 400, "invalid_image"),
    "invalid_base64": (lambda png: {"json": {"image_base64": "not base64 at all!"}},
                       400, "invalid_image"),
    "base64_not_an_image": (lambda png: {"json": {"image_base64": b64(b"plain text")}},
                            400, "invalid_image"),
    "json_without_image": (lambda png: {"json": {"bid": "default"}}, 400, "bad_request"),
    "json_empty_object": (lambda png: {"json": {}}, 400, "bad_request"),
    "json_array": (lambda png: {"json": [b64(png)]}, 400, "bad_request"),
    "malformed_json": (lambda png: {"data": '{"image_base64": ',
                                    "content_type": "application/json"}, 400, "bad_request"),
    "text_body": (lambda png: {"data": "please read this", "content_type": "text/plain"},
                  400, "bad_request"),
    "no_body": (lambda png: {}, 400, "bad_request"),
    "callback_private": (lambda png: _file(png, callback_url="http://10.1.2.3/hook"),
                         400, "unsafe_url"),
    "callback_loopback": (lambda png: _file(png, callback_url="http://127.0.0.1:9/hook"),
                          400, "unsafe_url"),
    "callback_not_http": (lambda png: _file(png, callback_url="ftp://example.com/hook"),
                          400, "unsafe_url"),
    "callback_no_host": (lambda png: {"json": {"image_base64": b64(png),
                                               "callback_url": "http:///hook"}},
                         400, "unsafe_url"),
    "image_url_loopback": (lambda png: {"json": {"image_url": "http://127.0.0.1:9/a.png"}},
                           400, "unsafe_url"),
    "image_url_file": (lambda png: {"json": {"image_url": "file:///etc/passwd"}},
                       400, "unsafe_url"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_bad_input_is_refused_before_anything_is_written(
        client: FlaskClient, png: bytes, web_counts: Counts, case: str) -> None:
    build, status, code = REFUSED[case]
    resp = client.post("/v1/jobs", **build(png))
    assert_api_error(resp, status, code)
    assert "Location" not in resp.headers
    assert web_counts() == (0, 0)


# The tids of the bundled plans (the OCR plans and the model suite's).
BUNDLED_TIDS = Plans.load().tids_for("default")


@pytest.mark.parametrize("field,value,known", [("bid", "globex", None),
                                               ("tid", "handwriting", BUNDLED_TIDS)])
def test_unknown_plan_lists_the_known_tids_but_no_bids(client: FlaskClient, png: bytes,
                                                       web_counts: Counts, field: str,
                                                       value: str, known: list[str] | None
                                                       ) -> None:
    for resp in (post_file(client, png, **{field: value}),
                 client.post("/v1/jobs", json={"image_base64": b64(png), field: value})):
        error = assert_api_error(resp, 400, "unknown_plan")
        assert error["field"] == field and error.get("known") == known
        assert all(name in error["message"] for name in known or [])
        assert "default" not in error["message"]  # never another business's bid
    assert web_counts() == (0, 0)


@pytest.fixture
def small_limit_client(web_settings: Settings) -> FlaskClient:
    """OCRQ_MAX_UPLOAD_BYTES=4096 (the request body may carry a little more)."""
    return create_app(web_settings.with_(max_upload_bytes=4096)).test_client()


def test_image_over_the_byte_limit_is_413(small_limit_client: FlaskClient,
                                          web_counts: Counts) -> None:
    image = noise_png(40)  # ~5 kB: over the limit, but the request body is accepted
    assert 4096 < len(image) < 16_000
    error = assert_api_error(post_file(small_limit_client, image), 413, "image_too_large")
    assert error["limit"] == 4096
    resp = small_limit_client.post("/v1/jobs", json={"image_base64": b64(image)})
    assert_api_error(resp, 413, "image_too_large")
    assert web_counts() == (0, 0)


def test_request_body_over_the_limit_is_413(small_limit_client: FlaskClient,
                                            web_counts: Counts) -> None:
    image = noise_png(200)  # ~120 kB: the body itself is refused before parsing
    for resp in (post_file(small_limit_client, image),
                 small_limit_client.post("/v1/jobs", json={"image_base64": b64(image)})):
        assert_api_error(resp, 413, "request_entity_too_large")
    assert web_counts() == (0, 0)


@pytest.mark.parametrize("limit", [{"max_image_side": 100}, {"max_image_pixels": 1000}])
def test_image_over_the_pixel_limits_is_413(web_settings: Settings, png: bytes,
                                            web_counts: Counts, limit: dict[str, int]) -> None:
    client = create_app(web_settings.with_(**limit)).test_client()
    error = assert_api_error(post_file(client, png), 413, "image_too_large")
    assert (error["width"], error["height"]) == (160, 48)
    assert web_counts() == (0, 0)


def test_a_broken_plans_file_is_the_servers_fault(web_settings: Settings, png: bytes,
                                                  web_counts: Counts, tmp_path: Path) -> None:
    plans = tmp_path / "plans.yaml"
    plans.write_text("default_bid: default\ntids: {}\n")
    client = create_app(web_settings.with_(plans_file=plans)).test_client()
    assert_api_error(post_file(client, png), 500, "invalid_plans")
    assert web_counts() == (0, 0)


# --- one job: status, result, cancel -------------------------------------------------
@pytest.mark.parametrize("method,path", [("GET", "/v1/jobs/{}"), ("GET", "/v1/jobs/{}/result"),
                                         ("DELETE", "/v1/jobs/{}")])
def test_unknown_job_is_404(client: FlaskClient, method: str, path: str) -> None:
    job_id = uuid.uuid4().hex
    error = assert_api_error(client.open(path.format(job_id), method=method), 404, "not_found")
    assert job_id in error["message"]


def test_result_of_a_queued_job_is_409_with_its_status(client: FlaskClient,
                                                       png: bytes) -> None:
    job_id = post_file(client, png).get_json()["id"]
    error = assert_api_error(client.get(f"/v1/jobs/{job_id}/result"), 409, "not_ready")
    assert error["status"] == "queued" and error["job_error"] is None


def test_cancel_a_queued_job(client: FlaskClient, png: bytes) -> None:
    job_id = post_file(client, png).get_json()["id"]
    resp = client.delete(f"/v1/jobs/{job_id}")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    doc = resp.get_json()
    assert doc["id"] == job_id and doc["status"] == "cancelled"
    assert doc["error"]["code"] == "cancelled" and doc["finished_at"]
    assert client.get(f"/v1/jobs/{job_id}").get_json()["status"] == "cancelled"
    again = client.delete(f"/v1/jobs/{job_id}")  # idempotent: still cancelled, no error
    assert again.status_code == 200 and again.get_json()["status"] == "cancelled"
    result = assert_api_error(client.get(f"/v1/jobs/{job_id}/result"), 409, "not_ready")
    assert result["status"] == "cancelled" and result["job_error"]["code"] == "cancelled"


def test_broker_down_fails_the_job_and_it_cannot_be_cancelled(
        web_settings: Settings, png: bytes, web_counts: Counts) -> None:
    client = create_app(web_settings.with_(broker_url="redis://127.0.0.1:1/0")).test_client()
    error = assert_api_error(post_file(client, png), 503, "enqueue_failed")
    job_id = error["job_id"]
    assert web_counts() == (1, 0)  # recorded as failed, never left queued
    doc = client.get(f"/v1/jobs/{job_id}").get_json()
    assert doc["status"] == "failed" and doc["error"]["code"] == "enqueue_failed"
    refused = assert_api_error(client.delete(f"/v1/jobs/{job_id}"), 409, "not_cancellable")
    assert refused["status"] == "failed"
    result = assert_api_error(client.get(f"/v1/jobs/{job_id}/result"), 409, "not_ready")
    assert result["status"] == "failed" and result["job_error"]["code"] == "enqueue_failed"


# --- MariaDB (the production database) -----------------------------------------------
@pytest.fixture(scope="module")
def mariadb_url() -> Iterator[str]:
    """A throw-away MariaDB database, migrated, dropped afterwards."""
    with throwaway_mariadb() as url:
        yield url


@pytest.fixture(params=["sqlite", "mariadb"])
def any_db_client(request: pytest.FixtureRequest, web_settings: Settings) -> FlaskClient:
    settings = web_settings
    if request.param == "mariadb":
        settings = settings.with_(database_url=request.getfixturevalue("mariadb_url"))
    return create_app(settings).test_client()


def test_idempotency_replay_on_either_database(any_db_client: FlaskClient, png: bytes) -> None:
    key = {"Idempotency-Key": f"k-{uuid.uuid4().hex}" + "k" * 200}  # 234 characters: fits
    first = post_file(any_db_client, png, headers=key)
    assert first.status_code == 202, first.get_data(as_text=True)
    again = post_file(any_db_client, png, headers=key)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == first.get_json()["id"]


def test_overlong_idempotency_key_is_400(any_db_client: FlaskClient, png: bytes) -> None:
    resp = post_file(any_db_client, png, headers={"Idempotency-Key": "k" * 256})
    assert_api_error(resp, 400, "bad_request")
