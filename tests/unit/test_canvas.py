"""Canvas shape without a broker: signatures are plain data until applied."""

from __future__ import annotations

import json

from ocrq.pipeline import canvas
from ocrq.pipeline.app import create_celery_app
from ocrq.pipeline.routing import Router
from ocrq.plans import Plans
from ocrq.settings import Settings


def _ctx(queues: dict[str, str], width: int = 600, height: int = 900) -> dict:
    return {"job_id": "j1", "image_key": "ocrq:img:j1", "name": "p.png", "width": width,
            "height": height, "queues": queues, "batch_lines": 32, "callback": False,
            "models": {}, "timings_ms": {}}


def test_default_plan_routes_by_hardware_and_fuses_same_queue_steps() -> None:
    s = Settings()
    app = create_celery_app(s)
    queues = Router(s).queues(Plans.load().resolve(None, "ocr"))
    assert queues == {"rotate": "gpu", "detect": "gpu", "recognize": "gpu", "reorder": "cpu"}
    sig, ids = canvas.start(app, _ctx(queues))
    assert sig.task == canvas.T_DETECT and sig.args[0]["rotate_here"] is True
    assert sig.options["queue"] == "gpu" and ids == [sig.id]
    errback = sig.options["link_error"][0]
    assert errback["task"] == canvas.T_FAILED and errback["kwargs"] == {"job_id": "j1"}


def test_rotate_on_another_queue_is_a_chain() -> None:
    app = create_celery_app(Settings())
    queues = {"rotate": "cpu", "detect": "gpu", "recognize": "gpu", "reorder": "cpu"}
    sig, ids = canvas.start(app, _ctx(queues))
    assert [t.task for t in sig.tasks] == [canvas.T_ROTATE, canvas.T_DETECT]
    assert [t.options["queue"] for t in sig.tasks] == ["cpu", "gpu"] and len(ids) == 2


def test_fanout_messages_carry_references_not_pixels() -> None:
    app = create_celery_app(Settings())
    queues = {"detect": "gpu", "recognize": "gpu", "reorder": "cpu"}
    poly = [[0.0, 0.0], [10.0, 0.0], [10.0, 5.0], [0.0, 5.0]]
    sizes = []
    for w, h in ((600, 900), (5000, 7000)):  # the message must not grow with the image
        ctx = {**_ctx(queues, w, h), "rotation": 0, "polygons": [poly] * 70,
               "flipped": [False] * 70}
        sig, ids, n = canvas.fanout(app, ctx, [poly] * 70, [False] * 70)
        assert n == 3 and len(ids) == 4  # 32 + 32 + 6 lines, then the reorder body
        assert [len(t.args[1]) for t in sig.tasks] == [32, 32, 6]
        sizes.append(len(json.dumps(dict(sig))))
    assert abs(sizes[0] - sizes[1]) <= 4  # only the digits of width/height differ
    assert canvas.inline_recognize({"queues": queues, "batch_lines": 32}, 32)
    assert not canvas.inline_recognize({"queues": queues, "batch_lines": 32}, 33)
