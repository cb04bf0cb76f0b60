"""Tenancy on /v1/jobs with OCRQ_AUTH=keys, through Flask's test client (no worker).

Business A ("acme") submits a job. For every job endpoint, that job is neither
readable, nor cancellable, nor replayable through its Idempotency-Key with
business B's key ("globex"), with no key, or with A's own key once revoked:
B gets the same 404 as for a job that never existed; the others get a 401.
"""

from __future__ import annotations

import base64
import io
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from werkzeug.test import TestResponse

from ocrq.settings import Settings
from ocrq.storage import Database
from ocrq.storage import keys as store
from ocrq.storage.cache import StatusCache
from tests.conftest import assert_api_error
from web import create_app

Counts = Callable[[], tuple[int, int]]
PLANS = """default_bid: default
tids:
  ocr: {steps: [rotate, detect, recognize, reorder]}
  ocr-upright: {steps: [detect, recognize, reorder]}
bids:
  default: {}
  acme: {}
  globex: {}
"""
ENDPOINTS = [("GET", "/v1/jobs/{}"), ("GET", "/v1/jobs/{}/result"), ("DELETE", "/v1/jobs/{}")]


def _png(text: str) -> bytes:
    page = np.full((48, 160, 3), 255, np.uint8)
    cv2.putText(page, text, (8, 34), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2)
    ok, buf = cv2.imencode(".png", page)
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def png() -> bytes:
    return _png("ocrq 42")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post(client: FlaskClient, data: bytes, headers: dict[str, str] | None = None,
         **fields: str) -> TestResponse:
    form: dict[str, Any] = {"image": (io.BytesIO(data), "page.png"), **fields}
    return client.post("/v1/jobs", data=form, content_type="multipart/form-data",
                       headers=headers or {})


class Tenants:
    """A keys-mode app with two businesses' keys and one revoked key of A's."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app: Flask = create_app(settings)
        self.client = self.app.test_client()
        db = Database(settings.database_url)
        self.a = store.create_key(db, "acme", "A's app")[1]
        self.b = store.create_key(db, "globex", "B's app")[1]
        revoked, self.a_revoked = store.create_key(db, "acme", "A's old app")
        store.revoke_key(db, revoked.id)
        self.idem = f"k-{uuid.uuid4().hex}"

    def submit_a(self, png: bytes) -> str:
        resp = post(self.client, png, {**bearer(self.a), "Idempotency-Key": self.idem})
        assert resp.status_code == 202, resp.get_data(as_text=True)
        doc = resp.get_json()
        assert doc["bid"] == "acme"
        return str(doc["id"])

    def outsiders(self) -> dict[str, tuple[dict[str, str], int, str]]:
        """Who must not see A's job: headers, and the status and code they get."""
        return {"b_key": (bearer(self.b), 404, "not_found"),
                "no_key": ({}, 401, "unauthorized"),
                "revoked_key": (bearer(self.a_revoked), 401, "unauthorized"),
                "made_up_key": (bearer("ocrq_0123456789abcdef_" + "x" * 43), 401,
                                "unauthorized"),
                "admin_style": ({"Authorization": "Basic YWNtZTph"}, 401, "unauthorized")}


@pytest.fixture
def tenants(web_settings: Settings, tmp_path: Path) -> Tenants:
    plans = tmp_path / "plans.yaml"
    plans.write_text(PLANS)
    return Tenants(web_settings.with_(auth="keys", plans_file=plans))


OUTSIDERS = ["b_key", "no_key", "revoked_key", "made_up_key", "admin_style"]


@pytest.mark.parametrize("who", OUTSIDERS)
@pytest.mark.parametrize("method,path", ENDPOINTS)
def test_a_job_is_invisible_to_everyone_but_its_business(
        tenants: Tenants, png: bytes, who: str, method: str, path: str) -> None:
    job_id = tenants.submit_a(png)
    headers, status, code = tenants.outsiders()[who]
    for cached in (True, False):  # from the Redis cache, then from the database
        if not cached:
            redis = Redis.from_url(tenants.settings.redis_url)
            assert redis.delete(StatusCache(redis, 60).key(job_id)) == 1
        resp = tenants.client.open(path.format(job_id), method=method, headers=headers)
        error = assert_api_error(resp, status, code)
        if status == 401:
            assert resp.headers["WWW-Authenticate"] == "Bearer"
        else:  # exactly what a job that never existed answers: its existence is not revealed
            other = uuid.uuid4().hex
            unknown = tenants.client.open(path.format(other), method=method, headers=headers)
            assert_api_error(unknown, 404, "not_found")
            assert error["message"] == unknown.get_json()["error"]["message"].replace(
                other, job_id)
            assert set(error) == {"code", "message"}
    # Nothing changed for A: still queued (not cancelled), and A can read it.
    own = tenants.client.get(f"/v1/jobs/{job_id}", headers=bearer(tenants.a))
    assert own.status_code == 200 and own.get_json()["status"] == "queued"


@pytest.mark.parametrize("method,path,status,state", [
    ("GET", "/v1/jobs/{}", 200, "queued"), ("GET", "/v1/jobs/{}/result", 409, "queued"),
    ("DELETE", "/v1/jobs/{}", 200, "cancelled")])
def test_the_owner_reaches_its_job_on_every_endpoint(tenants: Tenants, png: bytes, method: str,
                                                     path: str, status: int,
                                                     state: str) -> None:
    job_id = tenants.submit_a(png)
    resp = tenants.client.open(path.format(job_id), method=method, headers=bearer(tenants.a))
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert (body.get("status") or body["error"]["status"]) == state
    # A second key of the same business is the same business.
    second = store.create_key(Database(tenants.settings.database_url), "acme")[1]
    again = tenants.client.get(f"/v1/jobs/{job_id}", headers=bearer(second))
    assert again.status_code == 200 and again.get_json()["status"] == state


