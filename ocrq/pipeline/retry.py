"""Retries of what a broker or database blink breaks, inside a task.

Redis restarting (about two seconds with AOF), the broker's connection being
re-established or MariaDB restarting make calls fail with connection errors
that succeed moments later. A stage task that let them through would fail its
job (``internal_error``) for a blink; :func:`retry_io` runs the step again
with a backoff, up to a cap, and only then lets the error through.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeout
from sqlalchemy.exc import DBAPIError

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
