"""The OpenAPI 3.1 document of the API, served at /v1/openapi.json.

Each app gets its own document: :func:`base_document` builds a fresh one (jobs,
health, this endpoint) at every call, and the modules that own other endpoints
add theirs to the app's copy with :func:`extend` in their ``init_app``. Nothing
at module level is ever modified, so two apps in one process (tests, a server
that builds several) never see each other's changes.
"""

from __future__ import annotations

import copy
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify
from flask.typing import ResponseReturnValue

from web import jobs

bp = Blueprint("openapi", __name__)

_EXTENSION = "ocrq_openapi"  # key of the app's document in app.extensions


def error_ref() -> dict[str, Any]:
    """A response that is the Error schema (fresh: documents share no objects)."""
    return {"$ref": "#/components/responses/Error"}


def json_body(ref: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


def _job_id() -> list[dict[str, Any]]:
    return [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}]


def _api_key() -> list[dict[str, list[str]]]:
    """The job endpoints' security requirement: a business's API key."""
    return [{"apiKey": []}]


def _api_key_scheme() -> dict[str, Any]:
    return {"type": "http", "scheme": "bearer",
            "description": "An API key of one business (`ocrq keys create BID`). Required "
                           "on /v1/jobs when the service runs with OCRQ_AUTH=keys; the key's "
                           "bid is the job's, and other businesses' jobs answer 404."}


def _text(field: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "maxLength": jobs.LIMITS[field], **extra}


def _submit() -> dict[str, Any]:
    fields = {"bid": _text("bid"), "tid": _text("tid"),
              "callback_url": _text("callback_url", format="uri")}
    key = {"type": "string", "maxLength": jobs.MAX_IDEMPOTENCY_KEY,
           "pattern": jobs.IDEMPOTENCY_KEY_PATTERN}
    return {
        "summary": "Submit an image, or a document (PDF, multi-page TIFF) as one job of "
                   "pages (at most OCRQ_MAX_PAGES; PDF pages checked against the pixel "
                   "limits at OCRQ_PDF_DPI)",
        "security": _api_key(),
        "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                        "schema": key,
                        "description": "same key and bid return the same job"},
                       *[{"name": k, "in": "query", "required": False,
                          "schema": copy.deepcopy(fields.get(k) or _text(k)),
                          "description": "with a raw body (image/*, application/pdf) "
                                         "only"}
                         for k in jobs.RAW_FIELDS]],
        "requestBody": {"required": True, "content": {
            # The image (or PDF, multi-page TIFF) itself, fields in the query string:
            # the cheapest submit to parse.
            # Any image/* type (web/jobs.py raw_upload): a media range, as OpenAPI allows.
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/pdf": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {"schema": {"type": "object", "required": ["image"],
                "properties": {"image": {"type": "string", "format": "binary"}, **fields}}},
            "application/json": {"schema": {"type": "object", "properties": {
                "image_url": _text("image_url", format="uri"),
                "image_base64": {"type": "string", "description":
                                 "base64, line-wrapped or not, or a data:image/...;base64, "
                                 "or data:application/pdf;base64, URL; send it or "
                                 "image_url, not both"},
                "name": _text("name"), **copy.deepcopy(fields)}}}}},
        "responses": {"202": {"description": "accepted", **json_body("Job"),
                              "headers": {"Location": {"schema": {"type": "string"}}}},
                      "200": {"description": "idempotent replay", **json_body("Job"),
                              "headers": {"Idempotent-Replayed": {"schema": {"type": "string"}},
                                          "Location": {"schema": {"type": "string"}}}},
                      "400": error_ref(), "401": error_ref(), "413": error_ref(),
                      "422": {"description": "image_url could not be fetched",
                              **json_body("Error")},
                      "503": error_ref()}}


