"""/v1/cluster: the live snapshot (workers, processes, routing table)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, jsonify
from flask.typing import ResponseReturnValue

from ocrq.cluster.heartbeat import read_snapshot
from web import openapi
from web.extensions import services

bp = Blueprint("cluster", __name__, url_prefix="/v1/cluster")


@bp.get("")
def cluster() -> ResponseReturnValue:
    return jsonify(read_snapshot(services().redis).to_dict())


def openapi_paths() -> dict[str, Any]:
    """This module's endpoint in the OpenAPI document (a fresh dict per call)."""
    return {"/v1/cluster": {"get": {
        "summary": "Live snapshot: workers, their processes and models, routing table",
        "responses": {"200": {"description": "snapshot", "content": {
            "application/json": {"schema": {"type": "object"}}}}}}}}


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    openapi.extend(app, openapi_paths())
