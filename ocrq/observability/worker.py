"""A worker's metrics: multiprocess files, task timings, /metrics from its main process.

With ``OCRQ_METRICS_PORT`` set, :func:`install` (called by workers/lifecycle.py
before the worker starts) does, in the main process:

1. empties the worker's multiprocess directory and switches prometheus_client
   to its multiprocess mode: every pool process (prefork children, forked after
   this) writes its values to its own files there;
2. connects ``task_prerun``/``task_postrun``: each stage task's wall time, the
   tasks running, the engine's step timings (its results carry ``ms`` and
   ``models``) and batch sizes, each webhook attempt's outcome;
3. on ``worker_ready``, serves ``/metrics`` on the port: the sum over the
   directory's files (live and exited processes alike, as counters must) plus
   the GPU memory and utilisation of the worker's processes;
4. ``worker_process_shutdown``: a child leaving takes its live gauges with it
   (``mark_process_dead``); a child killed outright is swept at the next scrape.

Port 0: nothing is connected and nothing is counted beyond the process itself.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil
from celery import signals
from prometheus_client import CollectorRegistry, start_http_server, values
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from ocrq.names import STAGE_TASKS, Task
from ocrq.observability import metrics as m
from ocrq.observability.collectors import GpuCollector
from ocrq.settings import Settings
from ocrq.storage.db import Database

log = logging.getLogger(__name__)
_LIVE_FILE = re.compile(r"gauge_live\w*?_(\d+)\.db$")


class WorkerLike(Protocol):
    """What this module needs of the pipeline's per-process WorkerState."""

    db: Database

    @property
    def engine(self) -> Any: ...


@dataclass
class _State:
    device: str = "cpu"
    get_state: Callable[[], WorkerLike] | None = None
    port: int = 0
    host: str = ""
    starts: dict[tuple[str, int], float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_s = _State()


def install(settings: Settings, get_state: Callable[[], WorkerLike]) -> None:
    """Wire this worker's metrics (nothing when ``settings.metrics_port`` is 0)."""
    if settings.metrics_port <= 0:
        return
    use_multiprocess_dir(settings.metrics_dir)
    _s.device, _s.get_state = settings.device, get_state
    _s.port, _s.host = settings.metrics_port, settings.metrics_host
    signals.task_prerun.connect(_prerun, weak=False)
    signals.task_postrun.connect(_postrun, weak=False)
    signals.worker_ready.connect(_ready, weak=False)
    signals.worker_process_shutdown.connect(_process_shutdown, weak=False)


def use_multiprocess_dir(path: Path | None) -> Path:
    """Empty (or make) ``path`` and count into it from now on, here and in children."""
    directory = path or Path(tempfile.mkdtemp(prefix="ocrq-metrics-"))
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):  # a previous run's values are not this run's
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    # prometheus_client chose its value class when it was imported, before the
    # directory was known: choose again. The metric objects are made after this
    # (observability.metrics makes them on first use), so all of them use files.
    values.ValueClass = values.get_value_class()
    return directory


def registry(pids: Callable[[], list[int]]) -> CollectorRegistry:
    """What the main process serves: the directory's sum and the GPU figures."""
    reg = CollectorRegistry()
    reg.register(_DeadProcessSweep())  # before the sum: collectors run in this order
    MultiProcessCollector(reg)
    reg.register(GpuCollector(pids))
    return reg


def _worker_pids() -> list[int]:
    me = psutil.Process()
    return [me.pid, *(c.pid for c in me.children(recursive=True))]


# --- signals ------------------------------------------------------------------------------
def _prerun(task_id: str, task: Any = None, **_: Any) -> None:
    name = getattr(task, "name", "")
    if name not in STAGE_TASKS and name != Task.WEBHOOK:
        return
    if name in STAGE_TASKS and _s.get_state is not None:
        # Here rather than at process init: every pool (prefork, threads, solo) runs this.
        m.instrument_engine(_s.get_state().engine, _s.device)
    with _s.lock:
        _s.starts[(task_id, threading.get_ident())] = time.perf_counter()
    m.metrics().tasks_in_progress.labels(task=name).inc()


def _postrun(task_id: str, task: Any = None, args: Any = None, **_: Any) -> None:
    name = getattr(task, "name", "")
    with _s.lock:
        t0 = _s.starts.pop((task_id, threading.get_ident()), None)
    if t0 is None:
        return
    metrics = m.metrics()
    metrics.tasks_in_progress.labels(task=name).dec()
    if name in STAGE_TASKS:
        metrics.stage_seconds.labels(task=name, device=_s.device).observe(
            time.perf_counter() - t0)
    elif _s.get_state is not None and args and len(args) >= 2:  # webhook (job_id, attempt)
        try:
            m.webhook_outcome(_s.get_state().db, str(args[0]), int(args[1]))
        except Exception:  # a metric must never fail a delivery
            log.warning("webhook outcome not counted", exc_info=True)


def _ready(**_: Any) -> None:
    try:
        start_http_server(_s.port, addr=_s.host, registry=registry(_worker_pids))
        log.info("metrics on http://%s:%d/metrics", _s.host, _s.port)
    except OSError as exc:  # port taken: the worker still serves jobs
        log.error("metrics: cannot listen on %s:%d: %s", _s.host, _s.port, exc)


def _process_shutdown(**_: Any) -> None:
    mark_process_dead(os.getpid())


class _DeadProcessSweep(Collector):
    """Drops the live gauges of pool processes that died without a shutdown signal
    (killed: out of memory, time limit), so the tasks they ran stop counting."""

    def collect(self) -> Iterator[Metric]:
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
        pids = {int(g.group(1)) for f in Path(directory).glob("gauge_live*.db")
                if (g := _LIVE_FILE.search(f.name))} if directory else set()
        for pid in pids:
            if not psutil.pid_exists(pid):
                mark_process_dead(pid, directory)
        return iter(())
