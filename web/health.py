"""Liveness (the process answers) and readiness (broker, Redis and database reachable).

Kubernetes and compose call /readyz every few seconds: each check has its own
short deadline, so a Redis or database that stopped answering (a dropped
network path, not a refused connection) makes the pod unready within seconds
instead of hanging a server thread per probe. The checks use their own clients
(made once per app, connecting per probe), not the request path's pools, whose
sockets wait as long as a job's work may.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify
from flask.typing import ResponseReturnValue
from redis import Redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool

from ocrq.settings import Settings
from web.extensions import celery

bp = Blueprint("health", __name__)
CHECK_DEADLINE_S = 2.0  # each check's connect and answer; the probe's timeout is above 3x


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    checks: dict[str, str] = {}
    redis, database = current_app.extensions["ocrq_ready"]
    probes: dict[str, Callable[[], Any]] = {
        "broker": _broker,
        "redis": redis.ping,
        "database": lambda: _select_one(database),
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
    app = celery()
    # Redis transport: its sockets' own timeouts (ensure_connection's timeout bounds
    # the retries, not a read that never returns); AMQP: connect_timeout.
    options = {**app.conf.broker_transport_options, "socket_timeout": CHECK_DEADLINE_S,
               "socket_connect_timeout": CHECK_DEADLINE_S}
    with app.connection_for_write(connect_timeout=CHECK_DEADLINE_S,
                                  transport_options=options) as conn:
        conn.ensure_connection(max_retries=1, timeout=CHECK_DEADLINE_S)


def _select_one(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def _probe_engine(url: str, deadline_s: float) -> Engine:
    """An engine whose every connection gives up after ``deadline_s`` (no pool: each
    probe dials afresh, so a database that went away is seen at the next probe)."""
    driver = make_url(url).get_driver_name()
    args: dict[str, Any] = {}
    if driver == "pymysql":
        args = {"connect_timeout": deadline_s, "read_timeout": deadline_s,
                "write_timeout": deadline_s}
    elif driver == "pysqlite":
        args = {"timeout": deadline_s}
    return create_engine(url, poolclass=NullPool, connect_args=args)


def init_app(app: Flask) -> None:
    s: Settings = app.config["OCRQ_SETTINGS"]
    # Nothing connects here: both dial on a probe's first call.
    redis = Redis.from_url(s.redis_url, socket_connect_timeout=CHECK_DEADLINE_S,
                           socket_timeout=CHECK_DEADLINE_S)
    app.extensions["ocrq_ready"] = (redis, _probe_engine(s.database_url, CHECK_DEADLINE_S))
    app.register_blueprint(bp)
