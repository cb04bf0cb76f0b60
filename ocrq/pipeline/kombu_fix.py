"""A worker must survive its Redis broker restarting.

kombu 5.7 with Celery 5.7: when a worker's broker connection is lost, the
consumer first collects the connection (which sets the transport's ``client``
to None) and then closes it. Closing the channel restores its unacknowledged
messages over a new client built from ``transport.client``: an AttributeError,
which is not one of the connection errors the close ignores, and the worker's
main process exits with "Unrecoverable error" (a two-second Redis restart
killed the CPU worker of the fault suite, tests/faults/test_redis_blink.py).

:func:`install` makes the Redis channel keep the connection parameters it was
built with, so the close still reaches the broker when it is back, and raises
a connection error (ignored by the close; the messages stay in kombu's unacked
set until the visibility timeout restores them) when there is nothing to use.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

_SAVED = ("_ocrq_connparams", "_ocrq_connparams_async")


def install() -> None:
    """Patch kombu's Redis channel once per process (idempotent)."""
    channel = kombu_redis.Channel
    if getattr(channel, "_ocrq_fixed", False):
        return
    original = channel._connparams

    def _connparams(self: Any, asynchronous: bool = False) -> dict[str, Any]:
        saved = _SAVED[1 if asynchronous else 0]
        if getattr(self.connection, "client", None) is None:  # collected: use what we had
            params = self.__dict__.get(saved)
            if params is None:
                raise RedisConnectionError("broker connection closed")
            return dict(params)
        params = original(self, asynchronous)
        self.__dict__[saved] = dict(params)
        return dict(params)

    channel._connparams = _connparams
    channel._ocrq_fixed = True
