"""/v1/jobs: submit, poll, result, cancel. Thin: parsing and status codes only.

Every view first asks web.auth for the caller's bid (its API key's business) and
passes it down: with OCRQ_AUTH=keys another business's job is a 404, not a 403.
"""

from __future__ import annotations

import base64
import binascii
import os
from urllib.parse import urlsplit

from flask import Blueprint, Flask, jsonify, request, url_for
from flask.typing import ResponseReturnValue

from ocrq.pipeline import jobs
from ocrq.storage import Job
from ocrq.webhooks import fetch
from web import auth
from web.errors import ApiError
from web.extensions import celery, services

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")
MAX_IDEMPOTENCY_KEY: int = Job.__table__.c.idempotency_key.type.length  # type: ignore[attr-defined]


def _request_fields() -> tuple[dict[str, str], dict[str, object] | None]:
    """(bid, tid, callback_url, name fields; the JSON body or None for multipart).

    Parsed before any image is read or fetched, so a wrong bid costs nothing."""
    if request.files or request.form:
        return dict(request.form), None
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError("bad_request", "send multipart 'image' or JSON with image_url or "
                       "image_base64")
    fields = {k: str(v) for k, v in body.items()
              if k in ("bid", "tid", "callback_url", "name") and v is not None}
    return fields, body


def _image(fields: dict[str, str], body: dict[str, object] | None) -> tuple[bytes, str]:
    """(bytes, name) from multipart `image` or JSON image_url / image_base64."""
    if body is None:
        f = request.files.get("image")
        if f is None:
            raise ApiError("bad_request", "multipart request needs a file field 'image'")
        return f.read(), f.filename or "image"
    s = services().settings
    if body.get("image_base64"):
        try:
            data = base64.b64decode(str(body["image_base64"]), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ApiError("invalid_image", f"image_base64 is not valid base64: {exc}") from exc
        return data, fields.get("name", "image")
    if body.get("image_url"):
        url = str(body["image_url"])
        data = fetch(url, max_bytes=s.max_upload_bytes, timeout_s=s.webhook_timeout_s,
                     allow_private=s.allow_private_urls, deadline_s=s.fetch_deadline_s)
        return data, fields.get("name") or os.path.basename(urlsplit(url).path) or "image"
    raise ApiError("bad_request", "one of image, image_url, image_base64 is required")


@bp.post("")
def create() -> ResponseReturnValue:
    caller = auth.caller_bid()  # first: nothing is parsed or fetched for an unknown caller
    key = request.headers.get("Idempotency-Key") or None
    if key is not None and len(key) > MAX_IDEMPOTENCY_KEY:
        raise ApiError("bad_request", f"Idempotency-Key is longer than {MAX_IDEMPOTENCY_KEY} "
                       "characters")
    fields, body = _request_fields()
    bid = auth.job_bid(caller, fields.get("bid") or None)
    data, name = _image(fields, body)
    doc, created = jobs.submit(
        services(), celery(), data, name,
        bid=bid, tid=fields.get("tid") or None,
        callback_url=fields.get("callback_url") or None, idempotency_key=key,
    )
    resp = jsonify(doc)
    resp.status_code = 202 if created else 200
    resp.headers["Location"] = url_for("jobs.get", job_id=doc["id"])
    if not created:
        resp.headers["Idempotent-Replayed"] = "true"
    return resp


def _job(job_id: str) -> dict[str, object]:
    """The caller's job; 404 for one that does not exist *or belongs to another bid*."""
    doc = jobs.document(services(), job_id, auth.caller_bid())  # Redis first, then the DB
    if doc is None:
        raise ApiError("not_found", f"no job {job_id}")
    return doc


@bp.get("/<job_id>")
def get(job_id: str) -> ResponseReturnValue:
    return jsonify(_job(job_id))


@bp.get("/<job_id>/result")
def result(job_id: str) -> ResponseReturnValue:
    doc = _job(job_id)
    if doc["status"] != "succeeded":
        raise ApiError("not_ready", f"job {job_id} is {doc['status']}", status=doc["status"],
                       job_error=doc["error"])
    return jsonify(doc["result"])


@bp.delete("/<job_id>")
def cancel(job_id: str) -> ResponseReturnValue:
    doc = jobs.cancel(services(), celery(), job_id, auth.caller_bid())
    if doc is None:
        raise ApiError("not_found", f"no job {job_id}")
    if doc["status"] != "cancelled":
        raise ApiError("not_cancellable", f"job {job_id} already {doc['status']}",
                       status=doc["status"])
    return jsonify(doc)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    auth.init_app(app)  # the start-up warning when OCRQ_AUTH=none
