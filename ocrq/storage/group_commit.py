"""Group commit: the new job rows of concurrent submits share one INSERT (and one COMMIT).

Every submit must have its row committed before it answers 202. Alone, that is a
connection check-out (with the pool's ping), an INSERT and a COMMIT per job: three
round trips and a redo-log flush each, most of MariaDB's work per submit and much
of the web's. Here the first thread to arrive commits its own row at once (no
added wait when the intake is idle); threads that arrive while a commit is in
flight queue their rows, and when it ends one of them (the next leader) inserts
everything queued, up to ``max_rows``, in one multi-row INSERT and one COMMIT.
Each thread returns only once the COMMIT that holds its row succeeded, and gets
that COMMIT's exception if it failed (the caller's lost-COMMIT-reply handling is
unchanged: the row may or may not exist).

A batch refused for one row's sake (two submits with one Idempotency-Key: a unique
constraint; a value the column refuses) is redone one row per transaction, so each
row gets its own answer; any other error (a lost connection, the pool's timeout, a
server error) fails the whole batch. No thread of its own: the waiting request
threads take turns (leader/followers). A queued thread waits at most ``wait_s``:
a leader stuck on a hung connection must not park every request thread of the
process; it then gets :class:`CommitInDoubt` (its row may or may not commit later),
which the caller handles as any lost COMMIT reply.

On MariaDB/MySQL through PyMySQL a batch is one multi-row INSERT on a connection of
the group's own in autocommit mode (:class:`AutocommitInsert`): one statement and one
round trip, where the pool's checkout (a ping), the INSERT and the COMMIT were three.
Any other database goes through SQLAlchemy's engine (INSERT + COMMIT).
"""

from __future__ import annotations

import select
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError

Row = dict[str, Any]
WAIT_S = 30.0  # the longest a queued row waits for its COMMIT


class CommitInDoubt(OperationalError):
    """The row's COMMIT did not answer in time, or was interrupted: the row may exist
    (``sent``; False: it waited for a turn that never came, nothing was sent).
    A connection-level error (``connection_invalidated``): the intake answers 503."""

    def __init__(self, why: str, sent: bool = True) -> None:
        super().__init__("group commit", None, TimeoutError(why), connection_invalidated=True)
        self.sent = sent


class _Entry:
    __slots__ = ("done", "error", "lead", "values", "wake")

    def __init__(self, values: Row) -> None:
        self.values = values
        self.wake = threading.Event()
        self.done = False
        self.lead = False  # woken to commit the queue, not because its row is done
        self.error: BaseException | None = None


class GroupCommit:
    """Inserts into ``table``: :meth:`insert` returns once its row is committed."""

    def __init__(self, engine: Callable[[], Engine], table: Table, max_rows: int = 64,
                 wait_s: float = WAIT_S) -> None:
        self._engine = engine
        self.wait_s = wait_s
        self.table = table
        self.max_rows = max(1, max_rows)
        self._lock = threading.Lock()
        self._queue: list[_Entry] = []
        self._busy = False  # a leader is committing
        self.batches = 0  # commits made (rows / batches: the group size, for tests)
        self.rows = 0
        # Decided on the first batch (the engine is made lazily): None not yet, False
        # SQLAlchemy's engine.
        self._direct: AutocommitInsert | bool | None = None

    def insert(self, values: Row) -> None:
        """Insert one row; raises what its COMMIT raised (IntegrityError: this row's)."""
        me = _Entry(values)
        with self._lock:
            self._queue.append(me)
            lead = not self._busy
            self._busy = True
        deadline = time.monotonic() + self.wait_s
        while not lead:
            if not me.wake.wait(max(0.0, deadline - time.monotonic())):
                self._give_up(me)  # raises, unless the turn came meanwhile
            me.wake.clear()
            if me.done:
                break
            lead = me.lead
        if lead:
            self._lead()
        if me.error is not None:
            raise me.error

    def _give_up(self, me: _Entry) -> None:
        """A queued row's wait is over: out of the queue if no leader took it yet."""
        with self._lock:
            if me.lead or me.done:
                return  # woken just now: the caller's loop takes it from here
            if me in self._queue:
                self._queue.remove(me)  # never sent: the row does not exist
                raise CommitInDoubt(f"no turn to commit within {self.wait_s:g} s", sent=False)
        raise CommitInDoubt(f"the COMMIT holding this row did not end within {self.wait_s:g} s")

    def _lead(self) -> None:
        """Commit what is queued (this thread's row among it), then pass the turn on."""
        with self._lock:
            batch, self._queue = self._queue[:self.max_rows], self._queue[self.max_rows:]
        ended = False
        try:
            self._commit(batch)
            ended = True
        finally:
            with self._lock:
                nxt = self._queue[0] if self._queue else None
                self._busy = nxt is not None
                if nxt is not None:
                    nxt.lead = True  # under the lock: a waiter giving up sees it
            for e in batch:
                if not ended and e.error is None:  # interrupted: no row may say committed
                    e.error = CommitInDoubt("the COMMIT was interrupted")
                e.done = True
                e.wake.set()
            if nxt is not None:
                nxt.wake.set()

    def _commit(self, batch: list[_Entry]) -> None:
        try:
            self._execute([e.values for e in batch])
            return
        except (IntegrityError, DataError) as exc:
            # One row's own fault (a unique key taken, a value refused): unless it is
            # the only row, each row is tried alone so the others still commit.
            shared: Exception | None = exc if len(batch) == 1 else None
        except Exception as exc:  # noqa: BLE001 - the connection, the pool, the server
            shared = exc  # the batch's fate, handed to every row's thread
        if shared is not None:
            for e in batch:
                e.error = shared
            return
        for e in batch:
            try:
                self._execute([e.values])
            except Exception as exc:  # noqa: BLE001 - handed to that row's thread
                e.error = exc

    def _execute(self, rows: list[Row]) -> None:
        if self._direct is None:
            engine = self._engine()
            direct = engine.dialect.name in ("mysql", "mariadb") and engine.driver == "pymysql"
            self._direct = AutocommitInsert(engine, self.table) if direct else False
        if isinstance(self._direct, AutocommitInsert):
            self._direct.insert(rows)
        else:
            with self._engine().begin() as conn:
                conn.execute(insert(self.table), rows)
        self.batches += 1
        self.rows += len(rows)


