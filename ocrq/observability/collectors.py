"""Metrics read at scrape time rather than counted.

:class:`ServiceCollector` (web process): messages waiting per queue (from the
broker), live consumers per queue and every model version's status (from the
heartbeat snapshot), and the webhook backlog (from the database). Reads are
cached for ``cache_s``: several Prometheus servers scraping every few seconds
cost the broker and the database one read per interval.

:class:`GpuCollector` (a worker's main process): GPU memory and utilisation of
each of the worker's processes, through NVML (:mod:`ocrq.models.gpu`); on a
machine without a GPU only ``ocrq_gpu_available 0``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import timedelta

import pynvml  # nvidia-ml-py; NVML itself is initialised (once) by ocrq.models.gpu
from kombu import Connection
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis import Redis
from sqlalchemy import func, or_, select

from ocrq.cluster.heartbeat import read_snapshot
from ocrq.cluster.snapshot import Snapshot
from ocrq.models import gpu
from ocrq.models.states import Status
from ocrq.storage.db import Database
from ocrq.storage.models import TERMINAL, Delivery, Job, utcnow

log = logging.getLogger(__name__)

# A webhook is given up after at most ~8 attempts with a backoff capped at 10 min; a
# job finished longer ago than this whose webhook never ended is out of the backlog
# (and the query stays on recent rows however long the retention).
BACKLOG_WINDOW = timedelta(days=1)


def queue_lengths(broker_url: str, queues: Sequence[str]) -> dict[str, int]:
    """Messages waiting on each queue (not those a worker holds unacknowledged).

    A passive declare answers on every kombu transport; on Redis it is the sum of
    the queue's list lengths (one list per priority step). A queue the broker does
    not know has no messages.
    """
    out: dict[str, int] = {}
    with Connection(broker_url, connect_timeout=2) as conn:
        for queue in queues:
            channel = conn.channel()  # a failed passive declare closes an AMQP channel
            try:
                out[queue] = int(channel.queue_declare(queue, passive=True).message_count)
            except conn.channel_errors:
                out[queue] = 0
            finally:
                channel.close()
    return out


def webhook_backlog(db: Database) -> int:
    """Finished jobs with a callback_url whose webhook has not ended yet (neither
    delivered nor given up): queued, being sent or waiting for a retry."""
    ended = (select(Delivery.id)
             .where(Delivery.job_id == Job.id,
                    or_(Delivery.ok.is_(True), Delivery.error.like("%giving up%"),
                        Delivery.error.like("worker_lost%")))
             .exists())
    query = (select(func.count()).select_from(Job)
             .where(Job.callback_url.is_not(None), Job.callback_url != "",
                    Job.status.in_([str(t) for t in TERMINAL]),
                    Job.finished_at >= utcnow() - BACKLOG_WINDOW, ~ended))
    with db.session() as s:
        return int(s.scalar(query) or 0)


class ServiceCollector(Collector):
    def __init__(self, queues: Sequence[str], broker_url: str, store: Redis, db: Database,
                 cache_s: float = 5.0) -> None:
        self.queues = list(queues)
        self.broker_url, self.store, self.db, self.cache_s = broker_url, store, db, cache_s
        self._lock = threading.Lock()
        self._cached: list[Metric] = []
        self._at = float("-inf")

    def collect(self) -> Iterator[Metric]:
        with self._lock:  # one reader at a time; the others get its answer
            if time.monotonic() - self._at >= self.cache_s:
                self._cached = self._read()
                self._at = time.monotonic()
            return iter(list(self._cached))

    def _read(self) -> list[Metric]:
        up = GaugeMetricFamily("ocrq_metrics_source_up",
                               "Whether /metrics could read this source at the last scrape",
                               labels=["source"])
        out: list[Metric] = []
        for source, read in (("broker", self._queues), ("heartbeats", self._heartbeats),
                             ("database", self._webhooks)):
            try:
                out += read()
                up.add_metric([source], 1)
            except Exception as exc:  # one unreachable source must not hide the others
                log.warning("metrics: %s unreadable: %s", source, exc)
                up.add_metric([source], 0)
        return [*out, up]

    def _queues(self) -> list[Metric]:
        family = GaugeMetricFamily("ocrq_queue_messages",
                                   "Messages waiting on a broker queue", labels=["queue"])
        for queue, n in queue_lengths(self.broker_url, self.queues).items():
            family.add_metric([queue], n)
        return [family]

    def _heartbeats(self) -> list[Metric]:
        return heartbeat_families(read_snapshot(self.store), self.queues)

    def _webhooks(self) -> list[Metric]:
        family = GaugeMetricFamily("ocrq_webhook_backlog",
                                   "Finished jobs whose webhook is not delivered or given "
                                   "up yet")
        family.add_metric([], webhook_backlog(self.db))
        return [family]


def heartbeat_families(snapshot: Snapshot, queues: Sequence[str]) -> list[Metric]:
    """Live consumers per queue and each model version's status, from heartbeats."""
    consumers = GaugeMetricFamily("ocrq_queue_consumers",
                                  "Live workers consuming a queue (heartbeats)",
                                  labels=["queue"])
    named = dict.fromkeys(queues)
    named.update(dict.fromkeys(q for w in snapshot.workers for q in w.queues))
    for queue in named:
        consumers.add_metric([queue], len(snapshot.consumers(queue)))
    # One series per possible status, 1 on the current one (a Prometheus state set):
    # a version leaving FAILED reads 0 at once instead of its series just vanishing.
    status = GaugeMetricFamily(
        "ocrq_model_status", "Each model version's status in each live worker "
        "process: 1 for its current status, 0 for the others",
        labels=["worker", "pid", "model", "version", "active", "status"])
    for w in snapshot.workers:
        for p in w.processes:
            for m in p.models:
                labels = [w.name, str(p.pid), str(m["name"]), str(m["version"]),
                          "true" if m.get("active") else "false"]
                for s in Status:
                    status.add_metric([*labels, s.value], 1 if m.get("status") == s.value else 0)
    return [consumers, status]


