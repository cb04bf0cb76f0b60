"""Thin Celery tasks: turn the message into its type, call ocrq.pipeline.work, pass
references on.

Explicit names (ocrq.names.Task) so producers (the web process) never import
this module and renames never orphan queued messages. Process wiring (signals)
is not here: see workers/lifecycle.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from celery import Task, current_app, shared_task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from ocrq.errors import BackendUnavailable
from ocrq.names import Step
from ocrq.names import Task as T
from ocrq.pipeline import canvas, hooks, stage_work, work
from ocrq.pipeline.messages import BatchResult, JobContext, Lines, RecognitionRef
from ocrq.pipeline.retry import back_again, give_back, retry_io
from ocrq.pipeline.state import get_state
from ocrq.storage import JobStatus

log = logging.getLogger(__name__)
STAGE = {"bind": True, "acks_late": True}
R = TypeVar("R")


def _may_run(task: Task, job_id: str, stage: str) -> bool:
    """False when this task's message came back too often (its workers died), or
    its job is over: a late copy (a restore and a redelivery of one message) has
    nothing to do and must not leave a start counter behind."""
    state = get_state()
    if retry_io(lambda: work.ended(state, job_id), f"{stage} of job {job_id}"):
        resend_final_webhook(task.app, state, job_id)
        return False
    error = retry_io(lambda: work.redelivery_error(state, task.request.id, job_id, stage),
                     f"{stage} of job {job_id}")
    if error is not None:
        fail_job(task.app, job_id, error)
    return error is None


@shared_task(name=T.ROTATE.value, ignore_result=True, **STAGE)
def rotate(self: Task, msg: dict[str, Any]) -> dict[str, Any] | None:
    ctx = JobContext.from_message(msg)
    if not _may_run(self, ctx.job_id, Step.ROTATE):
        return None
    # Every step below runs again after a Redis, broker or database blink (retry_io):
    # a restart of a few seconds costs a retry, not the job.
    out = _run(self, ctx.job_id, Step.ROTATE, lambda: work.rotate(get_state(), ctx))
    return None if out is None else out.to_message()


@shared_task(name=T.DETECT.value, ignore_result=True, **STAGE)
def detect(self: Task, msg: dict[str, Any] | None) -> None:
    if msg is None:  # rotate found the job ended
        return
    ctx = JobContext.from_message(msg)
    if not _may_run(self, ctx.job_id, Step.DETECT):
        return
    _run(self, ctx.job_id, Step.DETECT, lambda: _detect(self, ctx))


def _detect(self: Task, ctx: JobContext) -> None:
    state = get_state()
    out = work.detect(state, ctx)
    if out is None or work.ended(state, ctx.job_id):
        return  # failed (time limit) or cancelled while detection ran
    lines = out.lines or Lines([], [], [])
    if lines.polygons and canvas.inline_recognize(out, len(lines.polygons)):
        work.fanned_out(state, out.job_id, [], 1, out.page)
        result = work.recognize(state, out.ref(), lines.polygons, lines.flipped, 0)
        sig = canvas.reorder_only(self.app, out, [result])
        state.cache.add_tasks(out.job_id, [sig.id])
    else:
        sig, ids, n = canvas.fanout(self.app, out)
        work.fanned_out(state, out.job_id, ids, n, out.page)
    sig.apply_async()


@shared_task(name=T.RECOGNIZE.value, **STAGE)
def recognize(self: Task, msg: dict[str, Any], polygons: list[Any], flipped: list[bool],
              index: int) -> dict[str, Any]:
    ref = RecognitionRef.from_message(msg)
    if not _may_run(self, ref.job_id, Step.RECOGNIZE):
        return BatchResult.skipped(index).to_message()
    out = _run(self, ref.job_id, Step.RECOGNIZE,
               lambda: work.recognize(get_state(), ref, polygons, flipped, index))
    return (out or BatchResult.skipped(index)).to_message()  # None: its job failed


@shared_task(name=T.REORDER.value, ignore_result=True, **STAGE)
def reorder(self: Task, results: list[dict[str, Any]], msg: dict[str, Any]) -> None:
    ctx = JobContext.from_message(msg)
    if not _may_run(self, ctx.job_id, Step.REORDER):
        return
    state = get_state()
    batches = [BatchResult.from_message(r) for r in results]
    doc = _run(self, ctx.job_id, Step.REORDER, lambda: work.reorder(state, batches, ctx))
    if doc is not None:  # apart: a retry of reorder would find the job ended, no webhook
        retry_io(lambda: _next(self.app, state, ctx, doc, 0), f"webhook of job {ctx.job_id}")


@shared_task(name=T.STAGE.value, ignore_result=True, **STAGE)
def stage(self: Task, msg: dict[str, Any], doc: dict[str, Any], index: int) -> None:
    """Plug-in stage number ``index`` of the plan (ocrq/pipeline/stage_work.py)."""
    ctx = JobContext.from_message(msg)
    if not _may_run(self, ctx.job_id, ctx.stages[index]):
        return
    state = get_state()
    out = _run(self, ctx.job_id, ctx.stages[index],
               lambda: stage_work.run(state, ctx, doc, index))
    if out is not None:  # the context may have grown: a branch (``then``) added stages
        ctx, done = out
        retry_io(lambda: _next(self.app, state, ctx, done, index + 1),
                 f"next step of job {ctx.job_id}")


def _run(task: Task, job_id: str, stage: str, step: Callable[[], R]) -> R | None:
    """``step()`` through blinks (retry_io). While a backend it needs is down (the
    tensor server), its message goes back to the queue for later (pipeline/retry.py:
    not counted as a lost delivery, capped, with a deadline); past the cap its job
    fails with the backend's code, and this returns None."""
    state = get_state()
    try:
        out = retry_io(step, f"{stage} of job {job_id}")
    except BackendUnavailable as exc:
        down = exc
        plan = retry_io(lambda: give_back(state, task.request.id or "", job_id, stage, down,
                                          int(task.request.retries or 0)),
                        f"{stage} of job {job_id}")
        if isinstance(plan, dict):
            fail_job(task.app, job_id, plan)
            return None
        # The same message (same task id: chord, start counter, cancel) after a countdown;
        # give_back keeps the count (Celery's max_retries=None means its default, 3).
        raise task.retry(countdown=plan, max_retries=state.settings.giveback_attempts) \
            from exc
    if task.request.retries:
        try:
            back_again(state, task.request.id or "", job_id)
        except Exception as exc:  # only a status line: never fails the step that ran
            log.warning("job %s: its wait for %s not cleared: %s", job_id, stage, exc)
    return out


