"""Background threads of a worker: heartbeats and desired-version updates.

:class:`ProcessAgent` runs in every process that holds a registry (prefork
children, or the worker itself with the solo/threads pool): at boot it reads
the desired versions from the database, then follows the Redis channel and
applies each change in the background — tasks never touch the database for
this. A slow periodic re-read covers broadcasts missed while disconnected.

:class:`NodeAgent` runs in the Celery main process and announces which queues
it consumes now. Neither imports Celery: the hook module passes callables.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ocrq.cluster import heartbeat
from ocrq.models.control import channel
from ocrq.models.gpu import process_memory
from ocrq.models.registry import Desired, ModelRegistry
from ocrq.models.runtimes.batching import BatchingRuntime
from ocrq.settings import Settings

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger(__name__)


class ProcessAgent:
    def __init__(self, settings: Settings, registry: ModelRegistry, worker: str,
                 redis: Redis, read_desired: Callable[[], Desired] | None) -> None:
        self.settings = settings
        self.registry = registry
        self.worker = worker
        self.redis = redis
        self.read_desired = read_desired
        self.pid = os.getpid()
        self.errors: dict[str, str] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def boot(self) -> None:
        """Apply the desired versions from the database (before the process serves)."""
        self._reconcile()

    def start(self) -> None:
        for target, name in ((self._beat_loop, "ocrq-heartbeat"),
                             (self._follow_loop, "ocrq-models")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        try:
            heartbeat.remove_proc(self.redis, self.worker, self.pid)
        except Exception as exc:  # shutting down: Redis may already be gone
            log.debug("heartbeat removal failed: %s", exc)

    def record(self) -> dict[str, Any]:
        return {
            "worker": self.worker, "pid": self.pid, "device": self.settings.device,
            "models": [s.to_dict() for s in self.registry.states()],
            "memory": process_memory().to_dict(), "errors": self.errors,
            "batching": batching_stats(self.registry),
        }

    def beat(self) -> None:
        heartbeat.write_proc(self.redis, self.record(), self.settings.heartbeat_ttl_s)

    def apply(self, desired: Desired) -> None:
        self.errors = self.registry.apply(desired)
        if self.errors:
            log.error("desired versions not applied: %s", self.errors)
        self.beat()  # operators see the new state now, not at the next tick

    def _reconcile(self) -> None:
        if self.read_desired is None:
            return
        try:
            self.apply(self.read_desired())
        except Exception as exc:  # database down: keep serving what is loaded
            log.warning("could not read desired model versions: %s", exc)

    def _beat_loop(self) -> None:
        interval = max(1.0, self.settings.heartbeat_ttl_s / 3)
        while not self._stop.is_set():
            try:
                self.beat()
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)
            self._stop.wait(interval)

    def _follow_loop(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(channel(self.redis))
                self._reconcile()  # anything published while we were not listening
                backoff = 1.0
                next_reconcile = time.monotonic() + self.settings.model_reconcile_s
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self.apply(Desired.from_dict(json.loads(message["data"])))
                    if time.monotonic() >= next_reconcile:
                        self._reconcile()
                        next_reconcile = time.monotonic() + self.settings.model_reconcile_s
            except Exception as exc:
                log.warning("model channel lost (%s); retrying in %.0fs", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
            finally:
                try:
                    pubsub.close()
                except Exception as exc:
                    log.debug("pubsub close failed: %s", exc)


class NodeAgent:
    """The worker node's own heartbeat: name, group, queues consumed, draining."""

    def __init__(self, settings: Settings, name: str, redis: Redis,
                 queues: Callable[[], list[str]], group: str = "",
                 after_beat: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.name = name
        self.redis = redis
        self.queues = queues
        self.group = group
        self.after_beat = after_beat  # e.g. moving messages stranded on a dead queue
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self) -> dict[str, Any]:
        queues = sorted(self.queues())
        saved = self.redis.get(drain_key(self.name))
        drained = sorted(json.loads(saved)) if saved else []
        return {"name": self.name, "group": self.group or (queues or drained or [""])[0],
                "queues": queues, "pid": os.getpid(), "draining": saved is not None,
                "drained": drained}

    def beat(self) -> None:
        heartbeat.write_node(self.redis, self.record(), self.settings.heartbeat_ttl_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="ocrq-node-heartbeat",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            heartbeat.remove_node(self.redis, self.name)
        except Exception as exc:
            log.debug("heartbeat removal failed: %s", exc)

    def _loop(self) -> None:
        interval = max(1.0, self.settings.heartbeat_ttl_s / 3)
        while not self._stop.is_set():
            try:
                self.beat()
                if self.after_beat is not None:
                    self.after_beat()
            except Exception as exc:
                log.warning("node heartbeat failed: %s", exc)
            self._stop.wait(interval)


def batching_stats(registry: ModelRegistry) -> dict[str, dict[str, int | float]]:
    """Counters of each loaded version whose calls are merged ("str v1" -> stats)."""
    return {f"{m.name} v{m.version}": m.runtime.stats() for m in registry.loaded()
            if isinstance(m.runtime, BatchingRuntime)}


def drain_key(name: str) -> str:
    return f"ocrq:drain:{name}"
