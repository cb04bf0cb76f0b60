"""Engine and session factory, created lazily (nothing connects at import time)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, Table, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from ocrq.storage.group_commit import GroupCommit

DB_IO_TIMEOUT_S = 60  # one read or write on a MariaDB connection; no query here is longer
DB_CONNECT_TIMEOUT_S = 10


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Engine | None = None
        self._sessions: sessionmaker[Session] | None = None
        self._groups: dict[str, GroupCommit] = {}
        self._groups_lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = _make_engine(self.url)
            self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        return self._engine

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: commits on success, rolls back on error."""
        self.engine  # noqa: B018 - creates the session factory on first use
        assert self._sessions is not None
        with self._sessions() as s, s.begin():
            yield s

    def grouped(self, table: Table) -> GroupCommit:
        """The process's group commit of inserts into ``table`` (made on first use)."""
        group = self._groups.get(table.name)
        if group is None:
            with self._groups_lock:
                group = self._groups.setdefault(table.name,
                                                GroupCommit(lambda: self.engine, table))
        return group

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Drop pooled connections (call in forked children: sockets must not be shared)."""
        if self._engine is not None:
            self._engine.dispose(close=False)
        # A commit in flight in the parent at fork time has no leader here.
        self._groups = {}


def _make_engine(url: str) -> Engine:
    kwargs: dict[str, Any] = {"future": True}
    if url.startswith("sqlite"):
        # Web threads and worker processes share the file: wait on locks instead of failing.
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    else:
        kwargs.update(pool_pre_ping=True, pool_recycle=1800)
        if url.startswith("mysql+pymysql"):
            # A half-open socket (a failover) must fail, not hang: pymysql waits forever.
            kwargs["connect_args"] = {"connect_timeout": DB_CONNECT_TIMEOUT_S,
                                      "read_timeout": DB_IO_TIMEOUT_S,
                                      "write_timeout": DB_IO_TIMEOUT_S}
        # The pool's ROLLBACK on every return is skipped when the connection's last
        # transaction already ended (see _skip_needless_reset): a round trip per
        # transaction saved.
        kwargs["pool_reset_on_return"] = None
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        _skip_needless_reset(engine)
    return engine


_ENDED = "ocrq_transaction_ended"


def _skip_needless_reset(engine: Engine) -> None:
    """Roll back a connection returned to the pool only when its transaction may
    still be open (SQLAlchemy's recipe for a custom reset, PoolEvents.reset).

    By default the pool sends ROLLBACK on every return, even right after a COMMIT
    (SQLAlchemy does not track that for PyMySQL): on MariaDB, one of a submit's
    four round trips. A connection counts as clean only from a commit or rollback
    of its Connection until the next statement; a checkout, any statement and any
    error make it dirty, so raw DBAPI use or a failed COMMIT still gets its ROLLBACK.
    """
    def mark(conn: Any, value: bool) -> None:
        # An invalidated Connection (its server went away mid-statement) raises on
        # .info; raising from an event would replace the real error (a 503) with
        # PendingRollbackError (a 500). Its DBAPI connection is discarded anyway.
        if conn is not None and not conn.invalidated:
            with contextlib.suppress(Exception):  # never mask the statement's own error
                conn.info[_ENDED] = value

    def dirty(conn: Any, *_: Any) -> None:
        mark(conn, False)

    def ended(conn: Any) -> None:
        mark(conn, True)

    def error(ctx: Any) -> None:
        mark(ctx.connection, False)

    def checkout(_dbapi: Any, record: Any, _proxy: Any) -> None:
        record.info[_ENDED] = False

    def reset(dbapi_conn: Any, record: Any, state: Any) -> None:
        if state.terminate_only:
            return
        if not record.info.get(_ENDED):
            dbapi_conn.rollback()

    event.listen(engine, "before_cursor_execute", dirty)
    event.listen(engine, "commit", ended)
    event.listen(engine, "rollback", ended)
    event.listen(engine, "handle_error", error)
    event.listen(engine.pool, "checkout", checkout)
    event.listen(engine.pool, "reset", reset)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    # WAL + NORMAL: commits do not fsync (a power cut may lose the last commits, never
    # corrupts); the one-machine default trades that for fast job transitions.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
