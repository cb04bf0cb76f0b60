"""Service handles and the Celery producer, attached to the Flask app."""

from __future__ import annotations

from celery import Celery
from flask import Flask, current_app

from ocrq.pipeline.app import create_celery_app
from ocrq.pipeline.state import Services
from ocrq.settings import Settings


def init_app(app: Flask) -> None:
    settings: Settings = app.config["OCRQ_SETTINGS"]
    # Multipart/JSON overhead (base64 is 4/3 of the bytes); the decoded image is
    # checked against max_upload_bytes itself by ocrq.images.decode_image.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes * 4 // 3 + 64 * 1024
    app.extensions["ocrq"] = Services(settings)
    app.extensions["celery"] = create_celery_app(settings)


def services() -> Services:
    return current_app.extensions["ocrq"]


def celery() -> Celery:
    return current_app.extensions["celery"]
