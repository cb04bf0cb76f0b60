"""Access functions for jobs, results and webhook deliveries.

Every status change goes through :func:`transition`, which refuses to move a
job out of a terminal state, so a cancel can never be overwritten by a late
worker write (and vice versa).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.orm import make_transient_to_detached

from ocrq.storage.db import Database
from ocrq.storage.group_commit import CommitInDoubt
from ocrq.storage.models import TERMINAL, Delivery, Job, JobStatus, Result, utcnow

UNFINISHED = [str(s) for s in JobStatus if s not in TERMINAL]
_JOBS = Job.__table__


def _row_values(fields: dict[str, Any]) -> dict[str, Any]:
    """Every column of a new job: the given fields, the columns' own defaults (the
    status, created_at), None for the rest. All set, so the Job built from them
    has nothing left to load."""
    values = {}
    for col in _JOBS.columns:
        d = col.default
        if col.key in fields:
            values[col.key] = fields[col.key]
        elif d is not None and d.is_callable:
            values[col.key] = d.arg(None)  # type: ignore[attr-defined]
        elif d is not None and d.is_scalar:
            values[col.key] = d.arg  # type: ignore[attr-defined]
        else:
            values[col.key] = None
    unknown = set(fields) - set(values)
    if unknown:
        raise TypeError(f"not columns of ocrq_jobs: {sorted(unknown)}")
    return values


def create_job(db: Database, **fields: Any) -> tuple[Job, bool]:
    """Insert a job; with an idempotency key already used for the bid, return
    the existing job instead. Returns (job, created)."""
    key, bid = fields.get("idempotency_key"), fields["bid"]
    if key:
        existing = find_idempotent(db, bid, key)
        if existing is not None:
            return existing, False
    values = _row_values(fields)
    try:
        # A Core INSERT, not the ORM's unit of work: intake's hot path (issue 14).
        # Committed before the caller answers 202, in one multi-row INSERT (on MariaDB
        # autocommitted: no COMMIT) with the rows of the submits that arrived meanwhile
        # (group_commit.py).
        db.grouped(_JOBS).insert(values)
        job = Job(**values)
        make_transient_to_detached(job)  # what a session's row would be once closed
        return job, True
    except IntegrityError:
        # Two requests with the same key raced; the unique constraint picked a winner.
        existing = find_idempotent(db, bid, key) if key else None
        if existing is None:
            raise
        return existing, False


# MySQL errors that say the statement never reached a server: no connection (2002,
# 2003 can't connect, 2005 unknown host), refused at connect or login (1040 too many
# connections, 1044, 1045, 1049, 1129, 1130 host blocked or not allowed, 1203/1226
# user limits, 1698 access denied by the auth plugin).
NOT_SENT = frozenset({1040, 1044, 1045, 1049, 1129, 1130, 1203, 1226, 1698, 2002, 2003, 2005})


def row_may_exist(exc: BaseException) -> bool:
    """After create_job raised: may its row be committed all the same (the reply
    lost, a timeout)? False where the INSERT surely never ran: refused (a constraint,
    bad data), never sent (no connection, no turn in the group commit)."""
    if isinstance(exc, CommitInDoubt):
        return exc.sent
    if isinstance(exc, IntegrityError | DataError):
        return False
    if isinstance(exc, DBAPIError):
        args = getattr(exc.orig, "args", ())
        return not (args and isinstance(args[0], int) and args[0] in NOT_SENT)
    return True  # anything else: the sweeper drops the image if no row turns up


def find_idempotent(db: Database, bid: str, key: str) -> Job | None:
    with db.session() as s:
        return s.scalars(select(Job).where(Job.bid == bid, Job.idempotency_key == key)).first()


def release_idempotency_key(db: Database, job_id: str) -> None:
    """Free a job's key, so a retry with the same Idempotency-Key makes a new job."""
    with db.session() as s:
        s.execute(update(Job).where(Job.id == job_id).values(idempotency_key=None))


def get_job(db: Database, job_id: str) -> Job | None:
    with db.session() as s:
        return s.get(Job, job_id)


def transition(db: Database, job_id: str, **fields: Any) -> bool:
    """Update a non-terminal job; False if it is already terminal (or missing)."""
    with db.session() as s:
        res = s.execute(
            update(Job)
            .where(Job.id == job_id, Job.status.not_in([str(t) for t in TERMINAL]))
            .values(**fields)
        )
        return res.rowcount > 0


