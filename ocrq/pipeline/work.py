"""What each task does, as plain functions of a :class:`WorkerState`.

No Celery here: tasks.py is the glue that calls these and moves the returned
references on. Each stage loads the image bytes by key from Redis, decodes
them, calls one Engine step and returns small JSON data.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ocrq.engine import Quad
from ocrq.names import Step
from ocrq.observability.logs import stage_done
from ocrq.observability.metrics import job_finished
from ocrq.pipeline import badcases, pages
from ocrq.pipeline.messages import BatchResult, Doubt, JobContext, Lines, RecognitionRef
from ocrq.pipeline.retry import RETRY_FOR_S, retry_io
from ocrq.pipeline.state import Services, WorkerState
from ocrq.settings import Settings
from ocrq.storage import TERMINAL, JobStatus
from ocrq.storage import jobs as store

log = logging.getLogger(__name__)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.isoformat(timespec="milliseconds") + "Z"


# --- reading side (web and webhooks) -------------------------------------------------
RECHECK_S = 10.0  # an unfinished cached job is compared with its row at most this often
RESUME_AFTER_S = 10.0  # a finisher cut off this long ago is done by the next one (_resume)
RESUME_KEY_TTL_S = 3600


def document(services: Services, job_id: str) -> dict[str, Any] | None:
    """The job as the API shows it: from the Redis cache, else from the DB (re-cached).

    A job the cache calls unfinished is checked against its row every
    :data:`RECHECK_S`: a worker that finished it while Redis was down wrote the
    row but not the cache, and the API must not say ``running`` for an hour.
    """
    flat = services.cache.get(job_id)
    if flat is not None and flat.get("status") not in TERMINAL and _due(flat):
        job = store.get_job(services.db, job_id)
        if job is not None and job.status in TERMINAL:
            flat = None  # the row is the truth: re-cached from it below
        else:
            services.cache.update(job_id, checked_at=time.time())
    if flat is None:
        job = store.get_job(services.db, job_id)
        if job is None:
            return None
        flat = flat_from_row(job, store.get_result(services.db, job_id))
        services.cache.put(job_id, flat)
    return shape(flat)


def _due(flat: dict[str, Any]) -> bool:
    checked = flat.get("checked_at")
    if checked is None:  # as intake cached it: its creation is the last look
        created = flat.get("created_at")
        checked = datetime.fromisoformat(created).timestamp() if created else 0.0
    return time.time() - float(checked) >= RECHECK_S


def flat_from_row(job: Any, result: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": job.id, "bid": job.bid, "tid": job.tid, "status": job.status, "stage": job.stage,
        "image": job.image_name, "width": job.width, "height": job.height,
        "batches_done": job.batches_done, "batches_total": job.batches_total,
        "created_at": _iso(job.created_at), "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at), "error": job.error, "result": result,
        "callback": bool(job.callback_url),
        **({"pages_total": len(result["pages"]), "pages_done": len(result["pages"])}
           if isinstance(result, dict) and isinstance(result.get("pages"), list) else {}),
    }


def shape(flat: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": flat["id"], "bid": flat["bid"], "tid": flat["tid"], "status": flat["status"],
        "stage": flat.get("stage"),
        "progress": {"batches_done": int(flat.get("batches_done") or 0),
                     "batches_total": flat.get("batches_total"),
                     # A document: its pages read so far, of how many.
                     **({"pages_done": int(flat.get("pages_done") or 0),
                         "pages_total": flat["pages_total"]} if flat.get("pages_total") else {}),
                     # A step given back while its backend is down (pipeline/retry.py).
                     **({"waiting": flat["waiting"]} if flat.get("waiting")
                        and flat["status"] not in TERMINAL else {})},
        "image": {"name": flat.get("image"), "width": flat.get("width"),
                  "height": flat.get("height")},
        "created_at": flat.get("created_at"), "started_at": flat.get("started_at"),
        "finished_at": flat.get("finished_at"),
        "error": flat.get("error"), "result": flat.get("result"),
    }


# --- stage work ------------------------------------------------------------------------
def redelivery_error(state: Services, task_id: str | None, job_id: str,
                     stage: str) -> dict[str, Any] | None:
    """None if this start of a stage task may run, else the error to fail its job with.

    Tasks are acknowledged late and requeued when the process running them dies,
    so nothing is lost to a crash; but a page that kills every worker taking it
    (out of memory) would come back forever. A task runs at most
    ``max_deliveries`` times; its next start fails the job instead.
    """
    if not task_id:
        return None  # no task id: not run from a broker message
    n = state.cache.delivery(task_id, delivery_ttl(state.settings))
    if n <= state.settings.max_deliveries:
        return None
    log.error("job %s: its %s step was lost %d times; giving up", job_id, stage, n - 1)
    return {"code": "worker_lost", "task": stage,
            "message": f"this job's {stage} step was lost {n - 1} times: the worker process "
                       "running it died (killed, e.g. out of memory) or stopped answering; "
                       "not retried again"}


def delivery_ttl(settings: Settings) -> int:
    """How long a task's start counter lives after its last start.

    Its job is failed by the sweeper at its deadline, after which a stage's count
    no longer matters; a redelivery comes at most a visibility timeout after the
    start it repeats. Done tasks drop theirs sooner (:func:`finish`, webhooks).
    """
    return settings.job_deadline + settings.visibility_timeout


def ended(state: Services, job_id: str) -> bool:
    """Whether the job is over (cancelled, failed by another task or a time limit,
    or done): a stage that starts then has nothing left to do."""
    status = state.cache.status(job_id)
    if status is None:  # not cached (expired): ask the system of record
        job = store.get_job(state.db, job_id)
        status = None if job is None else job.status
    return status in TERMINAL


def _image(state: WorkerState, msg: JobContext | RecognitionRef) -> np.ndarray:
    return state.image(msg.image_key, msg.name)


def _enter(state: WorkerState, job_id: str, stage: Step, first: bool) -> None:
    if first:
        ts = now_iso()
        store.transition(state.db, job_id, status=str(JobStatus.RUNNING), stage=str(stage),
                         started_at=datetime.now(UTC).replace(tzinfo=None))
        state.cache.update(job_id, status=str(JobStatus.RUNNING), stage=str(stage),
                           started_at=ts)
    else:
        state.cache.update(job_id, stage=str(stage))


def rotate(state: WorkerState, ctx: JobContext) -> JobContext | None:
    if ended(state, ctx.job_id):
        return None
    _enter(state, ctx.job_id, Step.ROTATE, first=True)
    r = state.engine.step_rotate(_image(state, ctx))
    stage_done(log, Step.ROTATE, r.ms, r.models)
    return ctx.after(Step.ROTATE, r.models, r.ms, r.cost, rotation=r.rotation)


def detect(state: WorkerState, ctx: JobContext) -> JobContext | None:
    """Detection (after rotate when both share a queue); the context then carries the lines."""
    if ended(state, ctx.job_id):
        return None
    first = Step.ROTATE not in ctx.queues
    if ctx.rotate_here:  # fused: rotate runs in this task (same queue)
        rotated = rotate(state, replace(ctx, rotate_here=False))
        if rotated is None:
            return None
        ctx, first = rotated, False
    _enter(state, ctx.job_id, Step.DETECT, first=first)
    d = state.engine.step_detect(_image(state, ctx), ctx.rotation or 0)
    stage_done(log, Step.DETECT, d.ms, d.models)
    return ctx.after(Step.DETECT, d.models, d.ms, d.cost, rotation=d.rotation, skew=d.skew,
                     lines=Lines.from_detected(d))


def fanned_out(state: WorkerState, job_id: str, task_ids: list[str], n_batches: int,
               page: int | None = None) -> None:
    state.cache.add_tasks(job_id, task_ids)
    if page is not None:  # a document's pages fan out each on its own: pages_done counts
        return
    # Progress lives in the cache only; the DB gets the final counts when the job ends.
    state.cache.update(job_id, stage=str(Step.RECOGNIZE), batches_total=n_batches,
                       batches_done=0)


def recognize(state: WorkerState, ref: RecognitionRef, polygons: list[Quad],
              flipped: list[bool], index: int) -> BatchResult:
    if ended(state, ref.job_id):
        return BatchResult.skipped(index)
    t = state.engine.step_recognize(_image(state, ref), ref.rotation, polygons, flipped,
                                    ref.lexicon, ref.skew, ref.second_reading)
    state.cache.incr_done(ref.job_id)
    stage_done(log, Step.RECOGNIZE, t.ms, t.models)
    return BatchResult(index, t.texts, t.models, t.ms, cpu_s=t.cost.cpu_s, gpu_s=t.cost.gpu_s,
                       doubts=t.doubts)


def joined(results: list[BatchResult], amounts: bool = True
           ) -> tuple[list[tuple[str, float]], list[list[Doubt]] | None]:
    """Batches' texts and doubts (None: plan's recognize.amounts off, or a batch predates them)."""
    texts = [t for r in results for t in r.texts]
    whole = amounts and all(len(r.doubts) == len(r.texts) for r in results)
    return texts, [d for r in results for d in r.doubts] if whole else None


def reorder(state: WorkerState, results: list[BatchResult], ctx: JobContext
            ) -> dict[str, Any] | None:
    """Join the batches into the result document; finish the job unless plug-in
    stages are still to run on it (stage_work.py)."""
    job_id = ctx.job_id
    if ended(state, job_id) or any(r.cancelled for r in results):
        return None
    state.cache.update(job_id, stage=str(Step.REORDER))
    results = sorted(results, key=lambda r: r.index)  # chord keeps order; be explicit
    texts, doubts = joined(results, ctx.amounts)
    models = dict(ctx.models)
    for r in results:
        models.update(r.models)
    timings = {**ctx.timings_ms, Step.RECOGNIZE.value: round(sum(r.ms for r in results), 2)}
    lines = ctx.lines or Lines([], [], [])
    page = state.engine.step_reorder(ctx.name, ctx.width, ctx.height, ctx.rotation or 0,
                                     lines.polygons, texts, models, timings,
                                     leaders=lines.leaders, skew=ctx.skew,
                                     cost=ctx.costs(Step.RECOGNIZE.value, results),
                                     leader_reach=lines.leader_reach, doubts=doubts)
    doc = page.to_dict()
    stage_done(log, Step.REORDER, page.timings_ms.get(Step.REORDER.value, 0.0), page.models)
    if ctx.stages:
        return doc
    return complete(state, ctx, doc, batches_done=len(results), batches_total=len(results))


def complete(state: Services, ctx: JobContext, doc: dict[str, Any], **counts: Any
             ) -> dict[str, Any] | None:
    """Finish the job with the read page (a document: with all pages, by the last one
    read: pages.py). None: pages still running, or the job ended meanwhile."""
    whole = doc if ctx.page is None else pages.collect(state, ctx, doc)
    counts = counts if ctx.page is None else {}  # a page's batch counts are not the job's
    if whole is None or not finish(state, ctx.job_id, JobStatus.SUCCEEDED, document=whole,
                                   **counts):
        return None
    if ctx.page is not None:
        pages.forget(state, ctx.job_id)
    return whole


def finish(state: Services, job_id: str, status: JobStatus, *,
           error: dict[str, Any] | None = None, document: dict[str, Any] | None = None,
           retry_for_s: float = RETRY_FOR_S, **fields: Any) -> bool:
    """Terminal transition: DB first (system of record), then cache; drop the image.

    Each half is retried on its own through a Redis or database blink (retry_io,
    for ``retry_for_s``): run again as a whole, the second try would find the job
    terminal and leave the cache saying ``running`` (:func:`document` then reads
    the row).
    """
    if not retry_io(lambda: store.finish_job(state.db, job_id, status, error=error,
                                             document=document, **fields),
                    f"finishing job {job_id}", retry_for_s):
        # Already terminal (e.g. cancelled while running), or ended by an earlier run of
        # this very step that was killed before its second half.
        try:
            return _resume(state, job_id, status, retry_for_s)
        except Exception as exc:  # a mend, not the end itself: never fails the caller
            log.warning("job %s: could not look at its earlier end: %s", job_id, exc)
            return False
    _after_finish(state, job_id, status, now_iso(), error, document, fields, retry_for_s)
    job_finished(state, job_id, status)
    return True


def _after_finish(state: Services, job_id: str, status: JobStatus, finished_at: str | None,
                  error: dict[str, Any] | None, document: dict[str, Any] | None,
                  fields: dict[str, Any], retry_for_s: float) -> None:
    """finish's second half, once the row is terminal."""
    def after() -> None:
        badcases.keep(state, job_id, status, error=error, document=document)  # needs the image
        state.blobs.delete(state.blobs.key_for(job_id))
        # Its stage tasks are done or will see the job ended: their start counters go.
        state.cache.forget_deliveries(state.cache.tasks(job_id))
        # Last: whoever sees the job ended in the cache sees nothing of it left behind.
        state.cache.update(job_id, status=str(status), stage=None, finished_at=finished_at,
                           error=error, result=document, **fields)

    retry_io(after, f"caching the end of job {job_id}", retry_for_s)


