"""Access functions for bad cases (``ocrq_badcases``): jobs kept for labelling.

What makes a job a bad case is decided in ocrq/pipeline/badcases.py; here they
are written once per job, listed newest first (scoped to a bid when asked), read
with their images for an export, and purged past their retention.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import undefer

from ocrq.storage.db import Database
from ocrq.storage.models import Badcase, utcnow

REASONS = ("failed", "low_confidence")
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}$")


def record(db: Database, **fields: Any) -> bool:
    """Keep one bad case; False when its job already has one (a job ends once, but a
    redelivered last step may try again)."""
    assert fields.get("reason") in REASONS, fields.get("reason")
    try:
        with db.session() as s:
            s.add(Badcase(**fields))
        return True
    except IntegrityError:  # unique job_id
        return False


def listing(db: Database, *, bid: str | None = None, since: datetime | None = None,
            before_id: int | None = None, limit: int = 50) -> list[Badcase]:
    """Newest first, without their images. ``before_id``: the page after the one that
    ended with that id (stable while new ones arrive)."""
    q = select(Badcase).order_by(Badcase.id.desc()).limit(max(1, limit))
    if bid is not None:
        q = q.where(Badcase.bid == bid)
    if since is not None:
        q = q.where(Badcase.created_at >= since)
    if before_id is not None:
        q = q.where(Badcase.id < before_id)
    with db.session() as s:
        return list(s.scalars(q))


def with_images(db: Database, *, bid: str | None = None, since: datetime | None = None,
                page: int = 20) -> Iterator[Badcase]:
    """Every matching bad case with its image, oldest first, ``page`` rows at a time
    (an export never holds more than one page of images in memory)."""
    after = 0
    while True:
        q = (select(Badcase).options(undefer(Badcase.image)).where(Badcase.id > after)
             .order_by(Badcase.id).limit(max(1, page)))
        if bid is not None:
            q = q.where(Badcase.bid == bid)
        if since is not None:
            q = q.where(Badcase.created_at >= since)
        with db.session() as s:
            rows = list(s.scalars(q))
        yield from rows
        if len(rows) < max(1, page):
            return
        after = rows[-1].id


def purge(db: Database, retention_days: int, now: datetime | None = None, *,
          batch: int = 1000, max_batches: int | None = None) -> int:
    """Delete bad cases older than the retention, ``batch`` per transaction (like
    :func:`ocrq.storage.jobs.purge`: images make these rows large). Returns the count."""
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    size = max(1, batch)
    old = select(Badcase.id).where(Badcase.created_at < cutoff).order_by(Badcase.id).limit(size)
    total, rounds = 0, 0
    while max_batches is None or rounds < max_batches:
        with db.session() as s:
            ids = list(s.scalars(old))
            if ids:
                s.execute(delete(Badcase).where(Badcase.id.in_(ids)))
        total, rounds = total + len(ids), rounds + 1
        if len(ids) < size:
            break
    return total


def summary(row: Badcase) -> dict[str, Any]:
    """A bad case as the API and ``ocrq badcases list --json`` show it (no image)."""
    return {
        "id": row.id, "job_id": row.job_id, "bid": row.bid, "tid": row.tid,
        "reason": row.reason, "code": row.code, "confidence": row.confidence,
        "threshold": row.threshold, "error": row.error,
        "image": {"name": row.image_name, "width": row.width, "height": row.height,
                  "bytes": row.image_bytes},
        "created_at": row.created_at.isoformat(timespec="milliseconds") + "Z",
        "result": row.result,
    }


def image_of(db: Database, case_id: int) -> tuple[str, bytes | None, str] | None:
    """(bid, image or None, export file name) of one bad case; None: no such case."""
    with db.session() as s:
        row = s.scalars(select(Badcase).options(undefer(Badcase.image))
                        .where(Badcase.id == case_id)).first()
        if row is None:
            return None
        return row.bid, row.image, export_name(row)


def export_name(row: Badcase) -> str:
    """A file name for the case's image: the job id (unique, safe), the original's suffix."""
    m = _SUFFIX.search(row.image_name or "")
    return f"{row.job_id}{m.group(0).lower() if m else '.img'}"
