"""Cluster hot update: take a worker out of rotation and put it back, losing nothing.

Drain = cancel the worker's consumers (it stops taking new messages; they
stay on the broker for the other workers), then wait until its running and
prefetched tasks are done. Resume = add the same consumers back. The queues
a drain removed are kept in Redis so ``resume`` restores exactly those.

This is operations glue: it drives Celery's remote control, so it takes the
Celery app as an argument instead of importing one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ocrq.cluster.agent import drain_key
from ocrq.errors import OcrqError

if TYPE_CHECKING:
    from celery import Celery
    from redis import Redis


# How long drain and resume re-send a command the worker's queues do not show yet.
CONFIRM_S = 20.0


class WorkerNotFound(OcrqError):
    code = "worker_not_found"


@dataclass
class DrainReport:
    worker: str
    queues: list[str]
    waited_s: float = 0.0
    in_flight_at_start: int = 0
    left_in_flight: list[str] = field(default_factory=list)  # task ids still running at timeout

    @property
    def drained(self) -> bool:
        return not self.left_in_flight

    def to_dict(self) -> dict[str, Any]:
        return {"worker": self.worker, "queues": self.queues, "waited_s": self.waited_s,
                "in_flight_at_start": self.in_flight_at_start, "drained": self.drained,
                "left_in_flight": self.left_in_flight}


def _reply(replies: list[dict[str, Any]] | dict[str, Any] | None, worker: str) -> Any:
    if isinstance(replies, dict):
        return replies.get(worker)
    for item in replies or []:
        if worker in item:
            return item[worker]
    return None


def consumed_queues(app: Celery, worker: str, timeout: float = 2.0) -> list[str]:
    replies = app.control.inspect(destination=[worker], timeout=timeout).active_queues()
    queues = _reply(replies, worker)
    if queues is None:
        raise WorkerNotFound(f"worker {worker!r} did not answer (is the name right? "
                             "see `ocrq cluster show`)", worker=worker)
    return sorted(q["name"] for q in queues)


def in_flight(app: Celery, worker: str, timeout: float = 2.0) -> list[str]:
    """Ids of tasks the worker runs or holds prefetched (those would be lost on a kill)."""
    inspect = app.control.inspect(destination=[worker], timeout=timeout)
    ids: list[str] = []
    for replies in (inspect.active(), inspect.reserved()):
        ids += [t["id"] for t in _reply(replies, worker) or []]
    return ids


def drain(app: Celery, redis: Redis, worker: str, *, queues: list[str] | None = None,
          timeout_s: float = 300.0, poll_s: float = 0.5) -> DrainReport:
    current = consumed_queues(app, worker)
    saved = redis.get(drain_key(worker))
    remembered = json.loads(saved) if saved else []
    targets = sorted(set(queues or current) & set(current))
    # Remember before cancelling: a crash in between must not lose the list.
    redis.set(drain_key(worker), json.dumps(sorted(set(remembered) | set(targets))))
    _until(app, worker, targets, lambda q, now: q not in now,
           lambda q: app.control.cancel_consumer(q, destination=[worker], reply=True, timeout=5),
           "stop consuming")
    start = time.monotonic()
    report = DrainReport(worker, targets)
    pending = in_flight(app, worker)
    report.in_flight_at_start = len(pending)
    while pending and time.monotonic() - start < timeout_s:
        time.sleep(poll_s)
        pending = in_flight(app, worker)
    report.waited_s = round(time.monotonic() - start, 2)
    report.left_in_flight = pending
    return report


def resume(app: Celery, redis: Redis, worker: str, *,
           queues: list[str] | None = None, confirm_s: float = CONFIRM_S) -> list[str]:
    """Consume again the queues a drain removed (or ``queues``); returns them once the
    worker shows them, within ``confirm_s`` (else an error, the drain remembered)."""
    saved = redis.get(drain_key(worker))
    targets = sorted(queues or (json.loads(saved) if saved else []))
    if not targets:
        raise OcrqError(f"worker {worker!r} has no drained queues to resume; pass --queue")
    _until(app, worker, targets, lambda q, now: q in now,
           lambda q: app.control.add_consumer(q, destination=[worker], reply=True, timeout=5),
           "consume again", confirm_s)
    redis.delete(drain_key(worker))  # only once they are back: a failed resume can be rerun
    return targets


def _until(app: Celery, worker: str, targets: list[str], done: Callable[[str, list[str]], bool],
           send: Callable[[str], Any], what: str, confirm_s: float = CONFIRM_S) -> None:
    """Send ``send(queue)`` for each target until the worker's own list of queues shows
    every one ``done``, at most ``confirm_s`` seconds.

    Remote control goes over the broker's broadcast (Redis pub/sub): a command sent
    while the worker re-makes its subscription is lost, and one a paused or busy
    worker answers after the reply's timeout is late. So the worker's queues are asked
    after each round, a worker that does not answer is asked again (not taken for
    gone), and the commands still missing are re-sent (both are idempotent).
    """
    deadline = time.monotonic() + confirm_s
    todo = list(targets)
    while True:
        for queue in todo:
            send(queue)
        try:
            now: list[str] | None = consumed_queues(app, worker)
        except WorkerNotFound:
            now = None  # no answer within the inspect's timeout: ask again
        if now is not None:
            todo = [q for q in targets if not done(q, now)]
            if not todo:
                return
        if time.monotonic() >= deadline:
            left = ", ".join(todo)
            if now is None:
                raise WorkerNotFound(f"worker {worker!r} did not answer within {confirm_s:.0f}s "
                                     f"to {what} {left}; run the command again", worker=worker)
            raise OcrqError(f"worker {worker!r} did not {what} {left} within "
                            f"{confirm_s:.0f}s; run the command again")
