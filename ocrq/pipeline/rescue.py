"""Messages stranded on a queue nobody consumes any more are moved or failed.

Routing at intake only protects new jobs. When every GPU worker dies, the
steps already waiting on the ``gpu`` queue would wait for a GPU worker to
come back; the CPU workers' node agents move them to the ``cpu`` queue (the
same tasks run there), or — when the job's plan forbids CPU for that step —
fail the job at once with ``no_live_worker``.

This works on the Redis broker's lists (kombu's layout: one list per queue
and priority, LPUSH by producers, BRPOP by consumers). A message is first
moved atomically into a per-node holding list, so it is never in two places
and never lost if the node dies mid-way (the holding list is returned to the
source queue on the next pass).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ocrq.cluster.snapshot import Snapshot
from ocrq.pipeline.messages import job_id_of

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger(__name__)

PRIORITY_SEP = "\x06\x16"  # kombu's separator for the per-priority lists
PRIORITIES = (0, 3, 6, 9)  # kombu's default priority steps

# (task name, job id) -> True: move to the fallback queue; False: fail the job.
Decide = Callable[[str, "str | None"], bool]
Fail = Callable[[str, str], None]  # (job id, message)


@dataclass
class RescueReport:
    source: str
    target: str
    moved: int = 0
    failed_jobs: list[str] = field(default_factory=list)


def stranded(snapshot: Snapshot, fallbacks: dict[str, str]) -> list[tuple[str, str]]:
    """(source, target) pairs: nobody consumes source (drained counts), someone target."""
    return [(src, dst) for src, dst in fallbacks.items()
            if not snapshot.consumers(src, drained=True) and snapshot.consumers(dst)]


def _key(queue: str, priority: int) -> str:
    return f"{queue}{PRIORITY_SEP}{priority}" if priority else queue


def job_of(message: dict[str, Any]) -> str | None:
    """The job id of a stage task's message (Celery protocol 2, JSON body)."""
    try:
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
    except (KeyError, ValueError, TypeError, IndexError):
        return None
    return job_id_of(args) if isinstance(args, list) else None


def rescue(broker: Redis, source: str, target: str, holding: str, decide: Decide,
           fail: Fail, limit: int = 500) -> RescueReport:
    report = RescueReport(source, target)
    # Leftovers of a pass that died half-way go back where they came from.
    while broker.lmove(holding, source, "RIGHT", "RIGHT") is not None:
        pass
    for priority in PRIORITIES:
        src, dst = _key(source, priority), _key(target, priority)
        while report.moved + len(report.failed_jobs) < limit:
            raw = broker.lmove(src, holding, "RIGHT", "LEFT")  # oldest first
            if raw is None:
                break
            message = json.loads(raw)
            task = str(message.get("headers", {}).get("task", ""))
            job_id = job_of(message)
            if job_id is None or decide(task, job_id):  # not a job's step: always movable
                message.setdefault("properties", {}).setdefault("delivery_info", {})[
                    "routing_key"] = target  # a later redelivery goes to the live queue too
                pipe = broker.pipeline()
                pipe.lpush(dst, json.dumps(message))
                pipe.lrem(holding, 1, raw)
                pipe.execute()
                report.moved += 1
            else:
                fail(job_id, f"no live worker consumes {source!r} and the plan forbids "
                             f"running {task} on {target!r}")
                report.failed_jobs.append(job_id)
                broker.lrem(holding, 1, raw)
    if report.moved or report.failed_jobs:
        log.warning("queue %r has no live consumer: moved %d message(s) to %r, failed %d job(s)",
                    source, report.moved, target, len(report.failed_jobs))
    return report
