"""Intake, reads and cancel: validate, record, store the image, enqueue the canvas.

Every read and write of a job can be scoped to the caller's bid (its API key's
business): another business's job id is simply not found.

Called by the web views (and usable from any Python client); no Flask here.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from celery import Celery
from kombu.utils.uuid import uuid

from ocrq.documents import inspect as inspect_document
from ocrq.errors import OcrqError
from ocrq.images import validate_image
from ocrq.names import STEPS, Step
from ocrq.pipeline import canvas, publish, work
from ocrq.pipeline.messages import JobContext
from ocrq.pipeline.state import Services
from ocrq.plans import Plan
from ocrq.storage import Job, JobStatus
from ocrq.storage import jobs as store
from ocrq.webhooks import check_url

log = logging.getLogger(__name__)
NAME_MAX = 255  # ocrq_jobs.image_name
# Job ids whose INSERT failed (their image stored then) -> when (the sweeper's).
IN_DOUBT = "ocrq:intake:doubt"


class EnqueueFailed(OcrqError):
    """The broker refused the job (recorded as failed, never left queued)."""

    code = "enqueue_failed"


def submit(
    services: Services,
    app: Celery,
    data: bytes,
    name: str,
    *,
    bid: str | None = None,
    tid: str | None = None,
    callback_url: str | None = None,
    idempotency_key: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Validate everything, then record and enqueue. Returns (document, created).

    Nothing is written or enqueued unless the plan, the callback URL and the
    image are all valid (each raises an :class:`~ocrq.errors.OcrqError`). With
    API keys, ``bid`` is the key's business: the job and any Idempotency-Key
    replay belong to it.
    """
    s = services.settings
    # A client string carried in every message and stored in a 255-character column:
    # cut once, here, so a huge name never rides the broker.
    name = name[:NAME_MAX]
    plan = services.plans.resolve(bid, tid)
    queues = services.router.queues(plan)  # before any write: no live worker -> refused, no job
    if callback_url:
        check_url(callback_url, s.allow_private_urls)
    # A PDF or multi-page TIFF: its pages counted and each checked, nothing rendered.
    doc_info = inspect_document(data, name, s)
    # An image: corrupt pixel data is refused here too.
    width, height = doc_info.sizes[0] if doc_info else validate_image(data, name, s)
    # An Idempotency-Key replay is found by create_job (one SELECT, among the jobs of
    # the caller's bid: the key names the business), only now that the image is
    # valid: a replay carrying junk learns nothing.
    job_id = uuid().replace("-", "")
    try:
        job, created = store.create_job(
            services.db, id=job_id, bid=plan.bid, tid=plan.tid, status=str(JobStatus.QUEUED),
            idempotency_key=idempotency_key or None, callback_url=callback_url or None,
            image_name=name, width=width, height=height, batches_done=0,
        )
    except Exception as exc:
        # The row may exist (its COMMIT's reply lost: MariaDB restarting mid-COMMIT, the
        # client gets a 503) or not. The image is stored now, with the id in IN_DOUBT, one
        # round trip: a committed row is re-driven from it by the sweeper (soak at
        # 9a3a3a5), and once the database answers again the sweeper drops the image of an
        # id without a row. Redis down too: the row (if any) ends failed `lost`. Not where
        # the INSERT surely never ran (no connection, no turn): an outage would fill Redis.
        if not store.row_may_exist(exc):
            raise
        with contextlib.suppress(Exception):
            pipe = services.redis.pipeline(transaction=False)
            services.blobs.put(job_id, data, pipe)
            pipe.zadd(IN_DOUBT, {job_id: time.time()})
            pipe.execute()
        raise
    if not created:  # a replay, or lost an idempotency race: the other job is the answer
        return work.document(services, job.id) or {}, False
    # A document: one canvas per page (canvas.start).
    ctx = first_context(services, plan, job, queues, doc_info.sizes if doc_info else ())
    return _enqueue(services, app, job, ctx, data), True


def first_context(services: Services, plan: Plan, job: Job, queues: dict[str, str],
                  page_sizes: tuple[tuple[int, int], ...] | None = None) -> JobContext:
    """The first message of a recorded job: what intake sends, and what the sweeper
    sends again for a job whose intake died before enqueueing it.

    ``page_sizes``: a document's pages as intake found them (``()``: an image);
    None (the sweeper): found again from the stored blob.
    """
    if page_sizes is None:
        page_sizes = _stored_pages(services, job)
    step = plan.step(Step.RECOGNIZE)
    rec: dict[str, Any] = step.options if step is not None else {}
    lexicon = rec.get("lexicon")  # else the worker's OCRQ_LEXICON
    return JobContext(job_id=job.id, bid=plan.bid, tid=plan.tid,
                      image_key=services.blobs.key_for(job.id), name=job.image_name,
                      width=job.width, height=job.height, queues=queues,
                      batch_lines=int(rec.get("batch_lines")
                                      or services.settings.recognize_batch_lines),
                      callback=bool(job.callback_url),
                      lexicon=None if lexicon is None else tuple(lexicon),
                      second_reading=rec.get("second_reading"),
                      amounts=bool(rec.get("amounts", True)),
                      stages=tuple(st.name for st in plan.steps if st.name not in STEPS),
                      page_sizes=page_sizes)


