"""Every error leaves as JSON: {"error": {"code", "message", ...}}."""

from __future__ import annotations

from typing import Any

from flask import Flask, Request, Response, jsonify
from werkzeug.exceptions import HTTPException

from ocrq.errors import OcrqError
from ocrq.pipeline.retry import transient

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
    "unauthorized": 401,  # no, an invalid or a revoked API key / admin token
    "bid_mismatch": 400,  # a 'bid' field that is not the API key's
    "admin_disabled": 403,
    "invalid_plans": 500,  # the server's plans file is broken: not the client's fault
    "fetch_failed": 422,  # image_url well-formed but not fetchable (unreachable, timeout...)
}
RETRY_AFTER_S = 2  # a restart of Redis or MariaDB takes seconds


class ApiError(OcrqError):
    def __init__(self, code: str, message: str, **details: object) -> None:
        super().__init__(message, **details)
        self.code = code


def _unparsable(exc: Exception) -> ApiError:
    why = "nested too deeply" if isinstance(exc, RecursionError) else type(exc).__name__
    return ApiError("bad_request", f"the request body could not be parsed ({why})")


class BodyRequest(Request):
    """Flask's request, except that anything a body parser raises is a 400.

    Werkzeug turns a ValueError from the JSON parser into a 400 (or None when
    ``silent``) and lets everything else through: ``[`` nested 100,000 deep makes
    ``json.loads`` raise RecursionError, which would be a 500. Form parsing is
    wrapped the same way, so no body can reach the generic 500 handler.
    """

    def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        try:
            return super().get_json(force=force, silent=silent, cache=cache)
        except HTTPException:
            raise  # already a 4xx (415, 413...)
        except Exception as exc:
            raise _unparsable(exc) from exc

    def _load_form_data(self) -> None:
        try:
            super()._load_form_data()
        except HTTPException:
            raise
        except Exception as exc:
            raise _unparsable(exc) from exc


def ocrq_response(exc: OcrqError) -> Response:
    resp = jsonify(error=exc.to_dict())
    resp.status_code = STATUS.get(exc.code, 400)
    if resp.status_code == 401:  # RFC 9110: a 401 says which scheme to use
        resp.headers["WWW-Authenticate"] = "Bearer"
    if resp.status_code == 503:  # enqueue_failed, no_live_worker: worth a retry soon
        resp.headers["Retry-After"] = str(RETRY_AFTER_S)
    return resp


def http_response(exc: HTTPException) -> Response:
    code = (exc.name or "error").lower().replace(" ", "_")
    resp = jsonify(error={"code": code, "message": exc.description or exc.name or "error"})
    resp.status_code = exc.code or 500
    for name, value in exc.get_headers():  # e.g. Allow on a 405; the body is ours (JSON)
        if name.lower() != "content-type":
            resp.headers[name] = value
    return resp


def init_app(app: Flask) -> None:
    app.request_class = BodyRequest
    app.register_error_handler(OcrqError, ocrq_response)
    app.register_error_handler(HTTPException, http_response)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        if transient(exc):  # Redis, the broker or the database restarting: come back soon
            app.logger.warning("service unavailable: %s", exc)
            resp = jsonify(error={"code": "unavailable", "message": "a backing service "
                                  "(database, Redis or broker) is not reachable; retry later"})
            resp.status_code = 503
            resp.headers["Retry-After"] = str(RETRY_AFTER_S)
            return resp
        # Clients get JSON even for bugs; the traceback goes to the log, not the client.
        app.logger.exception("unhandled error")
        resp = jsonify(error={"code": "internal_error", "message": "internal error"})
        resp.status_code = 500
        return resp
