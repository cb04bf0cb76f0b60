"""Retries of what a broker or database blink breaks, inside a task; give-backs
while a backend is down.

Redis restarting (about two seconds with AOF), the broker's connection being
re-established or MariaDB restarting make calls fail with connection errors
that succeed moments later. A stage task that let them through would fail its
job (``internal_error``) for a blink; :func:`retry_io` runs the step again
with a backoff, up to a cap, and only then lets the error through.

A backend down for longer (the GPU worker's tensor server killed and in its
restart backoff: 30 s in a soak run, past a step's 30 s soft limit) is not
waited for inside the step: the step raises
:class:`~ocrq.errors.BackendUnavailable` after a short wait and the task gives
its message back to the queue with a countdown (:func:`give_back`). A
give-back is not a lost delivery: the start counter it took is returned
(unless the backend died holding this step's request, as under a poison
page), so a job is never failed ``worker_lost`` for waiting. The give-backs of
one step are capped in number and in time from the first; past either, its job
fails with the backend's code (``tensor_server_down``), and while it waits the
job's cache entry says so (``progress.waiting`` in the API).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeout
from sqlalchemy.exc import DBAPIError

from ocrq.errors import BackendUnavailable
from ocrq.pipeline.state import Services
from ocrq.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_FOR_S = 60.0  # a restart of Redis or MariaDB is over in seconds; an outage is not
FIRST_DELAY_S, MAX_DELAY_S = 0.25, 4.0


def transient(exc: BaseException) -> bool:
    """A connection-level failure of Redis, the broker or the database."""
    if isinstance(exc, RedisConnectionError | RedisTimeout | BrokerError):
        return True
    # SQLAlchemy wraps the driver's errors; only connection losses are worth a retry
    # (a constraint violation or a syntax error would fail again).
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated or _lost(exc))


def _lost(exc: DBAPIError) -> bool:
    code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
    # MySQL/MariaDB client errors: 2002/2003 can't connect, 2006 gone away,
    # 2013 lost during query, 1927 connection killed (server shutdown), 1053 shutting down.
    return code in (2002, 2003, 2006, 2013, 1927, 1053)


def retry_io(fn: Callable[[], T], what: str, retry_for_s: float = RETRY_FOR_S) -> T:
    """``fn()``; again after a growing delay while it fails with a transient error,
    for at most ``retry_for_s`` seconds; then its error is raised."""
    deadline = time.monotonic() + retry_for_s
    delay = FIRST_DELAY_S
    while True:
        try:
            return fn()
        except Exception as exc:
            if not transient(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning("%s: %s; retrying in %.2f s", what, exc, delay)
            time.sleep(delay)
            delay = min(MAX_DELAY_S, delay * 2)


# --- give-backs: the backend is down --------------------------------------------------
def give_back_delay(settings: Settings, attempt: int, waited_s: float) -> float | None:
    """Seconds until give-back number ``attempt`` runs again (``waited_s`` after the
    first); None: past the cap or the deadline. The last try is at the deadline."""
    if attempt > settings.giveback_attempts or waited_s >= settings.giveback_deadline_s:
        return None
    delay = min(settings.giveback_backoff_max_s,
                settings.giveback_backoff_s * 2 ** min(attempt - 1, 30))
    return round(min(delay, settings.giveback_deadline_s - waited_s), 3)


def _key(task_id: str) -> str:
    return f"ocrq:giveback:{task_id}"


def give_back(state: Services, task_id: str, job_id: str, stage: str,
              exc: BackendUnavailable, retries: int) -> float | dict[str, Any]:
    """A step's backend is unavailable: the countdown to send its message again with,
    or (past the cap or the deadline) the error to fail its job with.

    ``retries``: the give-backs of this message so far (Celery's count). When its
    first began is kept in Redis by task id, for as long as a give-back may wait.
    """
    s, now = state.settings, time.time()
    pipe = state.redis.pipeline()
    pipe.set(_key(task_id), now, nx=True,
             ex=int(s.giveback_deadline_s + s.giveback_backoff_max_s + s.visibility_timeout))
    pipe.get(_key(task_id))
    since = float(pipe.execute()[1] or now)
    attempt, waited = retries + 1, max(0.0, now - since)
    delay = give_back_delay(s, attempt, waited)
    if delay is None:
        state.redis.delete(_key(task_id))
        log.error("job %s: %s gave up after %d tries over %.0f s: %s", job_id, stage,
                  attempt, waited, exc)
        return {"code": exc.code, "task": stage, "attempts": attempt,
                "waited_s": round(waited, 1),
                "message": f"the {stage} step could not run: {exc.message}; it was tried "
                           f"{attempt} times over {waited:.0f} s (at most "
                           f"{s.giveback_attempts} tries, {s.giveback_deadline_s:g} s) "
                           "and not tried again"}
    if not exc.during_call:  # not a lost delivery: its start is not counted
        _uncount(state, task_id)
    state.cache.update(job_id, waiting={
        "reason": exc.code, "task": stage, "attempt": attempt, "since": _iso(since),
        "next_try_at": _iso(now + delay)})
    log.warning("job %s: %s given back (try %d, %.0f s since the first): %s; again in "
                "%.1f s", job_id, stage, attempt, waited, exc, delay)
    return delay


def _uncount(state: Services, task_id: str) -> None:
    """Take back the start this give-back's run counted (work.redelivery_error)."""
    key = state.cache.delivery_key(task_id)
    pipe = state.redis.pipeline()
    pipe.decr(key)
    pipe.expire(key, state.settings.job_deadline + state.settings.visibility_timeout)
    pipe.execute()


def back_again(state: Services, task_id: str, job_id: str) -> None:
    """A step given back before ran through: its job waits no longer."""
    state.redis.delete(_key(task_id))
    state.cache.update(job_id, waiting=None)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")
