"""Building the Celery canvas of a job.

At intake only the first part is known: ``rotate -> detect``. The number of
recognition tasks depends on what detection finds, so the detect task builds
the second part at run time with :func:`fanout` and applies it (a plain
``chord(...).apply_async()`` rather than ``Task.replace``: nothing waits on the
detect task's own result, and replace inside chains has a history of edge
cases). Every signature carries the ``ocrq.job_failed`` errback, so a failure
anywhere — including one recognition batch of the chord — marks the job
failed instead of leaving it stuck.

Messages carry references only: the image key, polygons, model versions.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, chain, chord
from celery.canvas import Signature
from kombu.utils.uuid import uuid

T_ROTATE = "ocrq.rotate"
T_DETECT = "ocrq.detect"
T_RECOGNIZE = "ocrq.recognize"
T_REORDER = "ocrq.reorder"
T_FAILED = "ocrq.job_failed"
T_WEBHOOK = "ocrq.webhook"


def _sig(app: Celery, name: str, args: tuple[Any, ...], queue: str, job_id: str) -> Signature:
    sig = app.signature(name, args=args, queue=queue, task_id=uuid())
    # New-style errback (request, exc, traceback, job_id): runs in the failing worker.
    sig.on_error(app.signature(T_FAILED, kwargs={"job_id": job_id}))
    return sig


def start(app: Celery, ctx: dict[str, Any]) -> tuple[Signature, list[str]]:
    """The intake part of the canvas: [rotate ->] detect. Returns it and its task ids.

    Steps routed to the same queue run in one task (rotate inside detect): a hop
    costs a broker round trip and a second image decode, and buys nothing when the
    same kind of worker would take the next step anyway.
    """
    q, job_id = ctx["queues"], ctx["job_id"]
    sigs = []
    if "rotate" in q and q["rotate"] == q["detect"]:
        sigs.append(_sig(app, T_DETECT, ({**ctx, "rotate_here": True},), q["detect"], job_id))
    elif "rotate" in q:
        sigs.append(_sig(app, T_ROTATE, (ctx,), q["rotate"], job_id))
        sigs.append(_sig(app, T_DETECT, (), q["detect"], job_id))  # gets rotate's ctx
    else:
        sigs.append(_sig(app, T_DETECT, ({**ctx, "rotation": 0},), q["detect"], job_id))
    ids = [s.id for s in sigs]
    return (chain(*sigs) if len(sigs) > 1 else sigs[0]), ids


def batches(n: int, size: int) -> list[tuple[int, int]]:
    """[start, end) ranges of at most ``size`` lines covering n lines."""
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def ref(ctx: dict[str, Any]) -> dict[str, Any]:
    """What a recognition batch needs besides its polygons."""
    out = {k: ctx[k] for k in ("job_id", "image_key", "name", "rotation")}
    if "lexicon" in ctx:
        out["lexicon"] = ctx["lexicon"]
    return out


def inline_recognize(ctx: dict[str, Any], n_lines: int) -> bool:
    """One batch on the detect task's own queue: recognise in place, no fan-out hop."""
    q = ctx["queues"]
    return q["recognize"] == q["detect"] and n_lines <= ctx["batch_lines"]


def reorder_only(app: Celery, ctx: dict[str, Any], results: list[dict[str, Any]]
                 ) -> Signature:
    """reorder on results already at hand (no lines, or recognised inline)."""
    return _sig(app, T_REORDER, (results, ctx), ctx["queues"]["reorder"], ctx["job_id"])


def fanout(
    app: Celery, ctx: dict[str, Any], polygons: list[Any], flipped: list[bool]
) -> tuple[Signature, list[str], int]:
    """recognize batches (chord header) -> reorder (body).

    Returns the signature, its task ids and the number of batches. With no
    lines at all, the body runs alone on an empty result list.
    """
    q, job_id = ctx["queues"], ctx["job_id"]
    ranges = batches(len(polygons), ctx["batch_lines"])
    if not ranges:
        sig = reorder_only(app, ctx, [])
        return sig, [sig.id], 0
    body = _sig(app, T_REORDER, (ctx,), q["reorder"], job_id)
    r = ref(ctx)
    header = [
        _sig(app, T_RECOGNIZE, (r, polygons[a:b], flipped[a:b], i), q["recognize"], job_id)
        for i, (a, b) in enumerate(ranges)
    ]
    ids = [h.id for h in header] + [body.id]
    return chord(header, body), ids, len(header)
