"""Watching a model activation reach every live worker process.

Each process applies a change in the background and heartbeats at once, so
the snapshot shows per process whether the wanted version is serving, has
FAILED (with the reason), or is still pending.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ocrq.cluster.heartbeat import read_snapshot
from ocrq.cluster.snapshot import Snapshot

if TYPE_CHECKING:
    from redis import Redis


@dataclass
class Rollout:
    model: str
    version: int
    bid: str | None
    serving: list[str] = field(default_factory=list)  # "worker pid N"
    failed: dict[str, str] = field(default_factory=dict)  # process -> reason
    pending: list[str] = field(default_factory=list)
    lazy: list[str] = field(default_factory=list)  # never loaded the model: loads it on use

    @property
    def done(self) -> bool:
        return not self.pending

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "bid": self.bid,
                "done": self.done, "serving": self.serving, "failed": self.failed,
                "pending": self.pending, "lazy": self.lazy}


def progress(snapshot: Snapshot, model: str, version: int, bid: str | None = None) -> Rollout:
    """Where an activation stands in one snapshot (pure)."""
    out = Rollout(model, version, bid)
    for worker in snapshot.workers:
        for proc in worker.processes:
            where = f"{worker.name} pid {proc.pid}"
            rows = [m for m in proc.models if m["name"] == model]
            if not rows:
                out.lazy.append(where)
                continue
            mine = next((m for m in rows if int(m["version"]) == version), None)
            if mine is not None and mine["status"] == "FAILED":
                out.failed[where] = str(mine.get("reason", ""))
            elif mine is not None and mine["status"] == "READY" and (
                    bid in mine.get("bids", ()) if bid else mine.get("active")):
                out.serving.append(where)
            else:
                out.pending.append(where)
    return out


def wait(redis: Redis, model: str, version: int, bid: str | None = None,
         timeout_s: float = 60.0, poll_s: float = 0.2) -> Rollout:
    """Poll heartbeats until no live process is pending (or the timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = progress(read_snapshot(redis), model, version, bid)
        if state.done or time.monotonic() >= deadline:
            return state
        time.sleep(poll_s)
