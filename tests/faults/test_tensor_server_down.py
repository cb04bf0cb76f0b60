"""The GPU worker's tensor server down for longer than a step's soft time limit
(soak run 14 at aba7c2e: killed 6 times in 90 s, its restart backoff at 30 s, a
detect step waited past its 30 s soft limit and its job failed ``time_limit``).

The rig's GPU worker (``workers.gpu``: tensor server + prefork feeders, on CPU) is
started again here with a 5 s soft limit, a 0.5 s wait for a gone server, a message
lost twice at most (OCRQ_MAX_DELIVERIES=2), and a restart backoff of 7 s after its
server's first death and 600 s after the next; the web intake with two lines per
recognition task (recognition fans out as a chord):
- killed once, while a long page's recognition batches run and before short pages'
  detection, it is down longer than the soft limit; the steps (detect, and recognize
  tasks of a chord) give their messages back meanwhile (more often than a message
  may be lost: not counted as lost), the API says they wait, and every job then
  succeeds with the in-process engine's text;
- killed for good, the jobs fail ``tensor_server_down`` by the give-back deadline,
  with their webhooks, instead of a time limit or hanging.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from ocrq.chaos.rig import GPU, Rig
from ocrq.engine import Engine
from ocrq.images import decode_image
from ocrq.localcluster import WorkerSpec
from ocrq.settings import Settings
from tests.faults.conftest import submit_pages
from tests.fixtures import encode, render_page

pytestmark = [pytest.mark.services, pytest.mark.faults, pytest.mark.timeout(300)]
SOFT_S = 5  # task_time_limit_s - 30 (ocrq.pipeline.app.CeleryConfig)
DOWN_S = 7.0  # the restart backoff after the server's first death
DEADLINE_S = 20.0  # give-backs of one step, from its first
DOWN = {"task_time_limit_s": SOFT_S + 30, "tensor_wait_s": 0.5,
        "tensor_restart_backoff_s": f"{DOWN_S:g},600", "giveback_backoff_s": 0.5,
        "giveback_backoff_max_s": 1.0, "giveback_deadline_s": DEADLINE_S,
        "giveback_attempts": 40, "max_deliveries": 2}
BATCH_LINES = 2  # the intake's lines per recognition task: chords, even for 3 lines


def _restart_gpu(rig: Rig, **overrides: Any) -> None:
    # Nothing in flight: SIGKILL is enough (its tensor server exits with it), and
    # quicker than a warm shutdown.
    rig.cluster.kill(GPU)
    time.sleep(rig.settings.heartbeat_ttl_s)  # its heartbeat gone: not taken for the new
    spec = WorkerSpec("gpu", GPU, rig.settings.queue_gpu, rig.gpu_threads)
    rig.cluster.start_worker(spec, rig.settings.with_(**overrides))
    rig.cluster.wait_ready([GPU])


def _restart_web(rig: Rig, **overrides: Any) -> None:
    rig.cluster.stop(["web"], grace_s=5)
    rig.cluster.start_web(port=rig.web_port, threads=8, settings=rig.settings.with_(**overrides))
    rig.cluster.wait_ready(["web"])


@pytest.fixture(scope="module")
def long_page(engine: Engine, model_root: Any) -> tuple[bytes, str]:
    """12 lines: 6 recognition tasks, a second or two of them to land a kill in."""
    data = encode(render_page([f"Item {i:02d} paper clips box {i}.50" for i in range(12)],
                              size=24, margin=16))
    return data, engine.run(decode_image(data, "p.png", Settings(model_root=model_root))).text()


@pytest.fixture(scope="module")
def down_rig(rig: Rig, pages: list[tuple[bytes, str]]) -> Iterator[Rig]:
    _restart_gpu(rig, **DOWN)
    _restart_web(rig, recognize_batch_lines=BATCH_LINES)
    try:
        # One job through first: the feeders have their models and the server is up.
        ids, expected = submit_pages(rig, pages, 1, prefix="warm")
        assert rig.wait_terminal(ids, timeout_s=120)[ids[0]].status == "succeeded"
        yield rig
    finally:  # the suite's own web and GPU worker again
        _restart_web(rig)
        _restart_gpu(rig)


def _server(rig: Rig, not_pid: int = 0, timeout_s: float = 60) -> psutil.Process:
    """The GPU worker's tensor server process (other than ``not_pid``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(psutil.Error):
            node = psutil.Process(rig.cluster.processes[GPU].pid)
            for p in node.children(recursive=True):
                if "workers.tensor_server" in " ".join(p.cmdline()) and p.pid != not_pid:
                    return p
        assert time.monotonic() < deadline, "no tensor server under the GPU worker"
        time.sleep(0.05)


def _restarts(rig: Rig, delay: str) -> int:
    log = rig.cluster.processes[GPU].log
    text = log.read_text(errors="replace") if log is not None else ""
    return text.count(f"restarting in {delay} s")