@pytest.mark.parametrize("who", OUTSIDERS)
def test_an_idempotency_key_replays_only_for_its_business(
        tenants: Tenants, png: bytes, web_counts: Counts, who: str) -> None:
    job_id = tenants.submit_a(png)
    headers, status, code = tenants.outsiders()[who]
    rows = web_counts()[0]
    resp = post(tenants.client, png, {**headers, "Idempotency-Key": tenants.idem})
    if status == 401:  # refused before anything is parsed: nothing recorded
        assert_api_error(resp, 401, code)
        assert web_counts()[0] == rows
    else:  # B's own namespace: a new job of B's, never A's
        assert resp.status_code == 202, resp.get_data(as_text=True)
        doc = resp.get_json()
        assert doc["id"] != job_id and doc["bid"] == "globex"
        assert "Idempotent-Replayed" not in resp.headers
        assert web_counts()[0] == rows + 1
    replay = post(tenants.client, png, {**bearer(tenants.a), "Idempotency-Key": tenants.idem})
    assert replay.status_code == 200 and replay.get_json()["id"] == job_id
    assert replay.headers["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize("junk", [b"", b"hello, this is text", b"\x89PNG\r\n\x1a\n"])
def test_a_replay_with_junk_bytes_is_refused_not_answered(tenants: Tenants, png: bytes,
                                                          web_counts: Counts,
                                                          junk: bytes) -> None:
    """The Idempotency-Key is looked up only once the image is valid."""
    tenants.submit_a(png)
    before = web_counts()
    resp = post(tenants.client, junk, {**bearer(tenants.a), "Idempotency-Key": tenants.idem})
    error = assert_api_error(resp, 400, "invalid_image")
    assert "id" not in error and "job_id" not in error
    assert web_counts() == before


def test_the_bid_field_may_only_repeat_the_keys(tenants: Tenants, png: bytes,
                                                web_counts: Counts) -> None:
    for resp in (post(tenants.client, png, bearer(tenants.a), bid="globex"),
                 tenants.client.post("/v1/jobs", headers=bearer(tenants.a),
                                     json={"image_url": "http://10.0.0.1/a.png",
                                           "bid": "globex"})):
        error = assert_api_error(resp, 400, "bid_mismatch")
        assert "globex" not in error["message"]  # neither names nor confirms B's bid
    assert web_counts() == (0, 0)
    same = post(tenants.client, png, bearer(tenants.a), bid="acme")
    assert same.status_code == 202 and same.get_json()["bid"] == "acme"
    absent = tenants.client.post("/v1/jobs", headers=bearer(tenants.b),
                                 json={"image_base64": base64.b64encode(png).decode()})
    assert absent.status_code == 202 and absent.get_json()["bid"] == "globex"


def test_no_key_is_refused_before_the_image_is_fetched(tenants: Tenants,
                                                       web_counts: Counts) -> None:
    # An image_url that the intake would refuse (private address) if it got that far.
    resp = tenants.client.post("/v1/jobs", json={"image_url": "http://10.0.0.1/a.png"})
    assert_api_error(resp, 401, "unauthorized")
    assert web_counts() == (0, 0)


def test_a_key_for_a_bid_without_plans_lists_no_other_business(tenants: Tenants, png: bytes,
                                                                web_counts: Counts) -> None:
    token = store.create_key(Database(tenants.settings.database_url), "initech")[1]
    error = assert_api_error(post(tenants.client, png, bearer(token)), 400, "unknown_plan")
    assert "known" not in error
    assert not any(b in error["message"] for b in ("acme", "globex", "default"))
    tid = assert_api_error(post(tenants.client, png, bearer(tenants.a), tid="hand"), 400,
                           "unknown_plan")
    assert tid["known"] == ["ocr", "ocr-upright"]  # the tids of this test's PLANS
    assert web_counts() == (0, 0)


# --- OCRQ_AUTH=none: as before keys, and said so at start-up --------------------------
def test_auth_none_is_the_open_single_tenant_mode_and_is_warned_about(
        web_settings: Settings, png: bytes, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="web.auth"):
        client = create_app(web_settings.with_(auth="none")).test_client()
    assert any("OCRQ_AUTH=none" in r.getMessage() for r in caplog.records)
    job = post(client, png)
    assert job.status_code == 202 and job.get_json()["bid"] == "default"
    assert client.get(f"/v1/jobs/{job.get_json()['id']}").status_code == 200
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="web.auth"):
        keyed = create_app(web_settings.with_(auth="keys")).test_client()
    assert not [r for r in caplog.records if r.name == "web.auth"]
    assert_api_error(keyed.get(f"/v1/jobs/{job.get_json()['id']}"), 401, "unauthorized")


def test_auth_setting_is_read_and_checked() -> None:
    assert Settings.from_env({}).auth == "none"
    assert Settings.from_env({"OCRQ_AUTH": "keys"}).auth == "keys"
    with pytest.raises(ValueError, match="OCRQ_AUTH"):
        Settings.from_env({"OCRQ_AUTH": "key"})  # a typo is an error, not "no keys"


def test_openapi_documents_the_api_key_on_every_job_endpoint(tenants: Tenants) -> None:
    doc = tenants.client.get("/v1/openapi.json").get_json()  # public: no key needed
    assert doc["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    ops = [(p, m, op) for p, ops in doc["paths"].items() if p.startswith("/v1/jobs")
           for m, op in ops.items()]
    assert len(ops) == 4
    for path, method, op in ops:
        assert op["security"] == [{"apiKey": []}], (method, path)
        assert "401" in op["responses"], (method, path)
