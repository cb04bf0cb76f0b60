"""The OpenAPI 3.1 document of the API, served at /v1/openapi.json."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, jsonify
from flask.typing import ResponseReturnValue

bp = Blueprint("openapi", __name__)

_ERR = {"$ref": "#/components/responses/Error"}
_ID = [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}]


def _json(ref: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "ocrq", "version": "1",
             "description": "Asynchronous OCR jobs: submit, poll or receive a signed webhook "
                            "(X-Ocrq-Timestamp, X-Ocrq-Signature: v1=HMAC-SHA256(secret, "
                            "timestamp + '.' + body))."},
    "paths": {
        "/v1/jobs": {"post": {
            "summary": "Submit an image",
            "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                            "schema": {"type": "string"},
                            "description": "same key and bid return the same job"}],
            "requestBody": {"required": True, "content": {
                "multipart/form-data": {"schema": {"type": "object", "required": ["image"],
                    "properties": {"image": {"type": "string", "format": "binary"},
                                   "bid": {"type": "string"}, "tid": {"type": "string"},
                                   "callback_url": {"type": "string", "format": "uri"}}}},
                "application/json": {"schema": {"type": "object", "properties": {
                    "image_url": {"type": "string", "format": "uri"},
                    "image_base64": {"type": "string"}, "name": {"type": "string"},
                    "bid": {"type": "string"}, "tid": {"type": "string"},
                    "callback_url": {"type": "string", "format": "uri"}}}}}},
            "responses": {"202": {"description": "accepted", **_json("Job"),
                                  "headers": {"Location": {"schema": {"type": "string"}}}},
                          "200": {"description": "idempotent replay", **_json("Job")},
                          "400": _ERR, "413": _ERR}}},
        "/v1/jobs/{job_id}": {
            "get": {"summary": "Job status (from the Redis cache)", "parameters": _ID,
                    "responses": {"200": {"description": "job", **_json("Job")}, "404": _ERR}},
            "delete": {"summary": "Cancel", "parameters": _ID,
                       "responses": {"200": {"description": "cancelled", **_json("Job")},
                                     "404": _ERR, "409": _ERR}}},
        "/v1/jobs/{job_id}/result": {"get": {
            "summary": "Result document", "parameters": _ID,
            "responses": {"200": {"description": "result", **_json("Page")},
                          "404": _ERR, "409": _ERR}}},
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "up"}}}},
        "/readyz": {"get": {"summary": "Broker, Redis and database reachable",
                            "responses": {"200": {"description": "ready"},
                                          "503": {"description": "not ready"}}}},
    },
    "components": {
        "responses": {"Error": {"description": "error", **_json("Error")}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
            "Job": {"type": "object", "required": ["id", "status"], "properties": {
                "id": {"type": "string"}, "bid": {"type": "string"}, "tid": {"type": "string"},
                "status": {"enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
                "stage": {"type": ["string", "null"]},
                "progress": {"type": "object", "properties": {
                    "batches_done": {"type": "integer"},
                    "batches_total": {"type": ["integer", "null"]}}},
                "image": {"type": "object"},
                "created_at": {"type": ["string", "null"]},
                "started_at": {"type": ["string", "null"]},
                "finished_at": {"type": ["string", "null"]},
                "error": {"type": ["object", "null"]},
                "result": {"oneOf": [{"$ref": "#/components/schemas/Page"}, {"type": "null"}]}}},
            "Page": {"type": "object", "properties": {
                "image": {"type": "string"}, "width": {"type": "integer"},
                "height": {"type": "integer"}, "rotation": {"type": "integer"},
                "lines": {"type": "array", "items": {"type": "object", "properties": {
                    "text": {"type": "string"}, "confidence": {"type": "number"},
                    "polygon": {"type": "array"}, "order": {"type": "integer"},
                    "block": {"type": "integer"}, "line": {"type": "integer"}}}},
                "models": {"type": "object", "additionalProperties": {"type": "integer"}},
                "timings_ms": {"type": "object"}}},
        },
    },
}


@bp.get("/v1/openapi.json")
def spec() -> ResponseReturnValue:
    return jsonify(SPEC)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
