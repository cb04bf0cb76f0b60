"""Routing on the live snapshot and rollout progress: pure functions over heartbeat records."""

from __future__ import annotations

import pytest

from ocrq.cluster.rollout import progress
from ocrq.cluster.snapshot import build
from ocrq.pipeline.routing import NoLiveWorker, choose_queue
from ocrq.settings import Settings

S = Settings()


def _node(name: str, queues: list[str], drained: list[str] | None = None) -> dict[str, object]:
    return {"name": name, "group": name.split("@")[0], "queues": queues,
            "drained": drained or [], "draining": bool(drained)}


def test_preferred_queue_when_someone_consumes_it() -> None:
    snap = build([_node("gpu@h", ["gpu"]), _node("cpu@h", ["cpu", "webhooks"])], [])
    assert choose_queue(snap, S, "gpu", step="detect") == "gpu"
    assert choose_queue(snap, S, "cpu", step="reorder") == "cpu"


def test_gpu_step_falls_back_to_cpu_when_no_gpu_worker_lives() -> None:
    snap = build([_node("cpu@h", ["cpu"])], [])
    assert choose_queue(snap, S, "gpu", step="recognize") == "cpu"


def test_fail_fast_when_plan_forbids_cpu_or_nothing_consumes() -> None:
    snap = build([_node("cpu@h", ["cpu"])], [])
    with pytest.raises(NoLiveWorker, match="forbids CPU fallback") as err:
        choose_queue(snap, S, "gpu", cpu_fallback=False, step="detect")
    assert err.value.code == "no_live_worker" and err.value.details["queues"] == ["gpu"]
    with pytest.raises(NoLiveWorker, match="'cpu'"):
        choose_queue(build([_node("gpu@h", ["gpu"])], []), S, "cpu", step="reorder")


def test_drained_worker_still_counts_for_its_queues() -> None:
    snap = build([_node("gpu@h", [], drained=["gpu"]), _node("cpu@h", ["cpu"])], [])
    assert choose_queue(snap, S, "gpu", cpu_fallback=False) == "gpu"


def _proc(worker: str, pid: int, models: list[dict[str, object]]) -> dict[str, object]:
    return {"worker": worker, "pid": pid, "models": models}


def _m(version: int, status: str = "READY", active: bool = False, bids: tuple[str, ...] = (),
       reason: str = "") -> dict[str, object]:
    return {"name": "str", "version": version, "status": status, "active": active,
            "bids": list(bids), "reason": reason}


def test_rollout_progress_per_process() -> None:
    snap = build([_node("a@h", ["gpu"])], [
        _proc("a@h", 1, [_m(2, active=True)]),
        _proc("a@h", 2, [_m(1, active=True), _m(2, status="LOADING")]),
        _proc("a@h", 3, [_m(1, active=True), _m(2, status="FAILED", reason="bad sha")]),
        _proc("a@h", 4, []),
    ])
    state = progress(snap, "str", 2)
    assert state.serving == ["a@h pid 1"] and state.pending == ["a@h pid 2"]
    assert state.failed == {"a@h pid 3": "bad sha"} and state.lazy == ["a@h pid 4"]
    assert not state.done
    canary = build([_node("a@h", ["gpu"])], [
        _proc("a@h", 1, [_m(1, active=True), _m(2, bids=("acme",))])])
    assert progress(canary, "str", 2, bid="acme").serving == ["a@h pid 1"]
    assert progress(canary, "str", 2).pending == ["a@h pid 1"]


def test_stranded_queues_and_job_of_a_celery_message() -> None:
    import base64
    import json

    from ocrq.pipeline.rescue import job_of, stranded

    fallbacks = {"gpu": "cpu"}
    assert stranded(build([_node("cpu@h", ["cpu"])], []), fallbacks) == [("gpu", "cpu")]
    assert stranded(build([_node("gpu@h", ["gpu"]), _node("cpu@h", ["cpu"])], []),
                    fallbacks) == []
    assert stranded(build([_node("gpu@h", [], drained=["gpu"]), _node("cpu@h", ["cpu"])], []),
                    fallbacks) == []  # drained: it comes back, keep the messages for it
    assert stranded(build([], []), fallbacks) == []  # nobody to hand them to
    body = json.dumps([[{"job_id": "j1", "image_key": "k"}], {}, {}]).encode()
    message = {"body": base64.b64encode(body).decode(), "headers": {"task": "ocrq.detect"},
               "properties": {"body_encoding": "base64"}}
    assert job_of(message) == "j1"
    assert job_of({"body": "not json", "properties": {}}) is None
