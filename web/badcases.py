"""/v1/badcases: the failed and low-confidence jobs kept for labelling (issue 15).

Newest first, a bounded page at a time (``limit``, then ``before`` = the last id
of the page for the next one). With ``OCRQ_AUTH=keys`` a caller sees only its
own business's bad cases, exactly as with jobs; its images come out with
``ocrq badcases export`` (or one at a time from ``/v1/badcases/{id}/image``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request
from flask.typing import ResponseReturnValue

from ocrq.storage import badcases as store
from web import auth, openapi
from web.errors import ApiError
from web.extensions import services

bp = Blueprint("badcases", __name__, url_prefix="/v1/badcases")
DEFAULT_LIMIT, MAX_LIMIT = 20, 100
MAX_ID = 2**31 - 1  # the id column is a 32-bit integer
_DIGITS = re.compile(r"^[0-9]{1,10}$")


def _int(name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
        raise ApiError("bad_request", f"'{name}' must be an integer from {low} to {high}",
                       field=name)
    return int(raw)


def _since() -> datetime | None:
    raw = request.args.get("since")
    if raw is None:
        return None
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ApiError("bad_request", "'since' must be an ISO 8601 date or time (UTC)",
                       field="since") from exc
    if when.tzinfo is not None:  # stored as naive UTC
        when = when.astimezone(UTC).replace(tzinfo=None)
    return when


@bp.get("")
def listing() -> ResponseReturnValue:
    caller = auth.caller_bid()  # first: an unknown caller learns nothing
    requested = request.args.get("bid") or None
    if requested is not None and len(requested) > 64:
        raise ApiError("bad_request", "'bid' is longer than 64 characters", field="bid")
    bid = auth.job_bid(caller, requested)
    limit = _int("limit", DEFAULT_LIMIT, 1, MAX_LIMIT) or DEFAULT_LIMIT
    before = _int("before", None, 1, MAX_ID)
    rows = store.listing(services().db, bid=bid, since=_since(), before_id=before, limit=limit)
    return jsonify({"badcases": [store.summary(r) for r in rows],
                    "next": rows[-1].id if len(rows) == limit else None})


@bp.get("/<int:case_id>/image")
def image(case_id: int) -> ResponseReturnValue:
    caller = auth.caller_bid()
    row = store.image_of(services().db, case_id) if case_id <= MAX_ID else None
    if row is None or (caller is not None and row[0] != caller) or row[1] is None:
        raise ApiError("not_found", f"no bad case {case_id} with a kept image")
    return Response(row[1], mimetype="application/octet-stream",
                    headers={"Content-Disposition": f"attachment; filename={row[2]}"})


def _parameters() -> list[dict[str, Any]]:
    return [
        {"name": "bid", "in": "query", "required": False,
         "schema": {"type": "string", "maxLength": 64},
         "description": "with OCRQ_AUTH=keys: only the key's own bid"},
        {"name": "limit", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                    "default": DEFAULT_LIMIT}},
        {"name": "before", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
         "description": "the previous page's `next`"},
        {"name": "since", "in": "query", "required": False,
         "schema": {"type": "string", "format": "date-time"}},
    ]


def openapi_paths() -> dict[str, Any]:
    case = {"type": "object", "required": ["id", "job_id", "bid", "reason"], "properties": {
        "id": {"type": "integer"}, "job_id": {"type": "string"}, "bid": {"type": "string"},
        "tid": {"type": "string"}, "reason": {"enum": list(store.REASONS)},
        "code": {"type": ["string", "null"]}, "confidence": {"type": ["number", "null"]},
        "threshold": {"type": ["number", "null"]}, "error": {"type": ["object", "null"]},
        "image": {"type": "object"}, "created_at": {"type": "string"},
        "result": {"type": ["object", "null"]}}}
    page = {"type": "object", "required": ["badcases", "next"], "properties": {
        "badcases": {"type": "array", "items": case},
        "next": {"type": ["integer", "null"]}}}
    errors = {s: openapi.error_ref() for s in ("400", "401")}
    return {
        "/v1/badcases": {"get": {
            "summary": "Failed and low-confidence jobs kept for labelling, newest first",
            "security": [{"apiKey": []}], "parameters": _parameters(),
            "responses": {"200": {"description": "a page of bad cases", "content": {
                "application/json": {"schema": page}}}, **errors}}},
        "/v1/badcases/{case_id}/image": {"get": {
            "summary": "A bad case's image as submitted", "security": [{"apiKey": []}],
            "parameters": [{"name": "case_id", "in": "path", "required": True,
                            "schema": {"type": "integer", "minimum": 0,
                                       "maximum": MAX_ID}}],
            "responses": {"200": {"description": "the image bytes", "content": {
                "application/octet-stream": {"schema": {"type": "string",
                                                        "format": "binary"}}}},
                          "401": openapi.error_ref(), "404": openapi.error_ref()}}},
    }


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    openapi.extend(app, openapi_paths())  # copies: the app's own document
