"""The rest of the app through Flask's test client, with no worker running:
/healthz, /readyz, /v1/cluster, /v1/openapi.json (one document per app, covering
every route), and JSON errors for unknown URLs, wrong methods and every route."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from ocrq.models.builtin import catalog
from ocrq.settings import Settings
from tests.conftest import assert_api_error
from web import create_app, openapi

IGNORED_METHODS = {"HEAD", "OPTIONS"}


def routes(app: Flask) -> list[tuple[str, str]]:
    """(method, OpenAPI path) of every API route: not Flask's static files, not the
    page for people (web/ui.py: HTML, tested in test_web_ui.py)."""
    out = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.startswith("ui."):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        out += [(m, path) for m in sorted((rule.methods or set()) - IGNORED_METHODS)]
    return out


def test_healthz(web_app: Flask) -> None:
    resp = web_app.test_client().get("/healthz")
    assert (resp.status_code, resp.get_json()) == (200, {"status": "ok"})


def test_readyz_when_everything_answers(web_app: Flask) -> None:
    resp = web_app.test_client().get("/readyz")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json() == {"status": "ok", "checks": {"broker": "ok", "redis": "ok",
                                                          "database": "ok"}}


def test_readyz_names_the_check_that_failed(web_settings: Settings) -> None:
    app = create_app(web_settings.with_(broker_url="redis://127.0.0.1:1/0"))
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 503, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["status"] == "unavailable" and body["checks"]["broker"].startswith("error: ")
    assert (body["checks"]["redis"], body["checks"]["database"]) == ("ok", "ok")
    assert body["error"] == {"code": "unavailable", "message": "not ready: broker unreachable"}


def test_cluster_without_workers(web_app: Flask) -> None:
    resp = web_app.test_client().get("/v1/cluster")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["workers"] == [] and body["routing"] == {}
    assert isinstance(body["taken_at"], float)


# --- OpenAPI -------------------------------------------------------------------------
def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_openapi_documents_every_route(web_app: Flask) -> None:
    resp = web_app.test_client().get("/v1/openapi.json")
    assert resp.status_code == 200 and resp.is_json
    doc = json.loads(resp.get_data(as_text=True))
    assert doc["openapi"] == "3.1.0" and doc["info"]["title"] == "ocrq"
    found = routes(web_app)
    assert len(found) >= 12
    missing = [(m, p) for m, p in found if m.lower() not in doc["paths"].get(p, {})]
    assert missing == []
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == set(found)  # and nothing documented that does not exist
    for ref in set(_refs(doc)):  # every reference resolves inside the document
        node: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        assert isinstance(node, dict) and node, ref


def test_openapi_model_names_are_the_model_kinds(web_app: Flask) -> None:
    doc = web_app.test_client().get("/v1/openapi.json").get_json()
    kinds = sorted(catalog().kinds)  # built-in kinds and the installed plug-ins
    model_paths = [p for p in doc["paths"] if p.startswith("/v1/models/{name}")]
    assert len(model_paths) == 3
    for path in model_paths:
        for op in doc["paths"][path].values():
            (param,) = op["parameters"]
            assert param["schema"]["enum"] == kinds
    activate = doc["paths"]["/v1/models/{name}/activate"]["post"]
    assert activate["security"] == [{"adminToken": []}]
    assert doc["components"]["securitySchemes"]["adminToken"]["scheme"] == "bearer"


def test_each_app_has_its_own_openapi_document(web_settings: Settings) -> None:
    first = create_app(web_settings)
    served = first.test_client().get("/v1/openapi.json").get_data(as_text=True)
    # Another app in the same process leaves the first app's document as it was.
    second = create_app(web_settings.with_(admin_token="other"))
    assert first.test_client().get("/v1/openapi.json").get_data(as_text=True) == served
    assert second.test_client().get("/v1/openapi.json").get_data(as_text=True) == served
    # A change to one app's document (top level and deep inside) reaches no other app.
    doc = openapi.document(first)
    doc["paths"]["/v1/extra"] = {"get": {"summary": "first app only"}}
    doc["paths"]["/v1/models"]["get"]["summary"] = "changed"
    doc["paths"]["/v1/models/{name}/history"]["get"]["parameters"][0]["schema"]["enum"].pop()
    doc["components"]["schemas"]["Error"]["required"].append("changed")
    doc["paths"]["/v1/jobs/{job_id}"]["get"]["responses"]["404"]["$ref"] = "#/changed"
    changed = first.test_client().get("/v1/openapi.json").get_json()
    assert changed["paths"]["/v1/extra"] and changed["paths"]["/v1/models"]["get"]["summary"]
    for app in (second, create_app(web_settings)):
        assert app.test_client().get("/v1/openapi.json").get_data(as_text=True) == served
    assert openapi.base_document() == openapi.base_document()
    assert openapi.base_document() is not openapi.base_document()


# --- errors outside the routes -------------------------------------------------------
@pytest.mark.parametrize("path", ["/nope", "/v1", "/v1/jobs/", "/v1/jobs/a/b/c",
                                  "/v1/models/str", "/static/nope.css"])
def test_unknown_url_is_404_json(web_app: Flask, path: str) -> None:
    assert_api_error(web_app.test_client().get(path), 404, "not_found")


@pytest.mark.parametrize("method,path,allowed", [
    ("GET", "/v1/jobs", {"POST"}),
    ("PUT", "/v1/jobs/abc", {"GET", "HEAD", "DELETE"}),
    ("POST", "/v1/jobs/abc/result", {"GET", "HEAD"}),
    ("DELETE", "/healthz", {"GET", "HEAD"}),
    ("POST", "/v1/openapi.json", {"GET", "HEAD"}),
    ("GET", "/v1/models/str/activate", {"POST"}),
    ("PATCH", "/v1/cluster", {"GET", "HEAD"}),
])
def test_wrong_method_is_405_json_with_allow(web_app: Flask, method: str, path: str,
                                             allowed: set[str]) -> None:
    resp = web_app.test_client().open(path, method=method)
    assert_api_error(resp, 405, "method_not_allowed")
    assert {m.strip() for m in resp.headers["Allow"].split(",")} - {"OPTIONS"} == allowed


def test_every_route_answers_json_without_a_body(web_app: Flask) -> None:
    """Every route, called bare: JSON, never a 500; an error has the error shape."""
    client = web_app.test_client()
    answered = {}
    for method, path in routes(web_app):
        url = path.replace("{job_id}", "nope").replace("{name}", "nope")
        url = url.replace("{case_id}", "nope")
        resp = client.open(url, method=method)
        assert resp.status_code < 500 or path == "/readyz", (method, url, resp.status_code)
        if path == "/metrics":  # Prometheus exposition, not JSON (test_metrics_web.py)
            assert resp.status_code == 200 and resp.mimetype == "text/plain", resp.mimetype
            answered[(method, path)] = resp.status_code
            continue
        assert resp.is_json, (method, url, resp.headers.get("Content-Type"))
        if resp.status_code >= 400:
            error = resp.get_json()["error"]
            assert isinstance(error["code"], str) and isinstance(error["message"], str)
        answered[(method, path)] = resp.status_code
    assert answered == {
        ("POST", "/v1/jobs"): 400, ("GET", "/v1/jobs/{job_id}"): 404,
        ("GET", "/v1/jobs/{job_id}/result"): 404, ("DELETE", "/v1/jobs/{job_id}"): 404,
        ("GET", "/healthz"): 200, ("GET", "/readyz"): 200, ("GET", "/v1/openapi.json"): 200,
        ("GET", "/v1/models"): 200, ("POST", "/v1/models/{name}/activate"): 403,
        ("POST", "/v1/models/{name}/rollback"): 403,
        ("GET", "/v1/models/{name}/history"): 404, ("GET", "/v1/cluster"): 200,
        ("GET", "/metrics"): 200,
        ("GET", "/v1/badcases"): 200, ("GET", "/v1/badcases/{case_id}/image"): 404,
    }
