"""Worker process wiring: every Celery signal an ocrq worker acts on, in one place.

:func:`install` connects the receivers, in this order, before the worker starts:

1. ``workers/common.run_worker`` has configured logging (OCRQ_LOG_FORMAT) and called
   ``state.configure(settings)`` (main process); ``setup_logging`` has a receiver, so
   Celery leaves that logging alone (in prefork children too).
2. ``celeryd_after_setup`` (main process, before the pool forks): remember the node
   name; read the desired model versions from the database over a short-lived
   connection, so every pool process's registry starts on them.
3. ``worker_process_init`` (each prefork child; the threads pool sends it once,
   from the main process, workers/pool.py):
   a. ``state.init_process()``: fresh DB/Redis handles after fork, models preloaded;
   b. the :class:`ProcessAgent`: applies desired versions, follows their broadcasts,
      heartbeats the process's models and memory.
4. ``worker_ready`` (main process): the :class:`NodeAgent` heartbeat (queues consumed,
   draining); after each beat, on a Redis broker, the rescue of messages stranded on
   a queue nobody consumes, then the sweeper's tick (ocrq/pipeline/sweeper.py: overdue
   and abandoned jobs, the retention purge; one worker per interval); with a
   non-forking pool that never sent 3, the process agent.
5. ``task_prerun`` / ``task_postrun``: serve the versions pinned for the job's bid
   (canaries); on the threads pool also a timer per stage task that fails its job
   at the hard time limit (a thread cannot be killed; prefork's limit kills the child);
   the job's log context (job id, bid, tid, stage) around the task, and one line with
   the task's time when it ends (ocrq/observability/logs.py).
6. ``worker_process_shutdown`` / ``worker_shutdown``: stop the agents.

Receivers are connected with ``weak=False`` in exactly this order, so the order
no longer depends on which module Celery happens to import first.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextvars import Token
from dataclasses import dataclass, field
from typing import Any

from celery import Celery, signals
from redis import Redis

from ocrq.cluster.agent import NodeAgent, ProcessAgent
from ocrq.cluster.heartbeat import read_snapshot
from ocrq.models.control import ModelControl
from ocrq.models.repository import ModelRepository
from ocrq.names import STAGE_TASKS, Task
from ocrq.observability import logs
from ocrq.observability import worker as worker_metrics
from ocrq.pipeline import state, sweeper, work
from ocrq.pipeline.messages import bid_of, job_id_of
from ocrq.pipeline.rescue import rescue, stranded
from ocrq.pipeline.tasks import fail_job
from ocrq.settings import Settings
from ocrq.storage import Database

log = logging.getLogger(__name__)


@dataclass
class _Worker:
    """This process's agents and per-task bookkeeping."""

    node_name: str = ""
    node: NodeAgent | None = None
    process: ProcessAgent | None = None
    threads_pool: bool = False
    # Keyed by task id and thread, like the timers: a redelivered copy of a task may
    # run beside a hung one on the threads pool.
    pins: dict[tuple[str, int], Token[Any]] = field(default_factory=dict)
    # Keyed by task id and thread: a redelivered copy of a task may run beside a hung one.
    timers: dict[tuple[str, int], threading.Timer] = field(default_factory=dict)
    # Keyed like the pins: the task's log context and when it started.
    logs: dict[tuple[str, int], tuple[Token[Any], float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_w = _Worker()


def install(threads_pool: bool = False) -> None:
    """Connect every receiver, in the documented order (idempotent per process)."""
    if getattr(install, "done", False):
        return
    install.done = True  # type: ignore[attr-defined]
    _w.threads_pool = threads_pool
    signals.setup_logging.connect(_keep_logging, weak=False)
    signals.celeryd_after_setup.connect(_after_setup, weak=False)
    signals.worker_process_init.connect(_process_init, weak=False)
    signals.worker_ready.connect(_ready, weak=False)
    signals.task_prerun.connect(_prerun, weak=False)
    signals.task_postrun.connect(_postrun, weak=False)
    signals.worker_process_shutdown.connect(_process_shutdown, weak=False)
    signals.worker_shutdown.connect(_shutdown, weak=False)
    worker_metrics.install(state.settings(), state.get_state)  # after the above: engine first


# --- 1. logging ----------------------------------------------------------------------
def _keep_logging(**_: Any) -> None:
    """A receiver at all tells Celery not to replace the handlers run_worker set up."""


# --- 2. before the fork -------------------------------------------------------------
def _after_setup(sender: str, **_: Any) -> None:
    _w.node_name = str(sender)
    settings = state.settings()
    db = Database(settings.database_url)  # short-lived: no socket may cross the fork
    try:
        control = ModelControl(db, Redis.from_url(settings.redis_url),
                               ModelRepository(settings.model_root))
        state.set_boot_desired(control.desired())
    except Exception as exc:  # the process agents re-read it after the fork anyway
        log.warning("desired model versions not read before fork: %s", exc)
    finally:
        db.dispose()


# --- 3. each pool process -------------------------------------------------------------
def _process_init(**_: Any) -> None:
    worker = state.init_process()
    try:
        _start_process_agent(worker)
    except Exception:  # never keep a worker process from serving because of telemetry
        log.exception("cluster agent did not start in pid %s", os.getpid())


def _start_process_agent(worker: state.WorkerState) -> None:
    registry = worker.engine.registry
    control = ModelControl(worker.db, worker.redis, registry.repository)
    # Its own connection: the subscriber blocks on it, task code must not wait behind.
    agent = ProcessAgent(worker.settings, registry, _w.node_name or f"worker@{os.getpid()}",
                         Redis.from_url(worker.settings.redis_url), control.desired)
    agent.boot()
    agent.start()
    _w.process = agent


# --- 4. worker ready ------------------------------------------------------------------
def _ready(sender: Any, **_: Any) -> None:
    consumer = sender
    settings = state.settings()
    name = getattr(consumer, "hostname", "") or _w.node_name

    def queues() -> list[str]:
        task_consumer = getattr(consumer, "task_consumer", None)
        return [q.name for q in task_consumer.queues] if task_consumer is not None else []

    rescuer = None
    if settings.broker_url.startswith(("redis://", "rediss://", "unix://")):
        rescuer = _rescuer(consumer.app, settings, name, queues)
    _w.node = NodeAgent(settings, name, Redis.from_url(settings.redis_url), queues,
                        group=settings.worker_group,
                        after_beat=sweeper.after_beat(consumer.app, rescuer, name))
    _w.node.beat()  # routable from this moment, not one interval later
    _w.node.start()
    if "prefork" not in type(consumer.pool).__module__ and _w.process is None:
        _start_process_agent(state.get_state())  # solo pool: tasks run in this process


def _rescuer(app: Celery, settings: Settings, name: str, queues: Any) -> Any:
    """Each beat: take over messages stranded on a fallback source nobody consumes."""
    broker = Redis.from_url(settings.broker_url)
    fallbacks = {settings.queue_gpu: settings.queue_cpu}

    def decide(task: str, job_id: str | None) -> bool:
        worker = state.get_state()
        job = worker.cache.get(job_id) if job_id else None
        if not job:
            return True
        plan = worker.plans.resolve(job.get("bid"), job.get("tid"))
        step = plan.step(task.rsplit(".", 1)[-1])
        return step is None or bool(step.options.get("cpu_fallback", True))

    def fail(job_id: str, message: str) -> None:
        fail_job(app, job_id, {"code": "no_live_worker", "message": message})

    def run() -> None:
        mine = set(queues())
        for source, target in stranded(read_snapshot(state.get_state().redis), fallbacks):
            if target in mine:
                rescue(broker, source, target, f"ocrq:rescue:{name}", decide, fail)

    return run


# --- 5. around each task --------------------------------------------------------------
def _prerun(task_id: str, task: Any = None, args: Any = None, **_: Any) -> None:
    _w.logs[(task_id, threading.get_ident())] = (logs.bind(**_job_fields(task, args)),
                                                 time.perf_counter())
    if _w.process is not None and _w.process.registry.bid_pins():
        bid = bid_of(args)
        if bid:
            _w.pins[(task_id, threading.get_ident())] = _w.process.registry.pin_bid(bid)
    if _w.threads_pool:
        _arm_time_limit(task_id, task, args)


def _postrun(task_id: str, task: Any = None, state: str | None = None, **_: Any) -> None:
    bound = _w.logs.pop((task_id, threading.get_ident()), None)
    if bound is not None:
        ms = (time.perf_counter() - bound[1]) * 1000
        log.info("task %s %s in %.1f ms", getattr(task, "name", "?"), state, ms,
                 extra={"event": "task_done", "state": state, "duration_ms": round(ms, 2)})
        logs.reset(bound[0])
    token = _w.pins.pop((task_id, threading.get_ident()), None)
    if token is not None and _w.process is not None:
        _w.process.registry.unpin(token)
    if _w.threads_pool:
        with _w.lock:
            timer = _w.timers.pop((task_id or "", threading.get_ident()), None)
        if timer is not None:
            timer.cancel()


def _job_fields(task: Any, args: Any) -> dict[str, Any]:
    """The job a task works for, for its log lines: from its message, else (a
    recognition batch carries no tid) the job's cached status."""
    name = str(getattr(task, "name", ""))
    first = next(iter(args or ()), None)
    job_id = job_id_of(args) or (first if name == Task.WEBHOOK and isinstance(first, str)
                                 else None)
    if job_id is None:
        return {}
    msg = next((a for a in args if isinstance(a, dict) and "job_id" in a), {})
    stage, stages = name.rsplit(".", 1)[-1], list(msg.get("stages") or [])
    index = args[2] if name == Task.STAGE and len(args) > 2 else None  # (msg, doc, index)
    if isinstance(index, int) and 0 <= index < len(stages):
        stage = str(stages[index])  # the plug-in stage's own name
    fields = {"job_id": job_id, "bid": msg.get("bid"), "tid": msg.get("tid"), "stage": stage}
    if fields["tid"] is None or fields["bid"] is None:
        try:
            cached = state.get_state().cache.get(job_id) or {}
        except Exception:  # a log field is never worth failing a task over
            cached = {}
        fields.update({k: fields[k] or cached.get(k) for k in ("bid", "tid")})
    return fields


def _arm_time_limit(task_id: str | None, task: Any, args: Any) -> None:
    limit = task.app.conf.task_time_limit if task is not None else None
    job_id = job_id_of(args)
    if not task_id or not limit or job_id is None or task.name not in STAGE_TASKS:
        return
    timer = threading.Timer(float(limit), _time_limit_passed,
                            (task.app, task.name, job_id, float(limit)))
    timer.daemon = True
    with _w.lock:
        _w.timers[(task_id, threading.get_ident())] = timer
    timer.start()


def _time_limit_passed(app: Celery, task_name: str, job_id: str, limit: float) -> None:
    """The threads pool's hard limit: fail the job; the thread runs on, its output dropped."""
    log.error("job %s: %s still running after its %g s time limit; failing the job", job_id,
              task_name.rsplit(".", 1)[-1], limit)
    fail_job(app, job_id, work.time_limit_error(task_name, limit))


# --- 6. shutdown -------------------------------------------------------------------------
def _process_shutdown(**_: Any) -> None:
    if _w.process is not None:
        _w.process.stop()


def _shutdown(**_: Any) -> None:
    if _w.node is not None:
        _w.node.stop()
    if _w.process is not None and _w.process.pid == os.getpid():
        _w.process.stop()
