"""JSON log lines (ocrq/observability/logs.py): the job's fields on every record, from
any logger, per thread; the text form for people; OCRQ_LOG_FORMAT checked."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from ocrq.observability import logs
from ocrq.settings import Settings


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """configure() into a string; the root logger (pytest's handlers) restored after."""
    root = logging.getLogger()
    saved, level, process = list(root.handlers), root.level, dict(logs._process)
    out = io.StringIO()
    yield out
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in saved:
        root.addHandler(h)
    root.setLevel(level)
    logs._process.clear()
    logs._process.update(process)


def _json(fmt: str, out: io.StringIO, **process: str) -> None:
    logs.configure(fmt, "INFO", **process)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(out)


def _lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_every_logger_gets_the_job_and_process_fields(stream: io.StringIO) -> None:
    _json("json", stream, service="gpu", worker="gpu1@host")
    logging.getLogger("celery.app.trace").info("before any job")
    with logs.job_context(job_id="j1", bid="acme", tid="ocr", stage="detect"):
        logging.getLogger("ocrq.pipeline.work").info("inside %s", "it")
        logs.stage_done(logging.getLogger("x"), "recognize", 12.345, {"det": 2, "rec": 1})
    logging.getLogger("y").warning("after")
    before, inside, done, after = _lines(stream)
    assert before["message"] == "before any job" and "job_id" not in before
    assert before["service"] == "gpu" and before["worker"] == "gpu1@host"
    assert before["logger"] == "celery.app.trace" and before["level"] == "INFO"
    assert isinstance(before["time"], str) and isinstance(before["pid"], int)
    assert {k: inside[k] for k in ("job_id", "bid", "tid", "stage", "message")} == {
        "job_id": "j1", "bid": "acme", "tid": "ocr", "stage": "detect", "message": "inside it"}
    # The call's own stage wins over the context's.
    assert done["stage"] == "recognize" and done["duration_ms"] == 12.35
    assert done["models"] == {"det": 2, "rec": 1} and done["event"] == "stage_done"
    assert "job_id" not in after and after["level"] == "WARNING"


def test_each_thread_has_its_own_job(stream: io.StringIO) -> None:
    """The GPU worker runs tasks on threads: one task's job never leaks into another's."""
    _json("json", stream)
    barrier = threading.Barrier(2)

    def task(job: str) -> None:
        token = logs.bind(job_id=job, stage="recognize")
        barrier.wait()  # both bound before either logs
        logging.getLogger("t").info("batch of %s", job)
        logs.reset(token)

    threads = [threading.Thread(target=task, args=(j,)) for j in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted((d["job_id"], d["message"]) for d in _lines(stream)) == [
        ("a", "batch of a"), ("b", "batch of b")]
    assert logs.current() == {}


def test_bind_skips_none_and_nests(stream: io.StringIO) -> None:
    outer = logs.bind(job_id="j", bid=None)
    inner = logs.bind(stage="reorder")
    assert logs.current() == {"job_id": "j", "stage": "reorder"}
    logs.reset(inner)
    assert logs.current() == {"job_id": "j"}
    logs.reset(outer)


def test_text_form_keeps_one_readable_line(stream: io.StringIO) -> None:
    _json("text", stream, service="web")
    with logs.job_context(job_id="j9", stage="intake"):
        logging.getLogger("ocrq.web").info("POST /v1/jobs 202")
    logging.getLogger("ocrq.web").info("no job")
    first, second = stream.getvalue().splitlines()
    assert first.endswith("INFO ocrq.web: POST /v1/jobs 202 [job_id=j9 stage=intake]")
    assert second.endswith("INFO ocrq.web: no job")


def test_the_format_is_checked() -> None:
    assert Settings.from_env({}).log_format == "json"
    assert Settings.from_env({"OCRQ_LOG_FORMAT": "text"}).log_format == "text"
    with pytest.raises(ValueError, match="OCRQ_LOG_FORMAT must be one of json, text"):
        Settings.from_env({"OCRQ_LOG_FORMAT": "jsonl"})
    with pytest.raises(ValueError, match="OCRQ_LOG_FORMAT"):
        logs.formatter("xml")


def test_a_tasks_job_fields_come_from_its_message() -> None:
    from types import SimpleNamespace

    from workers.lifecycle import _job_fields

    ctx = {"job_id": "j1", "bid": "acme", "tid": "checkbox", "stages": ["checkbox"]}
    assert _job_fields(SimpleNamespace(name="ocrq.detect"), (ctx,)) == {
        "job_id": "j1", "bid": "acme", "tid": "checkbox", "stage": "detect"}
    # A plug-in stage task is named by its stage; an index out of range keeps "stage".
    assert _job_fields(SimpleNamespace(name="ocrq.stage"), (ctx, {}, 0))["stage"] == "checkbox"
    assert _job_fields(SimpleNamespace(name="ocrq.stage"), (ctx, {}, 5))["stage"] == "stage"
    assert _job_fields(SimpleNamespace(name="ocrq.reorder"), ([], ctx))["job_id"] == "j1"
    assert _job_fields(SimpleNamespace(name="ocrq.job_failed"), (None, None, None, "j")) == {}