class Watcher(threading.Thread):
    """Polls the API: what the jobs said while their steps were given back."""

    def __init__(self, rig: Rig, ids: list[str]) -> None:
        super().__init__(daemon=True)
        self.rig, self.ids = rig, ids
        self.waiting: list[tuple[str, dict[str, Any]]] = []  # (status, progress.waiting)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            for job_id in self.ids:
                with contextlib.suppress(Exception):
                    doc = self.rig.api(job_id)
                    if "waiting" in doc["progress"]:
                        self.waiting.append((doc["status"], doc["progress"]["waiting"]))


def _in_recognition(rig: Rig, job_id: str, timeout_s: float = 120) -> None:
    """Until the job's recognition tasks run (one done, others left)."""
    deadline = time.monotonic() + timeout_s
    while True:
        progress = rig.api(job_id)["progress"]
        if 1 <= int(progress["batches_done"] or 0) < int(progress["batches_total"] or 0):
            return
        assert time.monotonic() < deadline, progress
        time.sleep(0.02)


def test_steps_wait_out_a_tensor_server_down_past_their_soft_limit(
        down_rig: Rig, pages: list[tuple[bytes, str]], long_page: tuple[bytes, str]) -> None:
    rig = down_rig
    long_id = rig.submit(long_page[0], "long.png")
    _in_recognition(rig, long_id)
    first = _server(rig)
    first.send_signal(signal.SIGKILL)  # its first death: back after DOWN_S
    killed = time.monotonic()
    ids, expected = submit_pages(rig, pages, len(pages), prefix="down")
    ids, expected = [long_id, *ids], {**expected, long_id: long_page[1]}
    watcher = Watcher(rig, ids)
    watcher.start()
    try:
        back = _server(rig, not_pid=first.pid)
        down_s = time.monotonic() - killed
        rig.wait_terminal(ids, timeout_s=120)
    finally:
        watcher.stop.set()
        watcher.join()
    assert down_s > SOFT_S, down_s  # down longer than a step may run
    assert back.is_running()
    rig.wait_webhooks(ids, timeout_s=60)
    audit = rig.audit(ids, expected)
    assert audit.problems == [], audit
    assert audit.statuses == {"succeeded": len(ids)}, audit
    # While given back, the API said so, and the job was running (not failed, not lost).
    assert watcher.waiting, "no job was seen waiting"
    assert {s for s, _ in watcher.waiting} == {"running"}, watcher.waiting
    assert {w["reason"] for _, w in watcher.waiting} == {"tensor_server_down"}
    # Detection, and recognition tasks inside a chord, were given back.
    assert {w["task"] for _, w in watcher.waiting} == {"detect", "recognize"}, watcher.waiting
    # More give-backs of one step than a message may be lost: none counted as lost.
    log = rig.cluster.processes[GPU].log
    tries = [int(n) for n in re.findall(r"given back \(try (\d+)",
                                        log.read_text(errors="replace") if log else "")]
    assert max(tries) > DOWN["max_deliveries"], tries


def _kill_for_good(rig: Rig) -> None:
    """SIGKILL the tensor server until its restart backoff is the 600 s one."""
    for _ in range(3):
        before = (_restarts(rig, "600"), _restarts(rig, f"{DOWN_S:g}"))
        first = _server(rig)
        first.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (_restarts(rig, "600"), _restarts(rig, f"{DOWN_S:g}")) == before:
            assert time.monotonic() < deadline, "the GPU worker logged no restart"
            time.sleep(0.05)
        if _restarts(rig, "600") > before[0]:
            return
        _server(rig, not_pid=first.pid)  # a first death (run alone): once more
    raise AssertionError("the tensor server kept coming back")


def test_a_tensor_server_that_never_comes_back_fails_its_jobs_with_the_reason(
        down_rig: Rig, pages: list[tuple[bytes, str]]) -> None:
    rig = down_rig
    _kill_for_good(rig)
    t0 = time.monotonic()
    ids, expected = submit_pages(rig, pages[:2], 2, prefix="gone")
    rows = rig.wait_terminal(ids, timeout_s=DEADLINE_S + 60)
    took = time.monotonic() - t0
    # The deadline, plus the last try's wait and the time to submit and record.
    assert took < DEADLINE_S + 15, took
    rig.wait_webhooks(ids, timeout_s=60)
    audit = rig.audit(ids, expected, {i: "tensor_server_down" for i in ids})
    assert audit.problems == [], audit
    for job in rows.values():
        error = job.error or {}
        assert error["task"] in ("rotate", "detect"), error
        assert error["attempts"] > 1 and error["waited_s"] >= DEADLINE_S, error
        assert "no tensor server" in error["message"], error
    assert not [p for p in psutil.Process(rig.cluster.processes[GPU].pid).children(
        recursive=True) if "workers.tensor_server" in " ".join(p.cmdline())]
