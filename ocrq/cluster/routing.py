"""Routing on the live snapshot: a step goes to a queue somebody consumes.

A step prefers a hardware class (``gpu``/``cpu``). When no live worker
consumes that class's queue, a GPU step moves to the CPU queue (every model
runs on CPU too) unless its plan step says ``options: {cpu_fallback: false}``;
when nothing can take it, :class:`NoLiveWorker` is raised at once so the job
fails fast instead of waiting on a queue nobody reads.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from ocrq.cluster.heartbeat import read_snapshot
from ocrq.cluster.snapshot import Snapshot
from ocrq.errors import OcrqError
from ocrq.settings import Settings

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger(__name__)


class NoLiveWorker(OcrqError):
    """No live worker consumes any queue this step may run on."""

    code = "no_live_worker"


def choose_queue(snapshot: Snapshot, settings: Settings, hardware: str, *,
                 cpu_fallback: bool = True, step: str = "") -> str:
    """The queue for a step preferring ``hardware`` (pure: snapshot in, name out)."""
    preferred = settings.queue_gpu if hardware == "gpu" else settings.queue_cpu
    candidates = [preferred]
    if hardware == "gpu" and cpu_fallback:
        candidates.append(settings.queue_cpu)
    for queue in candidates:
        # A drained worker comes back on resume: its queues still count, so a
        # hot update of the only worker queues new jobs instead of refusing them.
        if snapshot.consumers(queue, drained=True):
            if queue != preferred:
                log.warning("no live worker on queue %r: step %s goes to %r",
                            preferred, step or "?", queue)
            return queue
    why = "" if len(candidates) > 1 or hardware != "gpu" else " (the plan forbids CPU fallback)"
    raise NoLiveWorker(
        f"no live worker consumes {' or '.join(repr(q) for q in candidates)} "
        f"for step {step or '?'}{why}",
        step=step, hardware=hardware, queues=candidates,
    )


class LiveRoutes:
    """Snapshot reader with a short cache: one Redis read per ``ttl_s`` per process."""

    def __init__(self, settings: Settings, redis: Redis, ttl_s: float = 1.0) -> None:
        self.settings = settings
        self.redis = redis
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._at = 0.0

    def snapshot(self) -> Snapshot:
        with self._lock:
            if self._snapshot is None or time.monotonic() - self._at > self.ttl_s:
                self._snapshot = read_snapshot(self.redis)
                self._at = time.monotonic()
            return self._snapshot



_routes: dict[str, LiveRoutes] = {}
_routes_lock = threading.Lock()


def live_queue(settings: Settings, hardware: str, options: dict[str, Any] | None = None,
               step: str = "") -> str:
    """The routing hook the pipeline's Router calls for every step.

    An empty snapshot (no worker at all: cold start, scale from zero, Redis
    unreachable) keeps the preferred queue, where the job waits for the first
    worker; once any worker is live, a step only goes where someone consumes.
    """
    from redis import Redis
    from redis.exceptions import RedisError

    static = settings.queue_gpu if hardware == "gpu" else settings.queue_cpu
    with _routes_lock:
        routes = _routes.get(settings.redis_url)
        if routes is None:
            routes = _routes[settings.redis_url] = LiveRoutes(
                settings, Redis.from_url(settings.redis_url))
    try:
        snapshot = routes.snapshot()
    except RedisError as exc:
        log.warning("live snapshot unavailable (%s); routing %s to %r", exc, step, static)
        return static
    if not any(w.queues or w.drained for w in snapshot.workers):
        return static
    fallback = bool((options or {}).get("cpu_fallback", True))
    return choose_queue(snapshot, settings, hardware, cpu_fallback=fallback, step=step)
