"""Thin Celery tasks: unpack the message, call ocrq.pipeline.work, pass references on.

Explicit names so producers (the web process) never import this module and
renames never orphan queued messages.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, current_app, shared_task
from celery.signals import worker_process_init

from ocrq.pipeline import canvas, work
from ocrq.pipeline.state import get_state
from ocrq.storage import JobStatus

log = logging.getLogger(__name__)
STAGE = {"bind": True, "acks_late": True}


@worker_process_init.connect
def _init_process(**_: Any) -> None:
    from ocrq.pipeline.state import init_process

    init_process()


def _may_run(task: Task, job_id: str, stage: str) -> bool:
    """False when this task's message came back too often (its workers died)."""
    state = get_state()
    error = work.redelivery_error(state, task.request.id, job_id, stage)
    if error is not None:
        fail_job(task.app, job_id, error)
    return error is None


@shared_task(name=canvas.T_ROTATE, ignore_result=True, **STAGE)
def rotate(self: Task, ctx: dict[str, Any]) -> dict[str, Any] | None:
    if not _may_run(self, ctx["job_id"], "rotate"):
        return None
    return work.rotate(get_state(), ctx)


@shared_task(name=canvas.T_DETECT, ignore_result=True, **STAGE)
def detect(self: Task, ctx: dict[str, Any] | None) -> None:
    if ctx is None or not _may_run(self, ctx["job_id"], "detect"):
        return
    state = get_state()
    out = work.detect(state, ctx)
    if out is None:
        return
    ctx2, polygons, flipped = out
    if work.ended(state, ctx2["job_id"]):
        return  # failed (time limit) or cancelled while detection ran
    if polygons and canvas.inline_recognize(ctx2, len(polygons)):
        work.fanned_out(state, ctx2["job_id"], [], 1)
        result = work.recognize(state, canvas.ref(ctx2), polygons, flipped, 0)
        sig = canvas.reorder_only(self.app, ctx2, [result])
        state.cache.add_tasks(ctx2["job_id"], [sig.id])
    else:
        sig, ids, n = canvas.fanout(self.app, ctx2, polygons, flipped)
        work.fanned_out(state, ctx2["job_id"], ids, n)
    sig.apply_async()


@shared_task(name=canvas.T_RECOGNIZE, **STAGE)
def recognize(self: Task, ref: dict[str, Any], polygons: list[Any], flipped: list[bool],
              index: int) -> dict[str, Any]:
    if not _may_run(self, ref["job_id"], "recognize"):
        return {"index": index, "texts": [], "models": {}, "ms": 0.0, "cancelled": True}
    return work.recognize(get_state(), ref, polygons, flipped, index)


@shared_task(name=canvas.T_REORDER, ignore_result=True, **STAGE)
def reorder(self: Task, results: list[dict[str, Any]], ctx: dict[str, Any]) -> None:
    if not _may_run(self, ctx["job_id"], "reorder"):
        return
    state = get_state()
    if work.reorder(state, results, ctx) is not None and ctx.get("callback"):
        enqueue_webhook(self.app, ctx["job_id"], state.settings.queue_webhooks)


@shared_task(name=canvas.T_FAILED, ignore_result=True)
def job_failed(request: Any, exc: BaseException, traceback: Any, job_id: str) -> None:
    """Errback of every stage task (called in-process by the worker whose task failed).

    Not bound on purpose: Celery only passes (request, exc, traceback) to errbacks
    whose signature it can inspect, and bound tasks are treated as old-style.
    """
    task = getattr(request, "task", None)
    log.warning("job %s failed in %s: %r", job_id, task, exc)
    fail_job(current_app, job_id, work.error_object(exc, task))


@shared_task(name=canvas.T_WEBHOOK, ignore_result=True, bind=True, acks_late=True)
def webhook(self: Task, job_id: str, attempt: int = 1) -> None:
    state = get_state()
    delay = work.webhook_attempt(state, job_id, attempt)
    if delay is not None:  # a new message per attempt: each one is recorded on its own
        self.apply_async((job_id, attempt + 1), countdown=delay,
                         queue=state.settings.queue_webhooks)


def fail_job(app: Any, job_id: str, error: dict[str, Any]) -> None:
    """Fail the job (unless it already ended) and send its webhook if it has one."""
    state = get_state()
    if work.finish(state, job_id, JobStatus.FAILED, error=error) and (
            (state.cache.get(job_id) or {}).get("callback")):
        enqueue_webhook(app, job_id, state.settings.queue_webhooks)


def enqueue_webhook(app: Any, job_id: str, queue: str) -> None:
    app.signature(canvas.T_WEBHOOK, args=(job_id, 1), queue=queue).apply_async()