def _resume(state: Services, job_id: str, status: JobStatus, retry_for_s: float) -> bool:
    """The row refused the end: True (the caller goes on: its webhook) only when an
    earlier finisher of this job, ending it the same way, was cut off between its two
    halves, and this call did the second half for it.

    Seen in the soak (at a836797): a worker SIGKILLed after reorder's COMMIT, before
    the cache, the image, the webhook. Its message came back after the visibility
    timeout and ran again; the row refused, and the job kept its image, a cache entry
    saying running and no webhook. Such a finisher is told apart from a live one by
    the cache (not terminal), the row (this status, ended ``RESUME_AFTER_S`` ago or
    more: a live finisher's second half takes milliseconds) and a key taken once.
    """
    if state.cache.status(job_id) in TERMINAL or state.cache.get(job_id) is None:
        return False  # its finisher got through (or nothing is cached to mend)
    job = store.get_job(state.db, job_id)
    if job is None or job.status != str(status) or job.finished_at is None:
        return False
    age_s = (datetime.now(UTC).replace(tzinfo=None) - job.finished_at).total_seconds()
    if age_s < RESUME_AFTER_S or not state.redis.set(
            f"ocrq:finish:resumed:{job_id}", "1", nx=True, ex=RESUME_KEY_TTL_S):
        return False
    document = store.get_result(state.db, job_id) if status is JobStatus.SUCCEEDED else None
    log.warning("job %s ended %.0f s ago but its finisher stopped before the rest: done now",
                job_id, age_s)
    _after_finish(state, job_id, status, _iso(job.finished_at), job.error, document,
                  {"batches_done": job.batches_done, "batches_total": job.batches_total},
                  retry_for_s)
    return True


def error_object(exc: BaseException, task: str | None) -> dict[str, Any]:
    code = getattr(exc, "code", None) or "internal_error"
    out: dict[str, Any] = {"code": code, "message": str(exc) or type(exc).__name__,
                           "type": type(exc).__name__}
    if task:
        out["task"] = task
    return out


def time_limit_error(task: str | None, limit_s: float) -> dict[str, Any]:
    """The error of a job whose step ran past its time limit (any pool, soft or hard)."""
    stage = (task or "?").rsplit(".", 1)[-1]
    return {"code": "time_limit", "task": stage,
            "message": f"the {stage} step ran past its {limit_s:g} s time limit"}
