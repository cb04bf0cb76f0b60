"""Building the Celery canvas of a job.

At intake only the first part is known: ``rotate -> detect``. The number of
recognition tasks depends on what detection finds, so the detect task builds
the second part at run time with :func:`fanout` and applies it (a plain
``chord(...).apply_async()`` rather than ``Task.replace``: nothing waits on the
detect task's own result, and replace inside chains has a history of edge
cases). Every signature carries the ``ocrq.job_failed`` errback, so a failure
anywhere — including one recognition batch of the chord — marks the job
failed instead of leaving it stuck.

Messages carry references only (ocrq/pipeline/messages.py): the image key,
polygons, model versions.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from celery import Celery, chain, chord, group
from celery.canvas import Signature
from kombu.utils.uuid import uuid

from ocrq.documents import page_key
from ocrq.names import Step, Task
from ocrq.pipeline.messages import BatchResult, JobContext


def _sig(app: Celery, name: Task, args: tuple[Any, ...], queue: str, job_id: str) -> Signature:
    sig = app.signature(name.value, args=args, queue=queue, task_id=uuid())
    # New-style errback (request, exc, traceback, job_id): runs in the failing worker.
    sig.on_error(app.signature(Task.JOB_FAILED.value, kwargs={"job_id": job_id}))
    return sig


def start(app: Celery, ctx: JobContext) -> tuple[Signature, list[str]]:
    """The intake part of the canvas: [rotate ->] detect. Returns it and its task ids.

    Steps routed to the same queue run in one task (rotate inside detect): a hop
    costs a broker round trip and a second image decode, and buys nothing when the
    same kind of worker would take the next step anyway.

    A document (``ctx.page_sizes``) gets one such chain per page, in a group: each
    page is its own message, so the pages spread over the workers.
    """
    if ctx.page_sizes:
        n = len(ctx.page_sizes)
        parts = [start(app, replace(ctx, page=i, pages=n, width=w, height=h, page_sizes=(),
                                    image_key=page_key(ctx.image_key, i)))
                 for i, (w, h) in enumerate(ctx.page_sizes)]
        return group([sig for sig, _ in parts]), [i for _, ids in parts for i in ids]
    q, job_id = ctx.queues, ctx.job_id
    sigs = []
    if Step.ROTATE in q and q[Step.ROTATE] == q[Step.DETECT]:
        fused = replace(ctx, rotate_here=True).to_message()
        sigs.append(_sig(app, Task.DETECT, (fused,), q[Step.DETECT], job_id))
    elif Step.ROTATE in q:
        sigs.append(_sig(app, Task.ROTATE, (ctx.to_message(),), q[Step.ROTATE], job_id))
        sigs.append(_sig(app, Task.DETECT, (), q[Step.DETECT], job_id))  # gets rotate's ctx
    else:
        upright = replace(ctx, rotation=0).to_message()
        sigs.append(_sig(app, Task.DETECT, (upright,), q[Step.DETECT], job_id))
    ids = [s.id for s in sigs]
    return (chain(*sigs) if len(sigs) > 1 else sigs[0]), ids


def batches(n: int, size: int) -> list[tuple[int, int]]:
    """[start, end) ranges of at most ``size`` lines covering n lines."""
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def inline_recognize(ctx: JobContext, n_lines: int) -> bool:
    """One batch on the detect task's own queue: recognise in place, no fan-out hop."""
    q = ctx.queues
    return q[Step.RECOGNIZE] == q[Step.DETECT] and n_lines <= ctx.batch_lines


def reorder_only(app: Celery, ctx: JobContext, results: list[BatchResult]) -> Signature:
    """reorder on results already at hand (no lines, or recognised inline)."""
    return _sig(app, Task.REORDER, ([r.to_message() for r in results], ctx.to_message()),
                ctx.queues[Step.REORDER], ctx.job_id)


def fanout(app: Celery, ctx: JobContext) -> tuple[Signature, list[str], int]:
    """recognize batches (chord header) -> reorder (body), on the lines ctx carries.

    Returns the signature, its task ids and the number of batches. With no
    lines at all, the body runs alone on an empty result list.
    """
    lines = ctx.lines
    polygons, flipped = (lines.polygons, lines.flipped) if lines else ([], [])
    ranges = batches(len(polygons), ctx.batch_lines)
    if not ranges:
        sig = reorder_only(app, ctx, [])
        return sig, [sig.id], 0
    q, job_id = ctx.queues, ctx.job_id
    body = _sig(app, Task.REORDER, (ctx.to_message(),), q[Step.REORDER], job_id)
    ref = ctx.ref().to_message()
    header = [
        _sig(app, Task.RECOGNIZE, (ref, polygons[a:b], flipped[a:b], i), q[Step.RECOGNIZE],
             job_id)
        for i, (a, b) in enumerate(ranges)
    ]
    ids = [h.id for h in header] + [body.id]
    return chord(header, body), ids, len(header)


def plugin_stage(app: Celery, ctx: JobContext, doc: dict[str, Any], index: int) -> Signature:
    """Plug-in stage ``ctx.stages[index]`` on the read page ``doc``, on its own queue."""
    name = ctx.stages[index]
    return _sig(app, Task.STAGE, (ctx.to_message(), doc, index), ctx.queues[name], ctx.job_id)