class AutocommitInsert:
    """Rows inserted by one multi-row INSERT on a PyMySQL connection in autocommit mode.

    An InnoDB statement is atomic: in autocommit mode the rows of one INSERT are
    committed together when it answers, or none is (a duplicate key, a value refused,
    a lost connection), exactly as by the INSERT + COMMIT it replaces, in one round
    trip instead of three (the pool's pre-ping, the INSERT, the COMMIT) and without
    SQLAlchemy's per-execution work (issue 14: CPU per submit).

    The connection is the group's own, taken out of the engine's pool once (the
    engine's connect arguments, timeouts and events apply) and used by the group's
    leader only, one batch at a time. An idle connection the server has closed (a
    restart, ``wait_timeout``, a KILL) has something to read, an error packet or the
    end of the stream: it is replaced before the INSERT is sent, as the pool's
    pre-ping would have. Errors leave as SQLAlchemy's (IntegrityError, DataError,
    OperationalError with ``connection_invalidated`` for a lost connection), as the
    engine would raise them.

    Like a pooled one, it is replaced after the pool's ``recycle`` seconds (a
    switchover that leaves the old server up must not pin the intake to it), and
    after any error but a row's own (a duplicate key, a value refused): reconnecting
    is cheap, and a connection in an unknown state is never reused.
    """

    def __init__(self, engine: Engine, table: Table) -> None:
        self._engine = engine
        self._table = table
        # Per set of columns: the INSERT's text and each column's bind processor (JSON).
        self._compiled: dict[tuple[str, ...], tuple[str, list[Any]]] = {}
        self._conn: Any = None
        self._born = 0.0  # time.monotonic() when _conn was made
        recycle = getattr(engine.pool, "_recycle", -1)  # create_engine(pool_recycle=)
        self._recycle = float(recycle) if recycle and recycle > 0 else float("inf")

    def insert(self, rows: list[Row]) -> None:
        keys = tuple(rows[0])
        sql, processors = self._statement(keys)
        params = [{k: v if p is None else p(v) for (k, p), v in
                   zip(processors, (row[k] for k in keys), strict=True)} for row in rows]
        dbapi = self._engine.dialect.loaded_dbapi
        conn = None
        try:
            conn = self._connection()
            with conn.cursor() as cur:
                # One statement, whatever its size: executemany splits a longer one
                # (1 MB by default), and in autocommit mode each piece would commit
                # alone. Too long for the server's max_allowed_packet, it is refused whole.
                cur.max_stmt_length = sys.maxsize
                cur.executemany(sql, params)
        except dbapi.Error as exc:
            lost = self._engine.dialect.is_disconnect(exc, conn, None)
            own = isinstance(exc, (dbapi.IntegrityError, dbapi.DataError))  # never a disconnect
            if conn is not None and (not own or not conn.open):
                self._drop()
            raise DBAPIError.instance(sql, None, exc, dbapi.Error, connection_invalidated=lost,
                                      dialect=self._engine.dialect) from exc

    def _statement(self, keys: tuple[str, ...]) -> tuple[str, list[Any]]:
        hit = self._compiled.get(keys)
        if hit is None:
            dialect = self._engine.dialect
            sql = str(insert(self._table).compile(dialect=dialect, column_keys=list(keys)))
            cols = self._table.columns
            hit = sql, [(k, cols[k].type.dialect_impl(dialect).bind_processor(dialect))
                        for k in keys]
            self._compiled[keys] = hit
        return hit

    def _connection(self) -> Any:
        conn = self._conn
        stale = time.monotonic() - self._born >= self._recycle
        if conn is not None and (stale or not conn.open or _has_data(conn)):
            self._drop()  # closed by the server while idle, or due: never send on it
            conn = None
        if conn is None:
            fairy = self._engine.raw_connection()  # a fresh, pinged connection
            fairy.detach()  # ours now: the pool opens another in its place when it needs one
            conn = fairy.dbapi_connection
            conn.autocommit(True)
            self._conn, self._born = conn, time.monotonic()
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and conn.open:
            conn.close()


def _has_data(conn: Any) -> bool:
    """Whether an idle connection has bytes waiting (the server's goodbye or EOF): nothing
    else may arrive on a MySQL connection with no command in flight."""
    sock = getattr(conn, "_sock", None)  # PyMySQL's socket; it has no public accessor
    if sock is None:
        return True
    if not hasattr(select, "poll"):  # Windows: select() (its socket limit is no file limit)
        return bool(select.select([sock], [], [], 0)[0])
    poller = select.poll()  # not select(): a busy process's descriptors pass FD_SETSIZE
    poller.register(sock, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))

