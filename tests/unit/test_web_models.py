"""/v1/models through Flask's test client, with no worker running: the listing,
the admin token on activate/rollback (403 off, 401 wrong), unknown names, bad
bodies, and that a refused request records nothing in the activation log."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from ocrq.models.builtin import catalog
from ocrq.settings import Settings
from tests.conftest import assert_api_error
from web import create_app

TOKEN = "s3cret-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
KINDS = sorted(catalog().kinds)  # built-in kinds and the installed plug-ins (ocrq/suite)
CHANGES = ["activate", "rollback"]


@pytest.fixture
def admin(web_settings: Settings) -> FlaskClient:
    """A client of an app with OCRQ_ADMIN_TOKEN set."""
    return create_app(web_settings.with_(admin_token=TOKEN)).test_client()


@pytest.fixture
def no_admin(web_settings: Settings) -> FlaskClient:
    """A client of an app without OCRQ_ADMIN_TOKEN (model changes over HTTP are off)."""
    assert web_settings.admin_token == ""
    return create_app(web_settings).test_client()


def history(client: FlaskClient, name: str = "str") -> list[dict[str, Any]]:
    resp = client.get(f"/v1/models/{name}/history")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()["history"]


def test_list_models_without_workers(no_admin: FlaskClient) -> None:
    resp = no_admin.get("/v1/models")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert [m["name"] for m in body["models"]] == KINDS
    for model in body["models"]:
        assert 1 in model["versions"]  # materialised from the wheels by the model_root fixture
        assert (model["active"], model["canaries"], model["workers"]) == (None, {}, [])
    assert body["rows"] == []


@pytest.mark.parametrize("action", CHANGES)
@pytest.mark.parametrize("headers", [{}, ADMIN], ids=["no_header", "some_token"])
def test_changes_are_403_without_an_admin_token_configured(
        no_admin: FlaskClient, action: str, headers: dict[str, str]) -> None:
    resp = no_admin.post(f"/v1/models/str/{action}", json={"version": 1}, headers=headers)
    error = assert_api_error(resp, 403, "admin_disabled")
    assert "OCRQ_ADMIN_TOKEN" in error["message"]
    assert history(no_admin) == []


@pytest.mark.parametrize("action", CHANGES)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {TOKEN}", TOKEN,
                                           f"Bearer {TOKEN}x", "Bearer "])
def test_changes_are_401_with_a_wrong_token(admin: FlaskClient, action: str,
                                            authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    resp = admin.post(f"/v1/models/str/{action}", json={"version": 1}, headers=headers)
    assert_api_error(resp, 401, "unauthorized")
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert history(admin) == []


@pytest.mark.parametrize("action", CHANGES)
def test_unknown_model_is_404_listing_the_known(admin: FlaskClient, action: str) -> None:
    for body in ({"version": 1}, {}, None):  # the name is checked whatever the body
        resp = admin.post(f"/v1/models/nope/{action}", json=body, headers=ADMIN)
        error = assert_api_error(resp, 404, "unknown_model")
        assert error["known"] == KINDS
        assert all(kind in error["message"] for kind in KINDS)


def test_unknown_model_is_401_before_404_without_the_token(admin: FlaskClient) -> None:
    # Without the token nobody learns which names exist.
    assert_api_error(admin.post("/v1/models/nope/activate", json={"version": 1}), 401,
                     "unauthorized")


def test_history_of_an_unknown_model_is_404(admin: FlaskClient) -> None:
    error = assert_api_error(admin.get("/v1/models/nope/history"), 404, "unknown_model")
    assert error["known"] == KINDS


BAD_ACTIVATE: dict[str, dict[str, Any]] = {
    "no_body": {},
    "empty_object": {"json": {}},
    "version_missing": {"json": {"bid": "default"}},
    "version_string": {"json": {"version": "1"}},
    "version_float": {"json": {"version": 1.5}},
    "version_bool": {"json": {"version": True}},
    "version_null": {"json": {"version": None}},
    "array": {"json": [1]},
    "bid_not_string": {"json": {"version": 1, "bid": 7}},
    "malformed_json": {"data": '{"version": ', "content_type": "application/json"},
    "form_body": {"data": {"version": "1"}},
}


@pytest.mark.parametrize("case", list(BAD_ACTIVATE))
def test_activate_with_a_bad_body_is_400(admin: FlaskClient, case: str) -> None:
    resp = admin.post("/v1/models/str/activate", headers=ADMIN, **BAD_ACTIVATE[case])
    assert_api_error(resp, 400, "bad_request")
    assert history(admin) == []


BAD_ROLLBACK: dict[str, dict[str, Any]] = {
    "array": {"json": [1]},
    "string": {"json": "default"},
    "bid_not_string": {"json": {"bid": 7}},
    "malformed_json": {"data": '{"bid": ', "content_type": "application/json"},
    "form_body": {"data": {"bid": "default"}},  # not JSON: must not roll back globally
}


@pytest.mark.parametrize("case", list(BAD_ROLLBACK))
def test_rollback_with_a_bad_body_is_400(admin: FlaskClient, case: str) -> None:
    admin.post("/v1/models/str/activate", json={"version": 1}, headers=ADMIN)
    before = history(admin)
    resp = admin.post("/v1/models/str/rollback", headers=ADMIN, **BAD_ROLLBACK[case])
    assert_api_error(resp, 400, "bad_request")
    assert history(admin) == before


@pytest.mark.parametrize("bid", ["globex", "b" * 100])  # 100: longer than the bid column
def test_canary_for_an_unknown_bid_is_400(admin: FlaskClient, bid: str) -> None:
    resp = admin.post("/v1/models/str/activate", json={"version": 1, "bid": bid},
                      headers=ADMIN)
    error = assert_api_error(resp, 400, "unknown_plan")
    assert error["field"] == "bid" and error["known"] == ["default"]
    assert history(admin) == []
    # Withdrawing a canary that bid never had: nothing to do, whatever its length.
    resp = admin.post("/v1/models/str/rollback", json={"bid": bid}, headers=ADMIN)
    assert_api_error(resp, 409, "nothing_to_roll_back")


def test_activate_a_missing_version_is_404(admin: FlaskClient) -> None:
    resp = admin.post("/v1/models/str/activate", json={"version": 99}, headers=ADMIN)
    error = assert_api_error(resp, 404, "model_not_found")
    assert error["version"] == 99 and 1 in error["versions"]
    assert history(admin) == []


def test_nothing_to_roll_back_is_409(admin: FlaskClient) -> None:
    for body in (None, {}, {"bid": "default"}):
        resp = admin.post("/v1/models/str/rollback", json=body, headers=ADMIN)
        assert_api_error(resp, 409, "nothing_to_roll_back")
    assert history(admin) == []


def test_activate_and_withdraw_a_canary(admin: FlaskClient) -> None:
    resp = admin.post("/v1/models/str/activate", json={"version": 1, "bid": "default"},
                      headers=ADMIN)
    assert resp.status_code == 202, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["change"] == {"model": "str", "bid": "default", "version": 1,
                              "previous_version": None}
    assert isinstance(body["rollout"], dict)
    listed = {m["name"]: m for m in admin.get("/v1/models").get_json()["models"]}
    assert listed["str"]["canaries"] == {"default": 1} and listed["str"]["active"] is None
    back = admin.post("/v1/models/str/rollback", json={"bid": "default"}, headers=ADMIN)
    assert back.status_code == 202, back.get_data(as_text=True)
    assert back.get_json()["change"]["version"] is None
    assert [(h["bid"], h["version"], h["actor"]) for h in history(admin)] == [
        ("default", None, "api"), ("default", 1, "api")]


def test_global_activate_then_rollback(admin: FlaskClient) -> None:
    resp = admin.post("/v1/models/dir/activate", json={"version": 1}, headers=ADMIN)
    assert resp.status_code == 202, resp.get_data(as_text=True)
    listed = {m["name"]: m for m in admin.get("/v1/models").get_json()["models"]}
    assert listed["dir"]["active"] == 1 and listed["str"]["active"] is None
    back = admin.post("/v1/models/dir/rollback", headers=ADMIN)  # no body at all
    assert back.status_code == 202, back.get_data(as_text=True)
    assert back.get_json()["change"]["model"] == "dir"
    assert len(history(admin, "dir")) == 2 and history(admin, "str") == []
