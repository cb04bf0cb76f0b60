"""The Flask intake: ``create_app()`` wires extensions and blueprints."""

from __future__ import annotations

from flask import Flask

from ocrq.observability import logs
from ocrq.settings import Settings
from ocrq.webhooks import warn_if_default_secret
from web import (
    badcases,
    cluster,
    errors,
    extensions,
    fast_poll,
    health,
    jobs,
    metrics,
    models,
    openapi,
    request_log,
    ui,
)


def create_app(settings: Settings | None = None) -> Flask:
    """``create_app()`` (no settings: what waitress and gunicorn call) is the process's
    own app, built from its environment: it also sets up the process's log lines."""
    app = Flask(__name__)
    app.config["OCRQ_SETTINGS"] = settings or Settings.from_env()
    if settings is None:
        logs.configure(app.config["OCRQ_SETTINGS"].log_format, service="web")
    warn_if_default_secret(app.config["OCRQ_SETTINGS"].webhook_secret)
    for part in (extensions, errors, jobs, health, openapi, models, cluster, ui, metrics,
                 badcases, request_log):
        part.init_app(app)
    fast_poll.init_app(app)  # last: it wraps the finished app's WSGI callable
    return app
