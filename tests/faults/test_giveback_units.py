"""Give-backs of a step whose backend is down (ocrq/pipeline/retry.py), against real
Redis and a real database file: not counted as lost deliveries (unless the backend
died holding the step's request), capped in number and in time, and the job's
status says it waits. The whole path with real workers is test_tensor_server_down.py.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from ocrq.models.serving.protocol import TensorServerDown
from ocrq.pipeline import work
from ocrq.pipeline.retry import back_again, give_back, give_back_delay
from ocrq.pipeline.state import Services
from ocrq.settings import Settings
from ocrq.storage import jobs as store

pytestmark = [pytest.mark.services, pytest.mark.faults, pytest.mark.timeout(60)]


def _job(services: Services) -> str:
    job_id = f"gb{uuid.uuid4().hex[:16]}"
    job, _ = store.create_job(services.db, id=job_id, bid="b", tid="t", status="running",
                              stage="detect", image_name="p.png", width=1, height=1,
                              batches_done=0)
    services.cache.put(job_id, work.flat_from_row(job, None))
    return job_id


def _start(services: Services, task_id: str, job_id: str) -> dict[str, Any] | None:
    """What tasks._may_run does at every start of a stage task's message."""
    return work.redelivery_error(services, task_id, job_id, "detect")


def _down(during_call: bool = False) -> TensorServerDown:
    return TensorServerDown("no tensor server at /x.sock (waited 1 s)",
                            during_call=during_call)


def test_give_backs_are_not_lost_deliveries_and_the_job_says_it_waits(
        web_settings: Settings) -> None:
    services = Services(web_settings.with_(max_deliveries=3, giveback_backoff_s=0.5,
                                           giveback_backoff_max_s=2.0))
    job_id, task_id = _job(services), uuid.uuid4().hex
    for retries in range(8):  # more give-backs than max_deliveries
        assert _start(services, task_id, job_id) is None
        delay = give_back(services, task_id, job_id, "detect", _down(), retries)
        assert delay == min(2.0, 0.5 * 2 ** retries)
        waiting = work.document(services, job_id)["progress"]["waiting"]  # type: ignore[index]
        assert waiting["reason"] == "tensor_server_down" and waiting["attempt"] == retries + 1
        assert waiting["task"] == "detect"
    assert _start(services, task_id, job_id) is None  # the run that gets through
    back_again(services, task_id, job_id)
    doc = work.document(services, job_id)
    assert doc is not None and "waiting" not in doc["progress"]
    assert doc["status"] == "running"
    # The start counter still counts real deaths of this message from here.
    for _ in range(services.settings.max_deliveries - 1):
        assert _start(services, task_id, job_id) is None
    error = _start(services, task_id, job_id)
    assert error is not None and error["code"] == "worker_lost"


def test_a_backend_that_died_holding_the_request_counts_as_a_lost_delivery(
        web_settings: Settings) -> None:
    # A poison page that kills the tensor server each time its request reaches it must
    # end in worker_lost after max_deliveries starts, as when it kills its feeder.
    services = Services(web_settings.with_(max_deliveries=3))
    job_id, task_id = _job(services), uuid.uuid4().hex
    for retries in range(3):
        assert _start(services, task_id, job_id) is None
        assert isinstance(give_back(services, task_id, job_id, "detect",
                                    _down(during_call=True), retries), float)
    error = _start(services, task_id, job_id)
    assert error is not None and error["code"] == "worker_lost"


def test_give_backs_end_at_their_cap_and_at_their_deadline(web_settings: Settings) -> None:
    s = web_settings.with_(giveback_attempts=3, giveback_deadline_s=5.0,
                           giveback_backoff_s=1.0, giveback_backoff_max_s=4.0)
    assert [give_back_delay(s, n, 0.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, None]
    assert give_back_delay(s, 2, 4.5) == 0.5  # the last try at the deadline, not after
    assert give_back_delay(s, 2, 5.0) is None
    services = Services(s)
    job_id, task_id = _job(services), uuid.uuid4().hex
    error = give_back(services, task_id, job_id, "detect", _down(), retries=3)
    assert isinstance(error, dict) and error["code"] == "tensor_server_down"
    assert error["task"] == "detect" and error["attempts"] == 4
    assert "no tensor server" in error["message"] and "not tried again" in error["message"]
    # By time: the first give-back of this message began past the deadline.
    task_id = uuid.uuid4().hex
    assert isinstance(give_back(services, task_id, job_id, "detect", _down(), 0), float)
    services.redis.set(f"ocrq:giveback:{task_id}", time.time() - 6.0)
    error = give_back(services, task_id, job_id, "detect", _down(), 1)
    assert isinstance(error, dict) and error["waited_s"] >= 6.0
    assert services.redis.get(f"ocrq:giveback:{task_id}") is None  # nothing left behind
