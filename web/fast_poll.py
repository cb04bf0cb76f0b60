"""GET /v1/jobs/<id> without Flask's request cycle, when the answer is a plain 200.

A poll is most of an intake's requests, and half of its CPU was Flask's: a request
context, URL matching, the before/after hooks, a Response object (issue 14). This
WSGI layer answers the common case itself, with the very bytes and headers the
Flask view sends (tests/unit/test_intake_fast_poll.py compares the two): the
caller's API key already remembered by this process (web.auth.KeyCache) or keys
off, and the job found for that caller. Everything else goes to Flask unchanged:
another method or path, an unknown or missing key (Flask looks it up or answers
401), a job not found (404), a backing service failing (503), a request log at
DEBUG (Flask writes the line).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from ocrq.pipeline import jobs
from ocrq.pipeline.state import Services
from ocrq.storage import keys
from web.auth import KeyCache, bearer_token

PREFIX = "/v1/jobs/"
_LOG = logging.getLogger("ocrq.web")  # web/request_log.py's
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class FastPoll:
    """WSGI middleware in front of the Flask app (``app.wsgi_app``)."""

    def __init__(self, app: Flask, inner: WsgiApp) -> None:
        self.app, self.inner = app, inner
        self.enabled = True

    def __call__(self, environ: dict[str, Any], start_response: StartResponse
                 ) -> Iterable[bytes]:
        body = self._answer(environ) if self.enabled else None
        if body is None:
            return self.inner(environ, start_response)
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    def _answer(self, environ: dict[str, Any]) -> bytes | None:
        """The 200 answer's body, or None: Flask answers."""
        path: str = environ.get("PATH_INFO", "")
        if (environ.get("REQUEST_METHOD") != "GET" or not path.startswith(PREFIX)
                or _LOG.isEnabledFor(logging.DEBUG)):
            return None
        job_id = path[len(PREFIX):]
        if not job_id or "/" in job_id or environ.get("SCRIPT_NAME"):
            return None
        services: Services = self.app.extensions["ocrq"]
        bid: str | None = None
        if services.settings.auth == "keys":
            bid = self._remembered_bid(environ)
            if bid is None:
                return None
        try:
            doc = jobs.document(services, job_id, bid)
            return None if doc is None else self._json(doc)
        except Exception:  # noqa: BLE001 - Flask answers it (503, or a logged 500)
            return None

    def _json(self, doc: dict[str, Any]) -> bytes | None:
        """As ``jsonify`` writes it (DefaultJSONProvider.response: compact unless in
        debug mode); None where it would be pretty-printed (debug: Flask answers)."""
        compact = getattr(self.app.json, "compact", None)
        if compact is False or (compact is None and self.app.debug):
            return None
        return f"{self.app.json.dumps(doc, separators=(',', ':'))}\n".encode()

    def _remembered_bid(self, environ: dict[str, Any]) -> str | None:
        """The bid of a well-formed bearer key this process already checked; else None."""
        token = bearer_token(environ.get("HTTP_AUTHORIZATION", ""))
        if token is None:
            return None
        cache: KeyCache = self.app.extensions["ocrq_keys"]
        return cache.get(keys.hash_token(token))


def init_app(app: Flask) -> None:
    app.wsgi_app = FastPoll(app, app.wsgi_app)  # type: ignore[method-assign]
