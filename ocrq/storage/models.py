"""SQLAlchemy 2 models: the system of record for jobs, results, webhook deliveries,
model activations and API keys.

Every table lives here, so ``Base.metadata`` is complete once this module is imported
(migrations/env.py relies on it: autogenerate drops the tables it does not see).
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Microsecond timestamps on MariaDB too (its DATETIME defaults to whole seconds).
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
# Images of bad cases: MariaDB's plain BLOB stops at 64 KiB.
Blob = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # stored naive UTC: same on SQLite and MariaDB


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


# Once a job is in one of these it never changes again (cancel vs. late worker writes).
TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON}


class Job(Base):
    __tablename__ = "ocrq_jobs"
    __table_args__ = (UniqueConstraint("bid", "idempotency_key", name="uq_jobs_bid_idem"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    bid: Mapped[str] = mapped_column(String(64))
    tid: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True, default=JobStatus.QUEUED)
    stage: Mapped[str | None] = mapped_column(String(32), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    callback_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    image_name: Mapped[str] = mapped_column(String(255))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    batches_total: Mapped[int | None] = mapped_column(Integer, nullable=True)
    batches_done: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)


class Result(Base):
    __tablename__ = "ocrq_results"

    job_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("ocrq_jobs.id", ondelete="CASCADE"), primary_key=True
    )
    # The PageResult document (same shape as `ocrq run --json`), model versions included.
    document: Mapped[dict[str, Any]] = mapped_column()
    models: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class Delivery(Base):
    """One webhook delivery attempt (every attempt is a row, successful or not)."""

    __tablename__ = "ocrq_webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("ocrq_jobs.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(Text)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    ok: Mapped[bool] = mapped_column(default=False)
    duration_ms: Mapped[float] = mapped_column(default=0.0)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class ModelActivation(Base):
    """One operator decision: ``model`` serves ``version`` (for ``bid``, or everyone).

    The append-only log behind :class:`ocrq.models.control.ModelControl`.
    """

    __tablename__ = "ocrq_model_activations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(32), index=True)
    bid: Mapped[str | None] = mapped_column(String(64), nullable=True)  # NULL: global
    # NULL on a bid row: the canary is withdrawn, the bid follows the global version.
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    previous_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    actor: Mapped[str] = mapped_column(String(128), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class ApiKey(Base):
    """An API key of one business (bid). The token itself is never stored.

    ``secret_hash`` is the sha256 of the whole token. A plain fast hash is the right
    tool here, unlike for passwords: the token carries 256 random bits (not a
    human-chosen secret), so there is nothing to guess and no dictionary to slow down;
    a salt or a slow KDF would only cost time on every request.
    """

    __tablename__ = "ocrq_api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)  # shown; part of the token
    bid: Mapped[str] = mapped_column(String(64), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))  # sha256 hex of the token
    label: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)


class Badcase(Base):
    """A job kept for labelling: it failed, or its page read below its plan's confidence.

    No foreign key to its job: a bad case has its own retention
    (OCRQ_BADCASE_RETENTION_DAYS) and may outlive the job's row. One per job.
    """

    __tablename__ = "ocrq_badcases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(32), unique=True)
    bid: Mapped[str] = mapped_column(String(64), index=True)
    tid: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(32))  # failed | low_confidence
    code: Mapped[str | None] = mapped_column(String(64), nullable=True)  # failed: its error
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)  # the page's mean
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)  # the PageResult
    image_name: Mapped[str] = mapped_column(String(255))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    # NULL: not kept (gone from Redis already, or over OCRQ_BADCASE_MAX_IMAGE_BYTES).
    image: Mapped[bytes | None] = mapped_column(Blob, nullable=True, deferred=True)
    image_bytes: Mapped[int] = mapped_column(Integer, default=0)  # its size, kept or not
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, index=True)
