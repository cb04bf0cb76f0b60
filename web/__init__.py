"""The Flask intake: ``create_app()`` wires extensions and blueprints."""

from __future__ import annotations

from flask import Flask

from ocrq.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    from web import errors, extensions, health, jobs, openapi

    app = Flask(__name__)
    app.config["OCRQ_SETTINGS"] = settings or Settings.from_env()
    from ocrq.webhooks import warn_if_default_secret

    warn_if_default_secret(app.config["OCRQ_SETTINGS"].webhook_secret)
    from web import cluster, models

    for part in (extensions, errors, jobs, health, openapi, models, cluster):
        part.init_app(app)
    return app
