"""The Flask intake: ``create_app()`` wires extensions and blueprints."""

from __future__ import annotations

from flask import Flask

from ocrq.settings import Settings
from ocrq.webhooks import warn_if_default_secret
from web import cluster, errors, extensions, health, jobs, metrics, models, openapi, ui


def create_app(settings: Settings | None = None) -> Flask:
    app = Flask(__name__)
    app.config["OCRQ_SETTINGS"] = settings or Settings.from_env()
    warn_if_default_secret(app.config["OCRQ_SETTINGS"].webhook_secret)
    for part in (extensions, errors, jobs, health, openapi, models, cluster, ui, metrics):
        part.init_app(app)
    return app
