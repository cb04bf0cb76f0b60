"""Celery signal hooks that attach the cluster agents to a worker.

Loaded through the Celery app's ``include`` list after the task module, so
these receivers run after the pipeline's own ``worker_process_init`` (which
builds the process state and preloads the models):

- main process, ``celeryd_after_setup``: remember the node name (children
  inherit it by fork); ``worker_ready``: start the node heartbeat (queues
  consumed now, draining); with a non-forking pool also the process agent.
- each prefork child, ``worker_process_init``: read the desired versions from
  the database, apply them, then follow broadcasts and heartbeat its models.
- ``task_prerun``/``task_postrun``: serve the versions pinned for the job's
  bid (canaries); costs nothing while no canary exists.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery.signals import (
    celeryd_after_setup,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from ocrq.cluster.agent import NodeAgent, ProcessAgent

log = logging.getLogger(__name__)

_node_name = ""
_node: NodeAgent | None = None
_process: ProcessAgent | None = None
_pin_tokens: dict[str, Any] = {}


@celeryd_after_setup.connect
def _remember_name(sender: str, **_: Any) -> None:
    global _node_name
    _node_name = str(sender)
    _read_boot_desired()


def _read_boot_desired() -> None:
    """Before the pool forks: the children's registries start on the desired versions."""
    from ocrq.models.control import ModelControl
    from ocrq.models.registry import ModelRegistry
    from ocrq.models.repository import ModelRepository
    from ocrq.pipeline.state import get_state
    from ocrq.storage import Database

    settings = get_state().settings
    db = Database(settings.database_url)  # short-lived: no socket may cross the fork
    try:
        control = ModelControl(db, get_state().redis, ModelRepository(settings.model_root))
        ModelRegistry.boot_desired = control.desired()
    except Exception as exc:  # the agents re-read it after the fork anyway
        log.warning("desired model versions not read before fork: %s", exc)
    finally:
        db.engine.dispose()


def _start_process_agent() -> None:
    global _process
    from redis import Redis

    from ocrq.models.control import ModelControl
    from ocrq.pipeline.state import get_state

    state = get_state()
    registry = state.engine.registry
    control = ModelControl(state.db, state.redis, registry.repository)
    # Its own connection: the subscriber blocks on it, task code must not wait behind.
    agent = ProcessAgent(state.settings, registry, _node_name or f"worker@{os.getpid()}",
                         Redis.from_url(state.settings.redis_url), control.desired)
    agent.boot()
    agent.start()
    _process = agent


@worker_process_init.connect
def _process_init(**_: Any) -> None:
    try:
        _start_process_agent()
    except Exception:  # never keep a worker process from serving because of telemetry
        log.exception("cluster agent did not start in pid %s", os.getpid())


@worker_process_shutdown.connect
def _process_shutdown(**_: Any) -> None:
    if _process is not None:
        _process.stop()


@worker_ready.connect
def _ready(sender: Any, **_: Any) -> None:
    global _node
    from redis import Redis

    from ocrq.pipeline.state import get_state

    consumer = sender
    settings = get_state().settings
    name = getattr(consumer, "hostname", "") or _node_name

    def queues() -> list[str]:
        task_consumer = getattr(consumer, "task_consumer", None)
        return [q.name for q in task_consumer.queues] if task_consumer is not None else []

    rescuer = None
    if settings.broker_url.startswith(("redis://", "rediss://", "unix://")):
        rescuer = _rescuer(consumer.app, settings, name, queues)
    _node = NodeAgent(settings, name, Redis.from_url(settings.redis_url), queues,
                      group=settings.worker_group, after_beat=rescuer)
    _node.beat()  # routable from this moment, not one interval later
    _node.start()
    if "prefork" not in type(consumer.pool).__module__ and _process is None:
        _start_process_agent()  # solo/threads pool: tasks run in this process


def _rescuer(app: Any, settings: Any, name: str, queues: Any) -> Any:
    """Each beat: take over messages stranded on a fallback source nobody consumes."""
    from redis import Redis

    from ocrq.cluster.heartbeat import read_snapshot
    from ocrq.cluster.rescue import rescue, stranded
    from ocrq.pipeline.state import get_state

    broker = Redis.from_url(settings.broker_url)
    fallbacks = {settings.queue_gpu: settings.queue_cpu}

    def decide(task: str, job_id: str | None) -> bool:
        state = get_state()
        job = state.cache.get(job_id) if job_id else None
        if not job:
            return True
        step = state.plans.resolve(job.get("bid"), job.get("tid")).step(task.split(".")[-1])
        return step is None or bool(step.options.get("cpu_fallback", True))

    def fail(job_id: str, message: str) -> None:
        from ocrq.pipeline.tasks import fail_job

        fail_job(app, job_id, {"code": "no_live_worker", "message": message})

    def run() -> None:
        mine = set(queues())
        for source, target in stranded(read_snapshot(get_state().redis), fallbacks):
            if target in mine:
                rescue(broker, source, target, f"ocrq:rescue:{name}", decide, fail)

    return run


@worker_shutdown.connect
def _shutdown(**_: Any) -> None:
    if _node is not None:
        _node.stop()
    if _process is not None and _process.pid == os.getpid():
        _process.stop()


@task_prerun.connect
def _pin_bid(task_id: str, args: Any = (), **_: Any) -> None:
    if _process is None or not _process.registry.bid_pins():
        return
    bid = _bid_of(args)
    if bid:
        _pin_tokens[task_id] = _process.registry.pin_bid(bid)


@task_postrun.connect
def _unpin(task_id: str, **_: Any) -> None:
    token = _pin_tokens.pop(task_id, None)
    if token is not None and _process is not None:
        _process.registry.unpin(token)


def _bid_of(args: Any) -> str | None:
    """The bid of the job a stage task works on (from its context, else the status cache)."""
    from ocrq.pipeline.state import get_state

    for arg in args or ():
        if isinstance(arg, dict) and "job_id" in arg:
            if arg.get("bid"):
                return str(arg["bid"])
            cached = get_state().cache.get(arg["job_id"]) or {}
            return cached.get("bid")
    return None