def _paths() -> dict[str, Any]:
    return {
        "/v1/jobs": {"post": _submit()},
        "/v1/jobs/{job_id}": {
            "get": {"summary": "Job status (from the Redis cache)", "parameters": _job_id(),
                    "security": _api_key(),
                    "responses": {"200": {"description": "job", **json_body("Job")},
                                  "401": error_ref(), "404": error_ref()}},
            "delete": {"summary": "Cancel", "parameters": _job_id(), "security": _api_key(),
                       "responses": {"200": {"description": "cancelled", **json_body("Job")},
                                     "401": error_ref(), "404": error_ref(),
                                     "409": error_ref()}}},
        "/v1/jobs/{job_id}/result": {"get": {
            "summary": "Result document", "parameters": _job_id(), "security": _api_key(),
            "responses": {"200": {"description": "result", **json_body("Result")},
                          "401": error_ref(), "404": error_ref(), "409": error_ref()}}},
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "up"}}}},
        "/readyz": {"get": {"summary": "Broker, Redis and database reachable",
                            "responses": {"200": {"description": "ready"},
                                          "503": {"description": "not ready"}}}},
        "/v1/openapi.json": {"get": {
            "summary": "This document",
            "responses": {"200": {"description": "OpenAPI 3.1", "content": {
                "application/json": {"schema": {"type": "object"}}}}}}},
    }


def _job_schema() -> dict[str, Any]:
    nullable_str = ["string", "null"]
    return {"type": "object", "required": ["id", "status"], "properties": {
        "id": {"type": "string"}, "bid": {"type": "string"}, "tid": {"type": "string"},
        "status": {"enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
        "stage": {"type": list(nullable_str)},
        "progress": {"type": "object", "properties": {
            "batches_done": {"type": "integer"},
            "batches_total": {"type": ["integer", "null"]},
            # A document only: its pages read so far, of how many.
            "pages_done": {"type": "integer"}, "pages_total": {"type": "integer"},
            # A step handed back while its backend (the tensor server) is down:
            # why, which step, which try, since when, and the next try.
            "waiting": {"type": ["object", "null"], "properties": {
                "reason": {"type": "string"}, "task": {"type": "string"},
                "attempt": {"type": "integer"}, "since": {"type": "string"},
                "next_try_at": {"type": "string"}}}}},
        "image": {"type": "object"},
        "created_at": {"type": list(nullable_str)},
        "started_at": {"type": list(nullable_str)},
        "finished_at": {"type": list(nullable_str)},
        "error": {"type": ["object", "null"]},
        "result": {"oneOf": [{"$ref": "#/components/schemas/Result"}, {"type": "null"}]}}}


def _document_schema() -> dict[str, Any]:
    """A PDF's or multi-page TIFF's result: every page's Page document, in order."""
    page = {"allOf": [{"$ref": "#/components/schemas/Page"},
                      {"type": "object", "properties": {"page": {"type": "integer",
                                                                 "minimum": 1}}}]}
    return {"type": "object", "required": ["pages"], "properties": {
        "image": {"type": "string"}, "page_count": {"type": "integer"},
        "pages": {"type": "array", "items": page},
        "models": {"type": "object", "additionalProperties": {"type": "integer"}},
        "timings_ms": {"type": "object", "description": "each step's time summed over "
                       "the pages"}}}


def _cost_schema() -> dict[str, Any]:
    """A page's cost per step (rotate, detect, recognize, reorder) and its total."""
    seconds = {"type": "object", "properties": {
        "cpu_s": {"type": "number", "description": "CPU seconds of the worker process "
                  "during the step (threaded workers: of every task running alongside)"},
        "gpu_s": {"type": "number", "description": "seconds in forward passes on a GPU "
                  "(runtime=remote: the tensor server request's wall time, wire included)"}}}
    return {"type": "object", "additionalProperties": seconds,
            "description": "cost per step, keyed by step, and `total`: their sum"}


def _tables_schema() -> dict[str, Any]:
    """Plan ``table`` (plug-in stage table): boxes are [x0, y0, x1, y1] on the image
    as submitted; a cell's box is the box of its text; ``html`` is escaped."""
    box = {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4}
    cell = {"type": "object", "properties": {
        "box": box, "row": {"type": "integer"}, "col": {"type": "integer"},
        "row_span": {"type": "integer"}, "col_span": {"type": "integer"},
        "text": {"type": "string"}}}
    table = {"type": "object", "properties": {
        "box": box, "rows": {"type": "integer"}, "cols": {"type": "integer"},
        "cells": {"type": "array", "items": cell}, "html": {"type": "string"}}}
    return {"type": "object", "description": "present when the plan ran stage table",
            "properties": {"count": {"type": "integer"},
                           "tables": {"type": "array", "items": table}}}


def _card_schema() -> dict[str, Any]:
    """Plan ``idcard`` (plug-in stage idcard): the quad is on the image as submitted,
    clockwise from the card's top-left; lines' polygons are on the crop."""
    date = {"type": ["string", "null"], "description": "ISO 8601 date"}
    return {"type": "object", "description": "present when the plan ran stage idcard",
            "properties": {
                "found": {"type": "boolean"}, "confidence": {"type": "number"},
                "quad": {"type": ["array", "null"], "items": {"type": "array"}},
                "crop": {"type": ["object", "null"], "properties": {
                    "width": {"type": "integer"}, "height": {"type": "integer"}}},
                "lines": {"type": "array", "items": {"type": "object"}},
                "text": {"type": "string"},
                "fields": {"type": "object", "properties": {
                    "name": {"type": ["string", "null"]}, "birth_date": date,
                    "expiry_date": date, "document_number": {"type": ["string", "null"]},
                    "mrz": {"type": ["object", "null"], "description": "format (TD1/TD2/"
                            "TD3), fields, checks (each check digit), valid (all hold)"},
                    "sources": {"type": "object"}}}}}


def _schemas() -> dict[str, Any]:
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
        "Job": _job_schema(),
        "Result": {"anyOf": [{"$ref": "#/components/schemas/Page"},
                             {"$ref": "#/components/schemas/Document"}],
                   "description": "an image's Page, or a document's pages"},
        "Document": _document_schema(),
        "Page": {"type": "object", "properties": {
            "image": {"type": "string"}, "width": {"type": "integer"},
            "height": {"type": "integer"}, "rotation": {"type": "integer"},
            "lines": {"type": "array", "items": {"type": "object", "properties": {
                "text": {"type": "string"}, "confidence": {"type": "number"},
                "polygon": {"type": "array"}, "order": {"type": "integer"},
                "block": {"type": "integer"}, "line": {"type": "integer"}}}},
            "models": {"type": "object", "additionalProperties": {"type": "integer"}},
            "timings_ms": {"type": "object"},
            "cost": _cost_schema(),
            "tables": _tables_schema(),
            "document_class": {"type": "object", "description": "present when the plan "
                               "ran stage classify: label, confidence, scores per class"},
            "card": _card_schema(),
            "branch": {"type": "array", "description": "branches a step's `then` took "
                       "(plan document)", "items": {"type": "object", "properties": {
                           "after": {"type": "string"}, "label": {"type": "string"},
                           "tid": {"type": ["string", "null"]},
                           "stages": {"type": "array", "items": {"type": "string"}}}}}}},
    }


