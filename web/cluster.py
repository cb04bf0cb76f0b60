"""/v1/cluster: the live snapshot (workers, processes, routing table)."""

from __future__ import annotations

from flask import Blueprint, Flask, jsonify
from flask.typing import ResponseReturnValue

from ocrq.cluster.heartbeat import read_snapshot
from web.extensions import services

bp = Blueprint("cluster", __name__, url_prefix="/v1/cluster")


@bp.get("")
def cluster() -> ResponseReturnValue:
    return jsonify(read_snapshot(services().redis).to_dict())


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
