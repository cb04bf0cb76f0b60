"""One log line per API request, with the job it touched (issue 15).

A job's first line is the intake's: ``POST /v1/jobs`` with the new job's id,
bid, tid and the request's duration; ``grep <job id>`` then goes on in the
workers' logs. Reads of a job (polling) are logged at DEBUG: at INFO they would
outnumber everything else.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request

from ocrq.observability import logs

log = logging.getLogger("ocrq.web")


def _started() -> None:
    g.ocrq_started = time.perf_counter()


def _logged(response: Response) -> Response:
    if not request.path.startswith("/v1/"):
        return response  # health checks, metrics scrapes, the page's assets
    level = logging.DEBUG if request.method in ("GET", "HEAD") else logging.INFO
    if not log.isEnabledFor(level):
        return response  # polls at INFO: nothing to build (issue 14: polls/s)
    ms = (time.perf_counter() - g.get("ocrq_started", time.perf_counter())) * 1000
    job: dict[str, object] = {}
    if request.view_args and "job_id" in request.view_args:
        job["job_id"] = request.view_args["job_id"]
    # Intake's view leaves the new job's id, bid and tid here (issue 14: the answer is
    # not parsed again for its log line).
    created = g.get("ocrq_job")
    if created is not None:
        job = created
    with logs.job_context(**job):
        log.log(level, "%s %s %d in %.1f ms", request.method, request.path,
                response.status_code, ms,
                extra={"event": "request", "status": response.status_code,
                       "duration_ms": round(ms, 2)})
    return response


def init_app(app: Flask) -> None:
    app.before_request(_started)
    app.after_request(_logged)
