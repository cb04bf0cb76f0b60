"""Celery's threads pool, plus the per-process init the prefork pool gives its children.

The GPU worker runs several tasks at once in ONE process so their recognition
batches can share a forward pass (``ocrq.models.runtimes.batching``); threads,
not processes, because each process would hold its own copy of the models on
the GPU and batches of different processes can never meet.

Celery sends ``worker_process_init`` only from prefork children (and the solo
pool); the pipeline preloads the models and the cluster agent starts from that
signal, so this pool sends it once, from the main process, when the pool
starts — after ``celeryd_after_setup`` (desired model versions read) and
before the consumer takes its first message.

Time limits: Celery's threads pool does not enforce ``task_time_limit`` (a
thread cannot be killed). This pool arms a timer for every stage task instead:
a task still running when its hard limit passes fails its job (code
``time_limit``, webhook sent), so the client is not left waiting; the thread
itself runs on until the forward pass returns, and what it produces then is
dropped (the job has ended).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import signals
from celery.concurrency.thread import TaskPool

from ocrq.pipeline import canvas

log = logging.getLogger(__name__)
STAGES = {canvas.T_ROTATE, canvas.T_DETECT, canvas.T_RECOGNIZE, canvas.T_REORDER}
# Keyed by task id and thread: a redelivered copy of a task may run beside a hung one.
_timers: dict[tuple[str, int], threading.Timer] = {}
_lock = threading.Lock()


def _job_id(args: Any) -> str | None:
    """The job a stage task works for: its ctx/ref argument carries ``job_id``."""
    for a in args or ():
        if isinstance(a, dict) and "job_id" in a:
            return str(a["job_id"])
    return None


def _expired(app: Any, task_name: str, job_id: str, limit: float) -> None:
    from ocrq.pipeline.tasks import fail_job

    stage = task_name.rsplit(".", 1)[-1]
    log.error("job %s: %s still running after its %s s time limit; failing the job", job_id,
              stage, limit)
    fail_job(app, job_id, {"code": "time_limit", "task": stage,
                           "message": f"the {stage} step ran past its {limit:g} s time limit"})


def _arm(task_id: str | None = None, task: Any = None, args: Any = None, **_: Any) -> None:
    limit = task.app.conf.task_time_limit if task is not None else None
    job_id = _job_id(args)
    if not task_id or not limit or job_id is None or task.name not in STAGES:
        return
    timer = threading.Timer(float(limit), _expired, (task.app, task.name, job_id, limit))
    timer.daemon = True
    with _lock:
        _timers[(task_id, threading.get_ident())] = timer
    timer.start()


def _disarm(task_id: str | None = None, **_: Any) -> None:
    with _lock:
        timer = _timers.pop((task_id or "", threading.get_ident()), None)
    if timer is not None:
        timer.cancel()


class ThreadPool(TaskPool):
    def on_start(self) -> None:
        super().on_start()
        # Sent in the thread that runs the task, before and after it.
        signals.task_prerun.connect(_arm, weak=False)
        signals.task_postrun.connect(_disarm, weak=False)
        initargs: Any = self.options.get("initargs") or (None, None)
        signals.worker_process_init.send(sender=initargs[1])
