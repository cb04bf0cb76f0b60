"""Canvas shape without a broker: signatures are plain data until applied."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from redis import Redis

from ocrq.names import Task
from ocrq.pipeline import canvas
from ocrq.pipeline.app import create_celery_app
from ocrq.pipeline.messages import (
    BatchResult,
    InvalidMessage,
    JobContext,
    Lines,
    RecognitionRef,
    job_id_of,
)
from ocrq.pipeline.routing import Router
from ocrq.plans import Plans
from ocrq.settings import Settings


def _ctx(queues: dict[str, str], width: int = 600, height: int = 900) -> JobContext:
    return JobContext(job_id="j1", bid="default", tid="ocr", image_key="ocrq:img:j1",
                      name="p.png", width=width, height=height, queues=queues, batch_lines=32,
                      callback=False)


def test_default_plan_routes_by_hardware_and_fuses_same_queue_steps() -> None:
    s = Settings()
    app = create_celery_app(s)
    # An empty Redis database: no live worker yet, so every step keeps its preferred queue.
    redis = Redis.from_url("redis://127.0.0.1:6379/15")
    redis.flushdb()
    queues = Router(s, redis).queues(Plans.load().resolve(None, "ocr"))
    assert queues == {"rotate": "gpu", "detect": "gpu", "recognize": "gpu", "reorder": "cpu"}
    sig, ids = canvas.start(app, _ctx(queues))
    assert sig.task == Task.DETECT and sig.args[0]["rotate_here"] is True
    assert sig.options["queue"] == "gpu" and ids == [sig.id]
    errback = sig.options["link_error"][0]
    assert errback["task"] == Task.JOB_FAILED and errback["kwargs"] == {"job_id": "j1"}


def test_rotate_on_another_queue_is_a_chain() -> None:
    app = create_celery_app(Settings())
    queues = {"rotate": "cpu", "detect": "gpu", "recognize": "gpu", "reorder": "cpu"}
    sig, ids = canvas.start(app, _ctx(queues))
    assert [t.task for t in sig.tasks] == [Task.ROTATE, Task.DETECT]
    assert [t.options["queue"] for t in sig.tasks] == ["cpu", "gpu"] and len(ids) == 2


def test_fanout_messages_carry_references_not_pixels() -> None:
    app = create_celery_app(Settings())
    queues = {"detect": "gpu", "recognize": "gpu", "reorder": "cpu"}
    poly = [[0.0, 0.0], [10.0, 0.0], [10.0, 5.0], [0.0, 5.0]]
    sizes = []
    for w, h in ((600, 900), (5000, 7000)):  # the message must not grow with the image
        ctx = replace(_ctx(queues, w, h), rotation=0,
                      lines=Lines([poly] * 70, [False] * 70, [0] * 70))
        sig, ids, n = canvas.fanout(app, ctx)
        assert n == 3 and len(ids) == 4  # 32 + 32 + 6 lines, then the reorder body
        assert [len(t.args[1]) for t in sig.tasks] == [32, 32, 6]
        sizes.append(len(json.dumps(dict(sig))))
    assert abs(sizes[0] - sizes[1]) <= 4  # only the digits of width/height differ
    assert canvas.inline_recognize(_ctx(queues), 32)
    assert not canvas.inline_recognize(_ctx(queues), 33)


def test_messages_round_trip_through_json() -> None:
    ctx = replace(_ctx({"detect": "cpu", "recognize": "cpu", "reorder": "cpu"}), rotation=90,
                  lexicon=("en", "ms"), lines=Lines([[[0.0, 0.0]] * 4], [True], [3], [41.5]),
                  models={"std": 1}, timings_ms={"detect": 1.5})
    wire = json.loads(json.dumps(ctx.to_message()))
    assert JobContext.from_message(wire) == ctx
    # A producer from before leader_reach (rolling update) sends none: lines as detected.
    del wire["lines"]["leader_reach"]
    assert JobContext.from_message(wire).lines == replace(ctx.lines, leader_reach=[])
    ref = ctx.ref()
    assert RecognitionRef.from_message(json.loads(json.dumps(ref.to_message()))) == ref
    # A plan's second-reading threshold reaches recognition; one from before has none.
    ref = replace(ctx, second_reading=0).ref()
    assert ref.second_reading == 0
    assert RecognitionRef.from_message(json.loads(json.dumps(ref.to_message()))) == ref
    old = ref.to_message()
    del old["second_reading"]
    assert RecognitionRef.from_message(old).second_reading is None
    with pytest.raises(InvalidMessage, match="second_reading"):
        RecognitionRef.from_message({**old, "second_reading": "high"})
    res = BatchResult(2, [("TOTAL", 0.98)], {"str": 1}, 4.0)
    assert BatchResult.from_message(json.loads(json.dumps(res.to_message()))) == res
    # Amounts' doubtful digits travel as (index, digit, ratio) tuples per line.
    res = BatchResult(2, [("82.50", 0.9), ("x", 0.9)], {"str": 1}, 4.0,
                      doubts=[[(0, "9", 0.71)], []])
    assert BatchResult.from_message(json.loads(json.dumps(res.to_message()))) == res
    # Every message a stage task gets names its job at the top level.
    assert job_id_of([wire]) == job_id_of([ref.to_message()]) == "j1"


def test_to_message_is_asdict_without_its_copies() -> None:
    """to_message (messages._plain) gives what dataclasses.asdict gives, nested
    dataclasses, containers' types and dict-valued fields included; only the
    immutable leaves are shared instead of copied."""
    from collections import namedtuple
    from dataclasses import asdict

    point = namedtuple("point", "x y")
    ctx = replace(_ctx({"detect": "cpu", "recognize": "cpu", "reorder": "cpu"}), rotation=90,
                  lexicon=("en", "ms"), page_sizes=((600, 900), (610, 880)),
                  lines=Lines([[[0.0, 0.0], [1.5, 0.0], [1.5, 2.0], [0.0, 2.0]]] * 3,
                              [True, False, True], [3, 0, 1]),
                  models={"std": 1}, cost={"detect": {"cpu_s": 0.1, "gpu_s": 0.0}})
    odd = replace(ctx, lines=Lines([point(1.0, 2.0)], [False], [0]))  # type: ignore[list-item]
    for msg in (ctx, odd, ctx.ref(), BatchResult(2, [("TOTAL", 0.98)], {"str": 1}, 4.0)):
        got, want = msg.to_message(), asdict(msg)
        assert got == want
        assert repr(got) == repr(want)  # tuples stay tuples, lists lists, same order
    got = ctx.to_message()
    assert got["queues"] is not ctx.queues and got["lines"]["polygons"][0] is not \
        ctx.lines.polygons[0]  # type: ignore[union-attr]  # containers rebuilt


def test_a_message_missing_a_field_is_refused_by_name() -> None:
    wire = _ctx({"detect": "cpu"}).to_message()
    del wire["image_key"]
    with pytest.raises(InvalidMessage, match="image_key"):
        JobContext.from_message(wire)
    with pytest.raises(InvalidMessage, match="expected an object"):
        JobContext.from_message(["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(InvalidMessage, match="rotation"):
        _ctx({"detect": "cpu"}).ref()  # recognition needs the page's rotation
