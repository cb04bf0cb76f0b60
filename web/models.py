"""/v1/models: repository versions, desired state, what live workers serve; activation."""

from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, Flask, jsonify, request
from flask.typing import ResponseReturnValue

from ocrq.cluster.heartbeat import read_snapshot
from ocrq.cluster.rollout import progress
from ocrq.models.builtin import catalog, model_spec
from ocrq.models.control import ModelControl
from ocrq.models.repository import ModelRepository
from web import openapi
from web.errors import ApiError
from web.extensions import services

bp = Blueprint("models", __name__, url_prefix="/v1/models")


def _require_admin() -> None:
    """Model changes need ``Authorization: Bearer <OCRQ_ADMIN_TOKEN>``."""
    token = services().settings.admin_token
    if not token:
        raise ApiError("admin_disabled", "model changes over HTTP are off: set OCRQ_ADMIN_TOKEN "
                       "on the web process and send 'Authorization: Bearer <token>', or use "
                       "`ocrq models activate|rollback`")
    sent = request.headers.get("Authorization", "")
    scheme, _, value = sent.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(),
                                                             token.encode()):
        raise ApiError("unauthorized", "send 'Authorization: Bearer <OCRQ_ADMIN_TOKEN>'")


def _control() -> ModelControl:
    s = services()
    return ModelControl(s.db, s.redis, ModelRepository(s.settings.model_root))


@bp.get("")
def list_models() -> ResponseReturnValue:
    """Per model: versions on disk, desired versions, and every live process's view."""
    control = _control()
    desired = control.desired()
    snapshot = read_snapshot(services().redis)
    out: list[dict[str, Any]] = []
    for name in control.repository.names():
        workers = []
        for w in snapshot.workers:
            for p in w.processes:
                for m in p.models:
                    if m["name"] == name:
                        workers.append({"worker": w.name, "pid": p.pid, **m,
                                        "memory": p.memory.to_dict() if p.memory else None})
        out.append({
            "name": name,
            "versions": control.repository.versions(name),
            "active": desired.versions.get(name),
            "canaries": {b: v[name] for b, v in desired.bids.items() if name in v},
            "workers": workers,
        })
    return jsonify(models=out, rows=snapshot.status_rows())


@bp.post("/<name>/activate")
def activate(name: str) -> ResponseReturnValue:
    """Body ``{"version": N, "bid": optional}``; 202 with where the rollout stands now."""
    _require_admin()
    _known(name)  # an unknown name: 404 listing the known ones, whatever the body
    body = request.get_json(silent=True)
    version = body.get("version") if isinstance(body, dict) else None
    # bool is an int subclass: {"version": true} must not mean version 1.
    if not isinstance(version, int) or isinstance(version, bool):
        raise ApiError("bad_request", 'send JSON {"version": <int>} (optional "bid")')
    bid = _bid(body)
    known = services().plans.bids
    if bid is not None and bid not in known:  # a canary for a bid no job can have
        raise ApiError("unknown_plan", f"unknown bid {bid!r}; known: {', '.join(known)}",
                       field="bid", known=known)
    change = _control().activate(name, version, bid=bid, actor="api")
    state = progress(read_snapshot(services().redis), name, version, bid)
    return jsonify(change=change.to_dict(), rollout=state.to_dict()), 202


@bp.post("/<name>/rollback")
def rollback(name: str) -> ResponseReturnValue:
    """Optional body ``{"bid": "..."}`` (withdraw that bid's canary); 202 with the change."""
    _require_admin()
    _known(name)
    body = request.get_json(silent=True)
    if body is None and not request.get_data():
        body = {}  # no body: the global version goes back
    if not isinstance(body, dict):  # a bid sent some other way must not roll back globally
        raise ApiError("bad_request", 'send no body, or JSON {} or {"bid": "<bid>"}')
    change = _control().rollback(name, bid=_bid(body), actor="api")
    return jsonify(change=change.to_dict()), 202


@bp.get("/<name>/history")
def history(name: str) -> ResponseReturnValue:
    _known(name)
    return jsonify(history=_control().history(name))


def _kinds() -> list[str]:
    """Built-in kinds and those of the installed plug-ins."""
    return sorted(catalog().kinds)


def _known(name: str) -> None:
    model_spec(name)  # UnknownModel listing the known ones


def _bid(body: dict[str, Any]) -> str | None:
    bid = body.get("bid")
    if bid is not None and not isinstance(bid, str):
        raise ApiError("bad_request", "bid must be a string")
    return bid


def _name_parameter() -> list[dict[str, Any]]:
    return [{"name": "name", "in": "path", "required": True,
             "schema": {"type": "string", "enum": _kinds()}}]


def _any_object() -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"type": "object"}}}}


def _change(summary: str, body: dict[str, Any], required: bool, accepted: str,
            errors: tuple[str, ...]) -> dict[str, Any]:
    """A model-changing POST: admin token, 401 wrong token, 403 OCRQ_ADMIN_TOKEN not set."""
    op: dict[str, Any] = {"summary": summary, "parameters": _name_parameter(),
                          "security": [{"adminToken": []}]}
    op["requestBody"] = {"required": required,
                         "content": {"application/json": {"schema": body}}}
    op["responses"] = {"202": {"description": accepted, **_any_object()},
                       **{status: openapi.error_ref() for status in (*errors, "401", "403")}}
    return {"post": op}


def openapi_paths() -> dict[str, Any]:
    """This module's endpoints in the OpenAPI document (a fresh dict per call)."""
    activation = {"type": "object", "required": ["version"],
                  "properties": {"version": {"type": "integer"}, "bid": {"type": "string"}}}
    canary = {"type": "object", "properties": {"bid": {"type": "string"}}}
    return {
        "/v1/models": {"get": {
            "summary": "Model versions on disk, desired versions (global and per-bid canaries) "
                       "and what every live worker process serves: status, device, memory",
            "responses": {"200": {"description": "models and status rows", **_any_object()}}}},
        "/v1/models/{name}/activate": _change(
            "Make a version serve (globally, or for one bid as a canary)", activation, True,
            "recorded and broadcast; rollout so far", ("400", "404")),
        "/v1/models/{name}/rollback": _change(
            "Back to the version active before (with bid: withdraw the canary)",
            canary, False, "recorded and broadcast", ("400", "404", "409")),
        "/v1/models/{name}/history": {"get": {
            "summary": "Activation log, newest first", "parameters": _name_parameter(),
            "responses": {"200": {"description": "history", **_any_object()},
                          "404": openapi.error_ref()}}},
    }


ADMIN_SCHEME = {"adminToken": {"type": "http", "scheme": "bearer",
                               "description": "OCRQ_ADMIN_TOKEN"}}


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    openapi.extend(app, openapi_paths(), ADMIN_SCHEME)  # copies: the app's own document
