"""Group commit: the new job rows of concurrent submits share one INSERT and one COMMIT.

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
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

Row = dict[str, Any]
WAIT_S = 30.0  # the longest a queued row waits for its COMMIT


class CommitInDoubt(OperationalError):
    """The row's COMMIT did not answer in time, or was interrupted: the row may exist.
    A connection-level error (``connection_invalidated``): the intake answers 503."""

    def __init__(self, why: str) -> None:
        super().__init__("group commit", None, TimeoutError(why), connection_invalidated=True)


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
                raise CommitInDoubt(f"no turn to commit within {self.wait_s:g} s")
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
        with self._engine().begin() as conn:
            conn.execute(insert(self.table), rows)
        self.batches += 1
        self.rows += len(rows)