def _next(app: Any, state: Any, ctx: JobContext, doc: dict[str, Any], index: int) -> None:
    """The plan's next plug-in stage, or (all done: the job finished) its webhook."""
    if index < len(ctx.stages):
        sig = canvas.plugin_stage(app, ctx, doc, index)
        state.cache.add_tasks(ctx.job_id, [sig.id])
        sig.apply_async()
    elif ctx.callback:
        enqueue_webhook(app, ctx.job_id, state.settings.queue_webhooks, state)


@shared_task(name=T.JOB_FAILED.value, ignore_result=True)
def job_failed(request: Any, exc: BaseException, traceback: Any, job_id: str) -> None:
    """Errback of every stage task (called in-process by the worker whose task failed).

    Not bound on purpose: Celery only passes (request, exc, traceback) to errbacks
    whose signature it can inspect, and bound tasks are treated as old-style.
    """
    task = getattr(request, "task", None)
    log.warning("job %s failed in %s: %r", job_id, task, exc)
    if isinstance(exc, SoftTimeLimitExceeded | TimeLimitExceeded):
        # The same error as the threads pool's timer gives (workers/lifecycle.py).
        soft = isinstance(exc, SoftTimeLimitExceeded)
        limit = current_app.conf.task_soft_time_limit if soft else current_app.conf.task_time_limit
        error = work.time_limit_error(task, float(limit or 0))
    else:
        error = work.error_object(exc, task)
    fail_job(current_app, job_id, error)


@shared_task(name=T.WEBHOOK.value, ignore_result=True, bind=True, acks_late=True)
def webhook(self: Task, job_id: str, attempt: int = 1) -> None:
    state = get_state()
    delay = retry_io(lambda: hooks.webhook_attempt(state, job_id, attempt, self.request.id),
                     f"webhook of job {job_id}")
    if delay is not None:  # a new message per attempt: each one is recorded on its own
        self.apply_async((job_id, attempt + 1), countdown=delay,
                         queue=state.settings.queue_webhooks)


def fail_job(app: Any, job_id: str, error: dict[str, Any]) -> None:
    """Fail the job (unless it already ended) and send its webhook if it has one.

    Whether it has one is read from the job's row: the cache entry may be gone
    (a job failing with image_expired, time_limit or worker_lost after its TTL).
    """
    state = get_state()
    if work.finish(state, job_id, JobStatus.FAILED, error=error) and retry_io(
            lambda: hooks.has_callback(state, job_id), f"webhook of job {job_id}"):
        enqueue_webhook(app, job_id, state.settings.queue_webhooks, state)


def enqueue_webhook(app: Any, job_id: str, queue: str, state: Any = None) -> None:
    app.signature(T.WEBHOOK.value, args=(job_id, 1), queue=queue).apply_async()
    # Recorded after the send: a kill in between makes a late copy send it again (a
    # duplicate, told apart by its event id), never leaves the job without one.
    try:
        hooks.webhook_enqueued(state or get_state(), job_id)
    except Exception as exc:  # Redis down: at worst a late copy sends a duplicate
        log.warning("job %s: webhook not recorded as sent: %s", job_id, exc)


def resend_final_webhook(app: Any, state: Any, job_id: str) -> bool:
    """A late copy of a step found its job over. If that step ended the job and its
    worker was killed after the cache said so but before the webhook went (soak at
    aba7c2e: the redelivered reorder returned at once, and the job never got its
    final webhook), nothing else sends it: this does. True when it sent one."""
    try:
        if not hooks.final_webhook_missing(state, job_id):
            return False
        log.warning("job %s ended without its final webhook on its way: sent now", job_id)
        enqueue_webhook(app, job_id, state.settings.queue_webhooks, state)
        return True
    except Exception as exc:  # a mend: never fails the late copy
        log.warning("job %s: final webhook not looked at: %s", job_id, exc)
        return False
