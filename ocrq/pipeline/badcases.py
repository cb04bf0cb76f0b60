"""Which finished jobs are kept as bad cases, with their image and result (issue 15).

:func:`keep` runs in :func:`ocrq.pipeline.work.finish`, the one place every job
ends, after the terminal write and before the image's blob is deleted:

* **failed**: every failed job, whatever failed it (a stage's error, a time
  limit, the sweeper); ``code`` is its error code.
* **low_confidence**: a succeeded page whose mean line confidence is below its
  plan's ``badcase_confidence`` (plans.yaml), else OCRQ_BADCASE_CONFIDENCE. A page
  without lines has no confidence and is not kept (blank pages are ordinary).

The image is kept up to OCRQ_BADCASE_MAX_IMAGE_BYTES; a larger one, or one that
is gone from Redis, is recorded without it. Keeping a bad case never fails the job's
end: any error is logged and the job ends as it would have.
"""

from __future__ import annotations

import logging
from statistics import fmean
from typing import Any

from ocrq.pipeline.state import Services
from ocrq.storage import JobStatus, jobs
from ocrq.storage import badcases as store

log = logging.getLogger(__name__)


def page_confidence(document: dict[str, Any] | None) -> float | None:
    """The page's mean line confidence; None when it has no lines."""
    values = [float(ln.get("confidence", 0.0)) for ln in (document or {}).get("lines") or []]
    return round(fmean(values), 4) if values else None


def threshold(services: Services, bid: str, tid: str) -> float:
    try:
        plan = services.plans.resolve(bid, tid)
    except Exception:  # the plan is gone (plans.yaml changed): the global default
        return services.settings.badcase_confidence
    if plan.badcase_confidence is not None:
        return plan.badcase_confidence
    return services.settings.badcase_confidence


def keep(services: Services, job_id: str, status: JobStatus, *,
         error: dict[str, Any] | None = None, document: dict[str, Any] | None = None
         ) -> bool:
    """Record the job as a bad case if it is one; True when one was recorded."""
    if status not in (JobStatus.FAILED, JobStatus.SUCCEEDED):
        return False  # cancelled: the client's choice, nothing to learn from
    try:
        return _keep(services, job_id, status, error, document)
    except Exception as exc:
        log.warning("job %s: bad case not kept: %s", job_id, exc)
        return False


def _keep(services: Services, job_id: str, status: JobStatus,
          error: dict[str, Any] | None, document: dict[str, Any] | None) -> bool:
    confidence = page_confidence(document)
    if status is JobStatus.SUCCEEDED and confidence is None:
        return False
    job = _job(services, job_id)
    if job is None:
        return False
    fields: dict[str, Any]
    if status is JobStatus.FAILED:
        fields = {"reason": "failed", "code": str((error or {}).get("code") or "unknown"),
                  "error": error, "confidence": confidence}
    else:
        limit = threshold(services, job["bid"], job["tid"])
        if confidence is None or limit <= 0 or confidence >= limit:
            return False
        fields = {"reason": "low_confidence", "confidence": confidence, "threshold": limit}
    image, size = _image(services, job_id)
    kept = store.record(services.db, job_id=job_id, result=document, image=image,
                        image_bytes=size, **job, **fields)
    if kept:
        log.info("job %s kept as a bad case (%s)", job_id, fields["reason"],
                 extra={"event": "badcase", "reason": fields["reason"],
                        "confidence": confidence, "image_kept": image is not None})
    return kept


def _job(services: Services, job_id: str) -> dict[str, Any] | None:
    """The job's bid, tid and image fields: from the status cache ``finish`` has just
    written (no extra database read on every succeeded job), else from its row."""
    flat = services.cache.get(job_id) or {}
    if all(flat.get(k) is not None for k in ("bid", "tid", "width", "height")):
        return {"bid": flat["bid"], "tid": flat["tid"], "image_name": flat.get("image") or "",
                "width": int(flat["width"]), "height": int(flat["height"])}
    row = jobs.get_job(services.db, job_id)
    if row is None:
        return None
    return {"bid": row.bid, "tid": row.tid, "image_name": row.image_name,
            "width": row.width, "height": row.height}


def _image(services: Services, job_id: str) -> tuple[bytes | None, int]:
    """The job's image if still stored and not over the size limit, and its size."""
    key = services.blobs.key_for(job_id)
    size = int(services.redis.strlen(key) or 0)  # the size first: never load a huge one
    if size == 0 or size > services.settings.badcase_max_image_bytes:
        return None, size
    data = services.redis.get(key)
    return (bytes(data), size) if data else (None, 0)