class GpuCollector(Collector):
    """GPU memory and utilisation of the processes ``pids()`` names, per device."""

    def __init__(self, pids: Callable[[], Iterable[int]]) -> None:
        self.pids = pids

    def collect(self) -> Iterator[Metric]:
        available = GaugeMetricFamily("ocrq_gpu_available",
                                      "Whether NVML answers on this worker's machine")
        reason = gpu.nvml_unavailable_reason()
        available.add_metric([], 0 if reason else 1)
        yield available
        if reason:
            return
        pids = list(self.pids())
        used = GaugeMetricFamily("ocrq_gpu_memory_used_bytes",
                                 "GPU memory used by a worker process", labels=["pid", "gpu"])
        total = GaugeMetricFamily("ocrq_gpu_memory_total_bytes", "GPU memory of a device",
                                  labels=["gpu"])
        totals: dict[int, int] = {}
        users: dict[int, set[int]] = {}  # device -> the pids with a CUDA context on it
        for pid in pids:
            for g in gpu.process_memory(pid).gpus:
                totals[g.index] = g.total_bytes
                users.setdefault(g.index, set()).add(pid)
                if g.used_bytes is not None:
                    used.add_metric([str(pid), str(g.index)], g.used_bytes)
        for index, n in sorted(totals.items()):
            total.add_metric([str(index)], n)
        yield used
        yield total
        yield _utilisation(users)


def _utilisation(users: dict[int, set[int]]) -> Metric:
    """SM utilisation per process over NVML's last sample buffer (a few seconds)."""
    family = GaugeMetricFamily("ocrq_gpu_utilization_ratio",
                               "Share of a device's SM time a worker process used recently",
                               labels=["pid", "gpu"])
    for index, pids in sorted(users.items()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        try:
            samples = pynvml.nvmlDeviceGetProcessUtilization(handle, 0)
        except pynvml.NVMLError:  # NOT_FOUND: no process used this device lately
            samples = []
        latest: dict[int, tuple[int, int]] = {}
        for s in samples:
            if s.pid in pids and s.timeStamp >= latest.get(s.pid, (-1, 0))[0]:
                latest[s.pid] = (s.timeStamp, s.smUtil)
        for pid in pids:
            family.add_metric([str(pid), str(index)], latest.get(pid, (0, 0))[1] / 100.0)
    return family
