"""Celery's threads pool, plus the per-process init the prefork pool gives its children.

The GPU worker runs several tasks at once in ONE process so their recognition
batches can share a forward pass (``ocrq.models.runtimes.batching``); threads,
not processes, because each process would hold its own copy of the models on
the GPU and batches of different processes can never meet.

Celery sends ``worker_process_init`` only from prefork children (and the solo
pool); the pipeline preloads the models and the cluster agent starts from that
signal (workers/lifecycle.py), so this pool sends it once, from the main
process, when the pool starts — after ``celeryd_after_setup`` (desired model
versions read) and before the consumer takes its first message.

Time limits: Celery's threads pool does not enforce ``task_time_limit`` (a
thread cannot be killed); workers/lifecycle.py arms a timer per stage task
instead when this pool runs.
"""

from __future__ import annotations

from typing import Any

from celery import signals
from celery.concurrency.thread import TaskPool


class ThreadPool(TaskPool):
    def on_start(self) -> None:
        super().on_start()
        initargs: Any = self.options.get("initargs") or (None, None)
        signals.worker_process_init.send(sender=initargs[1])
