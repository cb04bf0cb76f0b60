"""web/fast_poll.py answers GET /v1/jobs/<id> with exactly what the Flask view sends,
and leaves every other case to Flask: each request below is sent twice through the
real app (real Redis and SQLite), the shortcut on and off, and the answers compared
byte for byte; the shortcut's own use is counted to show which path answered."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import cv2
import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient

from ocrq.settings import Settings
from ocrq.storage import Database
from ocrq.storage import keys as store
from web import create_app
from web.fast_poll import FastPoll


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    page = np.full((120, 400, 3), 250, np.uint8)
    cv2.putText(page, "TOTAL 42.00", (10, 70), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 0, 0), 2)
    return cv2.imencode(".jpg", page)[1].tobytes()


class Counted(FastPoll):
    answered = 0

    def _answer(self, environ: dict) -> bytes | None:  # type: ignore[type-arg]
        body = super()._answer(environ)
        Counted.answered += body is not None
        return body


def fast(app: Flask) -> Counted:
    layer = app.wsgi_app
    assert isinstance(layer, FastPoll)
    counted = Counted(app, layer.inner)
    app.wsgi_app = counted  # type: ignore[method-assign]
    return counted


def both(client: FlaskClient, layer: FastPoll, path: str, **kw: object
         ) -> tuple[int, bool]:
    """(status, whether the shortcut answered); asserts both paths answer alike."""
    before = Counted.answered
    layer.enabled = True
    a = client.get(path, **kw)  # type: ignore[arg-type]
    took = Counted.answered > before
    layer.enabled = False
    b = client.get(path, **kw)  # type: ignore[arg-type]
    layer.enabled = True
    assert (a.status_code, a.get_data()) == (b.status_code, b.get_data()), path
    assert sorted(a.headers.items()) == sorted(b.headers.items()), path
    return a.status_code, took


@pytest.fixture
def open_app(web_settings: Settings) -> Iterator[Flask]:
    yield create_app(web_settings)


def submit(client: FlaskClient, jpeg: bytes, headers: dict[str, str] | None = None) -> str:
    resp = client.post("/v1/jobs", data={"image": (io.BytesIO(jpeg), "r.jpg")},
                       content_type="multipart/form-data", headers=headers or {})
    assert resp.status_code == 202, resp.get_data(as_text=True)
    return str(resp.get_json()["id"])


def test_without_keys_a_poll_is_answered_by_the_shortcut(open_app: Flask,
                                                          jpeg: bytes) -> None:
    layer, client = fast(open_app), open_app.test_client()
    job = submit(client, jpeg)
    assert both(client, layer, f"/v1/jobs/{job}") == (200, True)
    assert both(client, layer, "/v1/jobs/nope") == (404, False)
    assert both(client, layer, f"/v1/jobs/{job}/result") == (409, False)
    assert both(client, layer, "/v1/jobs/") == (404, False)
    assert both(client, layer, "/healthz") == (200, False)
    logging.getLogger("ocrq.web").setLevel(logging.DEBUG)  # Flask writes the poll's line
    try:
        assert both(client, layer, f"/v1/jobs/{job}") == (200, False)
    finally:
        logging.getLogger("ocrq.web").setLevel(logging.NOTSET)


def test_with_keys_only_a_remembered_key_of_the_jobs_bid_takes_the_shortcut(
        web_settings: Settings, jpeg: bytes) -> None:
    app = create_app(web_settings.with_(auth="keys", auth_cache_s=60.0))
    layer, client = fast(app), app.test_client()
    db = Database(web_settings.database_url)
    mine = {"Authorization": f"Bearer {store.create_key(db, 'default', 'a')[1]}"}
    other = {"Authorization": f"Bearer {store.create_key(db, 'other', 'b')[1]}"}
    job = submit(client, jpeg, mine)  # the key is now remembered by this process
    assert both(client, layer, f"/v1/jobs/{job}", headers=mine) == (200, True)
    assert both(client, layer, f"/v1/jobs/{job}") == (401, False)
    bad = {"Authorization": "Bearer ocrq_0123456789abcdef_" + "x" * 43}
    assert both(client, layer, f"/v1/jobs/{job}", headers=bad) == (401, False)
    # Another business: first looked up by Flask (then remembered), never shown the job.
    assert both(client, layer, f"/v1/jobs/{job}", headers=other) == (404, False)
    assert both(client, layer, f"/v1/jobs/{job}", headers=other) == (404, False)