def base_document() -> dict[str, Any]:
    """A new document with the jobs, health and OpenAPI endpoints (a fresh dict per call)."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "ocrq", "version": "1",
                 "description": "Asynchronous OCR jobs: submit, poll or receive a signed "
                                "webhook (X-Ocrq-Timestamp, X-Ocrq-Signature: "
                                "v1=HMAC-SHA256(secret, timestamp + '.' + body))."},
        "paths": _paths(),
        "components": {"responses": {"Error": {"description": "error",
                                               **json_body("Error")}},
                       "schemas": _schemas(),
                       "securitySchemes": {"apiKey": _api_key_scheme()}},
    }


def document(app: Flask) -> dict[str, Any]:
    """The app's own document (created on first use)."""
    doc = app.extensions.get(_EXTENSION)
    if doc is None:
        doc = app.extensions[_EXTENSION] = base_document()
    return doc


def extend(app: Flask, paths: dict[str, Any],
           security_schemes: dict[str, Any] | None = None) -> None:
    """Add ``paths`` (and security schemes) to the app's document, as deep copies."""
    doc = document(app)
    doc["paths"].update(copy.deepcopy(paths))
    if security_schemes:
        schemes = doc["components"].setdefault("securitySchemes", {})
        schemes.update(copy.deepcopy(security_schemes))


@bp.get("/v1/openapi.json")
def spec() -> ResponseReturnValue:
    return jsonify(document(current_app))


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    document(app)
