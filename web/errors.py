"""Every error leaves as JSON: {"error": {"code", "message", ...}}."""

from __future__ import annotations

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from ocrq.errors import OcrqError

# OcrqError.code -> HTTP status; anything else that is an OcrqError is a 400.
STATUS = {
    "image_too_large": 413,
    "not_found": 404,
    "not_ready": 409,
    "not_cancellable": 409,
    "enqueue_failed": 503,
    "no_live_worker": 503,
    "unknown_model": 404,
    "model_not_found": 404,
    "nothing_to_roll_back": 409,
    "unauthorized": 401,
    "admin_disabled": 403,
}


class ApiError(OcrqError):
    def __init__(self, code: str, message: str, **details: object) -> None:
        super().__init__(message, **details)
        self.code = code


def init_app(app: Flask) -> None:
    @app.errorhandler(OcrqError)
    def _ocrq(exc: OcrqError) -> ResponseReturnValue:
        return jsonify(error=exc.to_dict()), STATUS.get(exc.code, 400)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> ResponseReturnValue:
        code = (exc.name or "error").lower().replace(" ", "_")
        return jsonify(error={"code": code, "message": exc.description}), exc.code or 500

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> ResponseReturnValue:
        # Clients get JSON even for bugs; the traceback goes to the log, not the client.
        app.logger.exception("unhandled error")
        return jsonify(error={"code": "internal_error", "message": "internal error"}), 500
