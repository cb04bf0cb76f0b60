"""Property-based tests of the API against its own OpenAPI document (schemathesis).

Requests are generated from /v1/openapi.json, valid and invalid alike, and sent to
the Flask app through WSGI (real Redis + SQLite, no network server): no answer may
be a 5xx, and every answer must be one the document declares (status code,
content type, body schema, headers). Few examples per operation keep the module
well under a minute.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.errors import FailureGroup
from schemathesis.openapi.checks import JsonSchemaError, UndefinedStatusCode

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]


EXAMPLES = 25  # per operation and mode: about 350 requests in all


def _check_operation(operation: schemathesis.APIOperation, mode: GenerationMode) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=CHECKS)

    run()


def _has_inputs(operation: schemathesis.APIOperation) -> bool:
    return any(True for _ in operation.iter_parameters()) or len(operation.body) > 0


# schemathesis' own pytest integration (from_fixture) does not run under pytest 9
# (it reads Function._nodeid): each operation is driven with hypothesis directly.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=lambda m: m.value)
def test_api_answers_as_documented(web_app: Flask, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_wsgi("/v1/openapi.json", web_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8, [op.label for op in operations]
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not _has_inputs(operation):
            continue  # nothing to make invalid (GET /healthz)
        try:
            _check_operation(operation, mode)
        except (Exception, FailureGroup) as exc:  # FailureGroup is a BaseExceptionGroup
            exc.add_note(f"operation: {operation.label}")
            raise


def _drop_400(doc: dict[str, Any]) -> None:
    del doc["paths"]["/v1/jobs"]["post"]["responses"]["400"]


def _code_an_integer(doc: dict[str, Any]) -> None:
    error = doc["components"]["schemas"]["Error"]["properties"]["error"]
    error["properties"]["code"] = {"type": "integer"}


@pytest.mark.parametrize("breakage,finding", [(_drop_400, UndefinedStatusCode),
                                              (_code_an_integer, JsonSchemaError)],
                         ids=["undocumented_status", "body_off_schema"])
def test_the_checks_can_fail(web_app: Flask, breakage: Callable[[dict[str, Any]], None],
                             finding: type) -> None:
    """The same answer against a document broken on purpose is caught: the checks bite."""
    doc = web_app.test_client().get("/v1/openapi.json").get_json()
    breakage(doc)
    case = schemathesis.openapi.from_dict(doc)["/v1/jobs"]["POST"].Case(
        body={"image_base64": "not base64"}, media_type="application/json")
    response = case.call(app=web_app)
    assert response.status_code == 400
    with pytest.raises(FailureGroup) as info:
        case.validate_response(response, checks=CHECKS)
    assert {type(f) for f in info.value.exceptions} == {finding}, info.value


def test_a_real_jobs_answers_conform(web_app: Flask) -> None:
    """Random bytes are never a valid image: one real job takes the 202/200/409 paths."""
    schema = schemathesis.openapi.from_wsgi("/v1/openapi.json", web_app)
    page = np.full((48, 160, 3), 255, np.uint8)
    cv2.putText(page, "ocrq", (8, 34), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2)
    png = base64.b64encode(cv2.imencode(".png", page)[1].tobytes()).decode()
    submit = schema["/v1/jobs"]["POST"].Case(
        body={"image_base64": png}, media_type="application/json",
        headers={"Idempotency-Key": "schemathesis-1"})
    for _ in range(2):  # 202, then the idempotent replay's 200
        job_id = submit.call_and_validate(checks=CHECKS).json()["id"]
    for path, method, status in [("/v1/jobs/{job_id}", "GET", 200),
                                 ("/v1/jobs/{job_id}/result", "GET", 409),
                                 ("/v1/jobs/{job_id}", "DELETE", 200)]:
        case = schema[path][method].Case(path_parameters={"job_id": job_id})
        assert case.call_and_validate(checks=CHECKS).status_code == status