def finish_job(
    db: Database,
    job_id: str,
    status: JobStatus,
    *,
    error: dict[str, Any] | None = None,
    document: dict[str, Any] | None = None,
    **fields: Any,
) -> bool:
    """Move a job to a terminal state (storing its result) in one transaction."""
    assert status in TERMINAL
    now = utcnow()
    with db.session() as s:
        res = s.execute(
            update(Job)
            .where(Job.id == job_id, Job.status.not_in([str(t) for t in TERMINAL]))
            .values(status=str(status), error=error, finished_at=now, stage=None, **fields)
        )
        if res.rowcount == 0:
            return False
        if document is not None:
            s.add(Result(job_id=job_id, document=document,
                         models=document.get("models", {}), created_at=now))
        return True


def get_result(db: Database, job_id: str) -> dict[str, Any] | None:
    with db.session() as s:
        row = s.get(Result, job_id)
        return None if row is None else row.document


def record_delivery(db: Database, **fields: Any) -> Delivery:
    with db.session() as s:
        d = Delivery(**fields)
        s.add(d)
    return d


def deliveries(db: Database, job_id: str) -> list[Delivery]:
    with db.session() as s:
        return list(s.scalars(select(Delivery).where(Delivery.job_id == job_id)
                              .order_by(Delivery.attempt, Delivery.id)))


def count_jobs(db: Database) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(Job)) or 0)


def overdue(db: Database, created_before: datetime, limit: int) -> list[Job]:
    """Non-terminal jobs created before ``created_before``, oldest first (the sweeper)."""
    with db.session() as s:
        return list(s.scalars(
            # IN over the few unfinished statuses, not NOT IN over the finished ones:
            # the status index then reads only unfinished rows, never the retention's.
            select(Job).where(Job.status.in_(UNFINISHED), Job.created_at < created_before)
            .order_by(Job.created_at).limit(limit)))


def unreported(db: Database, created_after: datetime, finished_after: datetime,
               finished_before: datetime, limit: int) -> list[Job]:
    """Succeeded or failed jobs (a cancel sends none) with a callback and not one
    delivery attempt recorded (their webhook message lost: a flushed broker).
    Bounded by creation for the index."""
    ended = [str(JobStatus.SUCCEEDED), str(JobStatus.FAILED)]
    with db.session() as s:
        attempted = select(Delivery.id).where(Delivery.job_id == Job.id).exists()
        return list(s.scalars(
            select(Job).where(Job.created_at > created_after, Job.finished_at > finished_after,
                              Job.finished_at < finished_before, Job.status.in_(ended),
                              Job.callback_url.is_not(None), ~attempted)
            .order_by(Job.created_at).limit(limit)))


def queued_between(db: Database, created_after: datetime, created_before: datetime,
                   limit: int) -> list[Job]:
    """Jobs still queued that were created in (after, before), oldest first."""
    with db.session() as s:
        return list(s.scalars(
            select(Job).where(Job.status == str(JobStatus.QUEUED),
                              Job.created_at > created_after, Job.created_at < created_before)
            .order_by(Job.created_at).limit(limit)))


def purge(db: Database, retention_days: int, now: datetime | None = None, *,
          batch: int = 1000, max_batches: int | None = None) -> int:
    """Delete finished jobs (with their results and deliveries) older than the retention.

    At most ``batch`` jobs per transaction, oldest first: a year of backlog never
    becomes one statement holding locks (and a huge ``IN`` list) for minutes, and
    an interrupted purge keeps what it did. ``max_batches`` bounds one call (the
    sweeper's share of a heartbeat); None: until nothing is left. Returns the count.
    """
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    size = max(1, batch)
    old = (select(Job.id).where(Job.created_at < cutoff,
                                Job.status.in_([str(t) for t in TERMINAL]))
           .order_by(Job.created_at).limit(size))
    total, rounds = 0, 0
    while max_batches is None or rounds < max_batches:
        with db.session() as s:
            ids = list(s.scalars(old))
            if ids:
                # Explicit child deletes: SQLite only cascades with foreign_keys=ON.
                s.execute(delete(Delivery).where(Delivery.job_id.in_(ids)))
                s.execute(delete(Result).where(Result.job_id.in_(ids)))
                s.execute(delete(Job).where(Job.id.in_(ids)))
        total, rounds = total + len(ids), rounds + 1
        if len(ids) < size:
            break
    return total
