"""Liveness (the process answers) and readiness (broker, Redis and database reachable)."""

from __future__ import annotations

from flask import Blueprint, Flask, jsonify
from flask.typing import ResponseReturnValue

from web.extensions import celery, services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    checks: dict[str, str] = {}
    probes = {
        "broker": _broker,
        "redis": lambda: services().redis.ping(),
        "database": lambda: services().db.ping(),
    }
    for name, probe in probes.items():
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:  # any failure means not ready; say which and why
            checks[name] = f"error: {type(exc).__name__}: {exc}"
    failed = [name for name, v in checks.items() if v != "ok"]
    if not failed:
        return jsonify(status="ok", checks=checks)
    # A 503 carries the API's error object too, beside the checks a probe reads.
    error = {"code": "unavailable", "message": f"not ready: {', '.join(failed)} unreachable"}
    return jsonify(status="unavailable", checks=checks, error=error), 503


def _broker() -> None:
    with celery().connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
