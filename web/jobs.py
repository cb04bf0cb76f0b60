"""/v1/jobs: submit, poll, result, cancel. Thin: parsing and status codes only.

Every view first asks web.auth for the caller's bid (its API key's business) and
passes it down: with OCRQ_AUTH=keys another business's job is a 404, not a 403.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from urllib.parse import urlsplit

from flask import Blueprint, Flask, g, jsonify, request
from flask.typing import ResponseReturnValue

from ocrq.pipeline import jobs
from ocrq.storage import Job
from ocrq.webhooks import fetch
from web import auth
from web.errors import ApiError
from web.extensions import celery, services

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")
_COLUMNS = Job.__table__.c
MAX_IDEMPOTENCY_KEY: int = _COLUMNS.idempotency_key.type.length  # type: ignore[attr-defined]
# Printable ASCII, not blank at either end (an RFC 8941 sf-string, as the IETF
# Idempotency-Key draft has it): a key that looks the same in every log.
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$"
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
# The text fields and their longest accepted value: the database column, or for
# URLs far more than any real one (a 2 kB URL is where browsers and CDNs give up).
MAX_URL = 2048
LIMITS: dict[str, int] = {
    "bid": _COLUMNS.bid.type.length, "tid": _COLUMNS.tid.type.length,  # type: ignore[attr-defined]
    "name": _COLUMNS.image_name.type.length,  # type: ignore[attr-defined]
    "callback_url": MAX_URL, "image_url": MAX_URL,
}
_JSON_FIELDS = (*LIMITS, "image_base64")
RAW_FIELDS = ("bid", "tid", "name", "callback_url")  # query parameters of a raw upload
RAW_TYPES = ("application/pdf",)  # and image/*
# data:[image/<type>][;param=value]*;base64, (RFC 2397), what a browser's FileReader makes
# (application/pdf too: a PDF document is a job of pages).
_DATA_URL = re.compile(r"data:(image/[\w.+-]+|application/pdf)?(;[\w.+-]+=[\w.+-]+)*;base64,",
                       re.IGNORECASE)


def raw_upload() -> bool:
    """The body is the image or document itself (``Content-Type: image/jpeg``...), the
    fields in the query string: no multipart to parse (issue 14: the cheapest submit)."""
    mimetype = request.mimetype
    return mimetype.startswith("image/") or mimetype in RAW_TYPES


def _request_fields() -> tuple[dict[str, str], dict[str, object] | None]:
    """(the text fields, the JSON body or None for multipart and raw uploads).

    Parsed and checked (types, lengths) before any image is read or fetched, so
    a wrong bid costs nothing."""
    if raw_upload():
        fields, body = {k: v for k, v in request.args.items() if k in RAW_FIELDS}, None
    elif request.files or request.form:
        fields, body = {k: v for k, v in request.form.items() if k in LIMITS}, None
    else:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ApiError("bad_request", "send multipart 'image' or JSON with image_url or "
                           "image_base64")
        fields = {}
        for k in _JSON_FIELDS:
            value = body.get(k)
            if value is not None and not isinstance(value, str):
                raise ApiError("bad_request", f"'{k}' must be a string", field=k)
            if value is not None:
                fields[k] = value
    for k, limit in LIMITS.items():
        if len(fields.get(k, "")) > limit:
            raise ApiError("bad_request", f"'{k}' is longer than {limit} characters",
                           field=k, limit=limit)
    return fields, body


def _base64(text: str) -> bytes:
    """A plain, line-wrapped or ``data:image/...;base64,`` string, decoded."""
    if text[:5].lower() == "data:":
        m = _DATA_URL.match(text)
        if m is None:
            raise ApiError("invalid_image", "image_base64 may be a data: URL only as "
                           "data:image/<type>;base64,... or data:application/pdf;base64,...")
        text = text[m.end():]
    try:  # whitespace anywhere (MIME's 76-column lines, a trailing newline) is dropped
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError("invalid_image", f"image_base64 is not valid base64: {exc}") from exc


def _image(fields: dict[str, str], body: dict[str, object] | None) -> tuple[bytes, str]:
    """(bytes, name) from the raw body, multipart `image` or JSON image_url / image_base64."""
    if body is None and raw_upload():
        data = request.get_data(cache=False)  # bounded by MAX_CONTENT_LENGTH (a 413)
        if not data:
            raise ApiError("bad_request", f"the {request.mimetype} body is empty")
        return data, fields.get("name") or "image"
    if body is None:
        f = request.files.get("image")
        if f is None:
            raise ApiError("bad_request", "multipart request needs a file field 'image'")
        return f.read(), f.filename or "image"
    s = services().settings
    if fields.get("image_base64") and fields.get("image_url"):
        raise ApiError("bad_request", "send one of image_url and image_base64, not both")
    if fields.get("image_base64"):
        return _base64(fields["image_base64"]), fields.get("name", "image")
    if fields.get("image_url"):
        url = fields["image_url"]
        data = fetch(url, max_bytes=s.max_upload_bytes, timeout_s=s.webhook_timeout_s,
                     allow_private=s.allow_private_urls, deadline_s=s.fetch_deadline_s)
        return data, fields.get("name") or os.path.basename(urlsplit(url).path) or "image"
    raise ApiError("bad_request", "one of image, image_url, image_base64 is required")


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key") or None
    if key is not None and len(key) > MAX_IDEMPOTENCY_KEY:
        raise ApiError("bad_request", f"Idempotency-Key is longer than {MAX_IDEMPOTENCY_KEY} "
                       "characters")
    if key is not None and not _IDEMPOTENCY_KEY.fullmatch(key):  # "$" alone admits a "\n"
        raise ApiError("bad_request", "Idempotency-Key must be printable ASCII, not blank "
                       "at either end")
    return key


@bp.post("")
def create() -> ResponseReturnValue:
    caller = auth.caller_bid()  # first: nothing is parsed or fetched for an unknown caller
    key = _idempotency_key()
    fields, body = _request_fields()
    bid = auth.job_bid(caller, fields.get("bid") or None)
    data, name = _image(fields, body)
    doc, created = jobs.submit(
        services(), celery(), data, name,
        bid=bid, tid=fields.get("tid") or None,
        callback_url=fields.get("callback_url") or None, idempotency_key=key,
    )
    # The request's log line names the job (web/request_log.py) without parsing the
    # answer again.
    g.ocrq_job = {"job_id": doc["id"], "bid": doc["bid"], "tid": doc["tid"], "stage": "intake"}
    resp = jsonify(doc)
    resp.status_code = 202 if created else 200
    resp.headers["Location"] = f"{request.script_root}{bp.url_prefix}/{doc['id']}"
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
