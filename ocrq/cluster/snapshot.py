"""The dynamic snapshot: what live workers announce in their heartbeats.

Plain data, no I/O: :mod:`ocrq.cluster.heartbeat` reads and writes the
records, this module turns them into the routing table and the status rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ocrq.models.gpu import ProcessMemory, format_memory


@dataclass(frozen=True)
class ProcessView:
    """One worker process (a prefork child, or the worker itself with solo/threads)."""

    pid: int
    device: str
    models: tuple[dict[str, Any], ...]  # VersionState.to_dict() rows
    memory: ProcessMemory | None
    ts: float
    # Cross-job batching counters per loaded version ("str v1" -> calls, passes, rows...).
    batching: dict[str, dict[str, Any]] = field(default_factory=dict)

    def ready(self) -> dict[str, int]:
        """Active READY versions by model name."""
        return {m["name"]: int(m["version"]) for m in self.models
                if m.get("active") and m.get("status") == "READY"}


@dataclass(frozen=True)
class WorkerView:
    name: str  # Celery node name, e.g. gpu1@host
    group: str  # worker group of the static layout (gpu, cpu, ...)
    queues: tuple[str, ...]  # queues it consumes now (empty while drained)
    pid: int
    draining: bool
    ts: float
    processes: tuple[ProcessView, ...] = ()
    drained: tuple[str, ...] = ()  # queues taken away by a drain (back on resume)

    def ready_models(self) -> dict[str, int]:
        merged: dict[str, int] = {}
        for proc in self.processes:
            merged.update(proc.ready())
        return merged


@dataclass(frozen=True)
class Snapshot:
    workers: tuple[WorkerView, ...]
    taken_at: float = field(default_factory=time.time)

    def consumers(self, queue: str, *, drained: bool = False) -> list[WorkerView]:
        """Live workers consuming ``queue`` (with ``drained``: or resuming it later)."""
        return [w for w in self.workers
                if queue in w.queues or (drained and queue in w.drained)]

    def routing_table(self) -> dict[str, dict[str, Any]]:
        """queue -> the live workers consuming it and the models READY behind it."""
        table: dict[str, dict[str, Any]] = {}
        for worker in self.workers:
            for queue in worker.queues:
                row = table.setdefault(queue, {"workers": [], "models": {}})
                row["workers"].append(worker.name)
                for name, version in worker.ready_models().items():
                    row["models"].setdefault(name, set()).add(version)
        for row in table.values():
            row["workers"].sort()
            row["models"] = {n: sorted(v) for n, v in sorted(row["models"].items())}
        return dict(sorted(table.items()))

    def status_rows(self) -> list[dict[str, str]]:
        """Rows of ``| worker | model | version | status | device | memory |``."""
        rows = []
        for worker in sorted(self.workers, key=lambda w: w.name):
            for proc in sorted(worker.processes, key=lambda p: p.pid):
                memory = format_memory(proc.memory) if proc.memory else "n/a"
                if not proc.models:
                    rows.append({"worker": f"{worker.name} pid {proc.pid}", "model": "-",
                                 "version": "-", "status": "no model loaded",
                                 "device": proc.device, "memory": memory})
                for m in proc.models:
                    status = str(m["status"])
                    if m.get("reason"):
                        status += f" ({m['reason']})"
                    version = str(m["version"])
                    if m.get("active"):
                        version += " (active)"
                    if m.get("bids"):
                        version += " (bids: " + ",".join(m["bids"]) + ")"
                    rows.append({"worker": f"{worker.name} pid {proc.pid}", "model": m["name"],
                                 "version": version, "status": status,
                                 "device": m.get("device") or proc.device, "memory": memory})
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "taken_at": self.taken_at,
            "workers": [
                {"name": w.name, "group": w.group, "queues": list(w.queues), "pid": w.pid,
                 "draining": w.draining, "drained": list(w.drained), "ts": w.ts,
                 "processes": [
                     {"pid": p.pid, "device": p.device, "models": list(p.models),
                      "memory": p.memory.to_dict() if p.memory else None, "ts": p.ts,
                      "batching": p.batching}
                     for p in w.processes]}
                for w in self.workers],
            "routing": self.routing_table(),
        }


def build(nodes: list[dict[str, Any]], procs: list[dict[str, Any]]) -> Snapshot:
    """Assemble a snapshot from raw heartbeat records (see heartbeat.py)."""
    by_worker: dict[str, list[ProcessView]] = {}
    for rec in procs:
        memory = ProcessMemory.from_dict(rec["memory"]) if rec.get("memory") else None
        by_worker.setdefault(rec["worker"], []).append(ProcessView(
            pid=int(rec["pid"]), device=str(rec.get("device", "")),
            models=tuple(rec.get("models", ())), memory=memory, ts=float(rec.get("ts", 0)),
            batching=dict(rec.get("batching") or {}),
        ))
    workers = tuple(
        WorkerView(
            name=n["name"], group=str(n.get("group") or ""), queues=tuple(n.get("queues", ())),
            pid=int(n.get("pid", 0)), draining=bool(n.get("draining", False)),
            ts=float(n.get("ts", 0)), drained=tuple(n.get("drained", ())),
            processes=tuple(sorted(by_worker.get(n["name"], ()), key=lambda p: p.pid)),
        )
        for n in nodes
    )
    # Processes whose node record is gone (main process stuck or just restarted)
    # still show in the status table; without queues they are never routed to.
    named = {n["name"] for n in nodes}
    workers += tuple(
        WorkerView(name=w, group="", queues=(), pid=0, draining=False, ts=0.0,
                   processes=tuple(sorted(procs_, key=lambda p: p.pid)))
        for w, procs_ in by_worker.items() if w not in named
    )
    return Snapshot(tuple(sorted(workers, key=lambda w: w.name)))


def render_table(rows: list[dict[str, str]], columns: tuple[str, ...]) -> str:
    """A Markdown-style table, the shape operators paste into tickets."""
    widths = {c: max([len(c)] + [len(r.get(c, "")) for r in rows]) for c in columns}
    def line(values: dict[str, str]) -> str:
        return "| " + " | ".join(values.get(c, "").ljust(widths[c]) for c in columns) + " |"
    out = [line({c: c for c in columns}),
           "|" + "|".join("-" * (widths[c] + 2) for c in columns) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out)
