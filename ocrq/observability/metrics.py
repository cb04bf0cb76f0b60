"""The metrics ocrq counts itself, and the functions that count them.

Names follow the Prometheus conventions: an ``ocrq_`` prefix, base units
(seconds), ``_total`` on counters. The metric objects are made on first use,
not at import: a worker first switches prometheus_client to its multiprocess
mode (:mod:`ocrq.observability.worker`), and a value made before that would
live in one process's memory only, out of reach of the main process's /metrics.

Counting never fails a job: an error here is logged and dropped.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram

from ocrq.storage import jobs as store
from ocrq.storage.cache import StatusCache
from ocrq.storage.db import Database

log = logging.getLogger(__name__)

# Seconds: a step takes from a few ms (a small receipt's reorder) to minutes (a
# 5000x7000 scan on a busy CPU; the task time limit is 300 s by default).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                   60.0, 120.0, 300.0)
# Lines per recognition call: OCRQ_RECOGNIZE_BATCH_LINES is 64 by default.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# Engine steps timed from their typed results (``ms`` and ``models``).
ENGINE_STEPS = {"step_rotate": "rotate", "step_detect": "detect",
                "step_recognize": "recognize"}


@dataclass(frozen=True)
class Metrics:
    jobs: Counter
    stage_seconds: Histogram
    step_seconds: Histogram
    batch_lines: Histogram
    tasks_in_progress: Gauge
    webhook_attempts: Counter
    stage_cpu: Counter
    stage_gpu: Counter


_lock = threading.Lock()
_made: list[Metrics] = []


def metrics() -> Metrics:
    """This process's metric objects (made, and registered, once)."""
    if _made:
        return _made[0]
    with _lock:
        if not _made:
            _made.append(_make())
    return _made[0]


def _make() -> Metrics:
    return Metrics(
        jobs=Counter("ocrq_jobs", "Jobs that reached a terminal status",
                     ["bid", "tid", "status"]),
        stage_seconds=Histogram(
            "ocrq_stage_duration_seconds",
            "Wall time of a stage task on a worker (task start to end: image load, "
            "decode, engine step, bookkeeping)", ["task", "device"],
            buckets=LATENCY_BUCKETS),
        step_seconds=Histogram(
            "ocrq_step_duration_seconds",
            "Engine step time as the engine reports it (timings_ms), by the model "
            "versions it ran", ["step", "versions", "device"], buckets=LATENCY_BUCKETS),
        batch_lines=Histogram("ocrq_recognize_batch_lines",
                              "Lines recognised per recognition call", ["device"],
                              buckets=BATCH_BUCKETS),
        # livesum: a process that exits takes its running tasks out of the sum.
        tasks_in_progress=Gauge("ocrq_tasks_in_progress", "Stage tasks running now",
                                ["task"], multiprocess_mode="livesum"),
        webhook_attempts=Counter("ocrq_webhook_attempts",
                                 "Webhook delivery attempts by outcome "
                                 "(delivered, failed, gave_up)", ["outcome"]),
        # Cost per page (issue 15): what each step spent, in the process that ran it.
        stage_cpu=Counter("ocrq_stage_cpu_seconds",
                          "CPU seconds of the process running an engine step, during the step "
                          "(ocrq/models/runtimes/cost.py)", ["stage", "device"]),
        stage_gpu=Counter("ocrq_stage_gpu_seconds",
                          "Seconds an engine step spent in forward passes on a GPU",
                          ["stage", "device"]),
    )


# --- jobs ---------------------------------------------------------------------------------
class JobStore(Protocol):
    """Where a job's bid and tid are read (pipeline.state.Services has both)."""

    cache: StatusCache
    db: Database


def job_finished(services: JobStore, job_id: str, status: str) -> None:
    """Count a job that just reached ``status`` (called once, by work.finish)."""
    try:
        bid, tid = _bid_tid(services, job_id)
        metrics().jobs.labels(bid=bid, tid=tid, status=str(status)).inc()
    except Exception:  # a metric must never fail a job
        log.warning("job %s: not counted in ocrq_jobs_total", job_id, exc_info=True)


def _bid_tid(services: JobStore, job_id: str) -> tuple[str, str]:
    # Two fields of the cached hash, not the whole entry (it holds the result document).
    raw = services.cache.redis.hmget(services.cache.key(job_id), "bid", "tid")
    if raw[0] is not None:
        return str(json.loads(raw[0])), "" if raw[1] is None else str(json.loads(raw[1]))
    job = store.get_job(services.db, job_id)  # the cache entry expired: the row has them
    return ("", "") if job is None else (str(job.bid), str(job.tid or ""))


# --- engine steps -------------------------------------------------------------------------
def instrument_engine(engine: Any, device: str) -> None:
    """Time ``engine``'s steps from the results they return (their ``ms`` and
    ``models``), on the instance: the pipeline's tasks and ``Engine.run`` both call
    these methods, and nothing changes for engines of other processes."""
    if getattr(engine, "_ocrq_metrics", False):
        return
    for attr, step in ENGINE_STEPS.items():
        setattr(engine, attr, _timed(getattr(engine, attr), step, device))
    # Reorder has no step result to time; its page carries its cost.
    engine.step_reorder = _timed(engine.step_reorder, "reorder", device)
    engine._ocrq_metrics = True


def _timed(fn: Callable[..., Any], step: str, device: str) -> Callable[..., Any]:
    m = metrics()

    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        result = fn(*args, **kwargs)
        try:
            observe_step(m, step, device, result)
        except Exception:  # a metric must never fail a step
            log.debug("step %s not observed", step, exc_info=True)
        return result

    return timed


def observe_step(m: Metrics, step: str, device: str, result: Any) -> None:
    _observe_cost(m, step, device, result)
    if not hasattr(result, "ms"):  # a page (step_reorder): its cost only
        return
    versions = ",".join(f"{k}:{v}" for k, v in sorted(result.models.items()))
    m.step_seconds.labels(step=step, versions=versions, device=device).observe(
        result.ms / 1000.0)
    if step == "recognize":
        m.batch_lines.labels(device=device).observe(len(result.texts))


def _observe_cost(m: Metrics, step: str, device: str, result: Any) -> None:
    cost = getattr(result, "cost", None)
    if isinstance(cost, dict):  # a page's: every step's; count the one that ran here
        cost = cost.get(step) or {}
    else:
        cost = cost.to_dict() if cost is not None else {}
    # Both counted, 0 too: the series exist once a step ran (a CPU worker's gpu is 0).
    m.stage_cpu.labels(stage=step, device=device).inc(float(cost.get("cpu_s", 0.0)))
    m.stage_gpu.labels(stage=step, device=device).inc(float(cost.get("gpu_s", 0.0)))


# --- webhooks -----------------------------------------------------------------------------
def webhook_outcome(db: Database, job_id: str, attempt: int) -> None:
    """Count how attempt ``attempt`` of the job's webhook ended, from its recorded row."""
    rows = [d for d in store.deliveries(db, job_id) if d.attempt == attempt]
    if not rows:
        return  # nothing sent (no callback, job purged)
    last = rows[-1]
    error = last.error or ""
    outcome = ("delivered" if last.ok else
               "gave_up" if "giving up" in error or error.startswith("worker_lost") else
               "failed")
    metrics().webhook_attempts.labels(outcome=outcome).inc()
