"""/v1/models: repository versions, desired state, what live workers serve; activation."""

from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, Flask, jsonify, request
from flask.typing import ResponseReturnValue

from ocrq.cluster.heartbeat import read_snapshot
from ocrq.cluster.rollout import progress
from ocrq.models.control import ModelControl
from ocrq.models.repository import ModelRepository
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
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("version"), int):
        raise ApiError("bad_request", 'send JSON {"version": <int>} (optional "bid")')
    bid = body.get("bid")
    if bid is not None and not isinstance(bid, str):
        raise ApiError("bad_request", "bid must be a string")
    change = _control().activate(name, body["version"], bid=bid, actor="api")
    state = progress(read_snapshot(services().redis), name, body["version"], bid)
    return jsonify(change=change.to_dict(), rollout=state.to_dict()), 202


@bp.post("/<name>/rollback")
def rollback(name: str) -> ResponseReturnValue:
    _require_admin()
    body = request.get_json(silent=True) or {}
    change = _control().rollback(name, bid=body.get("bid"), actor="api")
    return jsonify(change=change.to_dict()), 202


@bp.get("/<name>/history")
def history(name: str) -> ResponseReturnValue:
    return jsonify(history=_control().history(name))


_ERR = {"$ref": "#/components/responses/Error"}
_NAME = [{"name": "name", "in": "path", "required": True,
          "schema": {"type": "string", "enum": ["dir", "rot", "std", "str"]}}]
_OBJ = {"content": {"application/json": {"schema": {"type": "object"}}}}
_ADMIN = {"security": [{"adminToken": []}]}
_DENIED = {"401": _ERR, "403": _ERR}  # wrong token; OCRQ_ADMIN_TOKEN not set
OPENAPI_PATHS: dict[str, Any] = {
    "/v1/models": {"get": {
        "summary": "Model versions on disk, desired versions (global and per-bid canaries) "
                   "and what every live worker process serves: status, device, memory",
        "responses": {"200": {"description": "models and status rows", **_OBJ}}}},
    "/v1/models/{name}/activate": {"post": {
        "summary": "Make a version serve (globally, or for one bid as a canary)",
        "parameters": _NAME,
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["version"],
            "properties": {"version": {"type": "integer"}, "bid": {"type": "string"}}}}}},
        **_ADMIN,
        "responses": {"202": {"description": "recorded and broadcast; rollout so far", **_OBJ},
                      "400": _ERR, "404": _ERR, **_DENIED}}},
    "/v1/models/{name}/rollback": {"post": {
        "summary": "Back to the version active before (with bid: withdraw the canary)",
        "parameters": _NAME,
        **_ADMIN,
        "responses": {"202": {"description": "recorded and broadcast", **_OBJ}, "409": _ERR,
                      **_DENIED}}},
    "/v1/models/{name}/history": {"get": {
        "summary": "Activation log, newest first", "parameters": _NAME,
        "responses": {"200": {"description": "history", **_OBJ}}}},
    "/v1/cluster": {"get": {
        "summary": "Live snapshot: workers, their processes and models, routing table",
        "responses": {"200": {"description": "snapshot", **_OBJ}}}},
}


def init_app(app: Flask) -> None:
    from web.openapi import SPEC

    app.register_blueprint(bp)
    SPEC["paths"].update(OPENAPI_PATHS)  # one document; these endpoints live in this module
    SPEC.setdefault("components", {}).setdefault("securitySchemes", {})["adminToken"] = {
        "type": "http", "scheme": "bearer", "description": "OCRQ_ADMIN_TOKEN"}