def _stored_pages(services: Services, job: Job) -> tuple[tuple[int, int], ...]:
    """A re-driven job's pages, from its stored blob; () for an image, or when the
    blob is gone or unreadable (the job then fails in its first step, as before)."""
    try:
        data = services.blobs.get(services.blobs.key_for(job.id))
        info = inspect_document(data, job.image_name, services.settings)
    except OcrqError:
        return ()
    return info.sizes if info else ()


def _enqueue(services: Services, app: Celery, job: Any, ctx: JobContext, data: bytes
             ) -> dict[str, Any]:
    """Store the image, cache the status, start the canvas; the job as accepted.

    The image rides the status pipeline, after the row (one Redis round trip for
    all of it: each blocking round trip costs a submit about twice its own CPU).
    A web process that dies between the INSERT and that pipeline leaves a queued
    row with no image, no status and no task: the sweeper fails it ``lost`` and
    frees its Idempotency-Key. Everything after the row exists may fail (Redis
    or the broker down): the job then ends failed, never sits in "queued" forever.
    """
    job_id = ctx.job_id
    try:
        flat = work.flat_from_row(job, None)
        if ctx.page_sizes:  # a document: the pages read so far, of how many
            flat.update(pages_done=0, pages_total=len(ctx.page_sizes))
        sig, ids = canvas.start(app, ctx)
        # A short argsrepr spares the repr of the whole context; monitors still see the job.
        argsrepr = f"(job {job_id})"
        pub = publish.publisher(app, services.settings.redis_url)
        message = pub.message(sig, argsrepr)
        # Image, status and task ids in one round trip, all before the message exists
        # (the message too, when the broker is the cache's Redis database): a worker
        # that pops it finds them. MULTI/EXEC, same round trip: a Redis at its
        # maxmemory (noeviction) refuses the whole transaction, never the image alone
        # with the message after it pushed.
        pipe = services.redis.pipeline(transaction=True)
        services.blobs.put(job_id, data, pipe)
        services.cache.put(job_id, flat, pipe)
        services.cache.add_tasks(job_id, ids, pipe)
        pushed = message is not None and pub.push(message, pipe)
        pipe.execute()
        doc = work.shape(flat)  # as accepted (what the cache now holds): a worker may start
        if message is not None and not pushed:
            pub.send(message)
        elif message is None:
            # The stage tasks keep no result (ignore_result=True where they are defined),
            # but this process does not know them: said here, the send skips subscribing
            # to a result channel (two more round trips, and a listener per job).
            sig.apply_async(ignore_result=True, argsrepr=argsrepr)
    except Exception as exc:
        err = EnqueueFailed(f"could not enqueue job {job_id}: {exc}", job_id=job_id)
        with contextlib.suppress(Exception):  # the DB row is written first; Redis may be down
            work.finish(services, job_id, JobStatus.FAILED, error=err.to_dict(),
                        retry_for_s=0)  # the client is waiting: answer 503 now
        # Nothing ran: a retry with the same Idempotency-Key must get a new job,
        # not this failed one forever.
        with contextlib.suppress(Exception):
            store.release_idempotency_key(services.db, job_id)
        with contextlib.suppress(Exception):  # nothing will read it
            services.blobs.delete(ctx.image_key)
        raise err from exc
    return doc


def document(services: Services, job_id: str, bid: str | None = None
             ) -> dict[str, Any] | None:
    """The job as the API shows it, or None when there is no such job *for ``bid``*.

    ``bid`` is the caller's business (from its API key); another business's job
    is not found, exactly like a job that never existed. None: no scoping (OCRQ_AUTH=none).
    """
    doc = work.document(services, job_id)
    if doc is None or (bid is not None and doc.get("bid") != bid):
        return None
    return doc


def cancel(services: Services, app: Celery, job_id: str, bid: str | None = None
           ) -> dict[str, Any] | None:
    """Mark cancelled (if not finished) and revoke the tasks that have not run.

    None when there is no such job for ``bid`` (see :func:`document`): nothing changes.
    """
    doc = document(services, job_id, bid)
    if doc is None:
        return None
    if work.finish(services, job_id, JobStatus.CANCELLED,
                   error={"code": "cancelled", "message": "cancelled by the client"}):
        ids = services.cache.tasks(job_id)
        if ids:
            # Running tasks finish (no terminate: a killed ONNX call could wedge a child);
            # everything else is dropped by the workers, and stages also check the status.
            app.control.revoke(ids)
    return work.document(services, job_id)
