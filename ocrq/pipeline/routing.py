"""Routing: which queue each step of a job goes to, decided on the live snapshot.

A step prefers a hardware class (``gpu``/``cpu``). When no live worker
consumes that class's queue, a GPU step moves to the CPU queue (every model
runs on CPU too) unless its plan step says ``options: {cpu_fallback: false}``;
when nothing can take it, :class:`NoLiveWorker` is raised at once so the job
fails fast instead of waiting on a queue nobody reads.

An empty snapshot (no worker at all: cold start, scale from zero, Redis
unreachable) keeps the preferred queue, where the job waits for the first
worker; once any worker is live, a step only goes where someone consumes.

One :class:`Router` per process, owned by ``Services`` (it shares its Redis
client); it reads the snapshot at most once per ``ttl_s``.
"""

from __future__ import annotations

import logging
import threading
import time

from redis import Redis
from redis.exceptions import RedisError

from ocrq.cluster.heartbeat import read_snapshot
from ocrq.cluster.snapshot import Snapshot
from ocrq.errors import OcrqError
from ocrq.plans import Plan, Step
from ocrq.settings import Settings

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


class Router:
    def __init__(self, settings: Settings, redis: Redis, ttl_s: float = 1.0) -> None:
        self.settings = settings
        self.redis = redis
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._at = 0.0

    def snapshot(self) -> Snapshot:
        """The live snapshot, re-read from Redis at most once per ``ttl_s``."""
        with self._lock:
            if self._snapshot is None or time.monotonic() - self._at > self.ttl_s:
                self._snapshot = read_snapshot(self.redis)
                self._at = time.monotonic()
            return self._snapshot

    def queue_for(self, step: Step) -> str:
        static = self.settings.queue_gpu if step.hardware == "gpu" else self.settings.queue_cpu
        try:
            snapshot = self.snapshot()
        except RedisError as exc:
            log.warning("live snapshot unavailable (%s); routing %s to %r", exc, step.name,
                        static)
            return static
        if not any(w.queues or w.drained for w in snapshot.workers):
            return static
        fallback = bool(step.options.get("cpu_fallback", True))
        return choose_queue(snapshot, self.settings, step.hardware, cpu_fallback=fallback,
                            step=step.name)

    def queues(self, plan: Plan) -> dict[str, str]:
        """Queue of every step of a plan, resolved once at intake."""
        return {s.name: self.queue_for(s) for s in plan.steps}
