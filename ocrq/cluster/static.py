"""The static snapshot: the operator-written expected layout, and its drift.

```yaml
groups:
  gpu:                     # worker group (heartbeat "group")
    min_workers: 1         # live worker nodes expected at least (default 1)
    queues: [gpu]          # queues each worker of the group consumes
    models: {std: 1, str: 2, dir: 1}   # versions each worker process serves
  cpu:
    queues: [cpu]
    models: {rot: 1}
```

:func:`diff` is pure: expected layout + live snapshot in, drift rows out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ocrq.cluster.snapshot import Snapshot
from ocrq.errors import OcrqError


class LayoutError(OcrqError):
    code = "invalid_layout"


@dataclass(frozen=True)
class GroupLayout:
    name: str
    queues: tuple[str, ...] = ()
    models: Mapping[str, int] = field(default_factory=dict)
    min_workers: int = 1


@dataclass(frozen=True)
class Layout:
    groups: Mapping[str, GroupLayout]

    @classmethod
    def from_dict(cls, data: Any) -> Layout:
        if not isinstance(data, Mapping) or not isinstance(data.get("groups"), Mapping):
            raise LayoutError("layout must be a mapping with a 'groups' mapping")
        groups = {}
        for name, g in data["groups"].items():
            g = g or {}
            if not isinstance(g, Mapping):
                raise LayoutError(f"group {name!r} must be a mapping")
            unknown = set(g) - {"queues", "models", "min_workers"}
            if unknown:
                raise LayoutError(f"group {name!r}: unknown keys {sorted(unknown)}; "
                                  "known: min_workers, models, queues")
            try:
                models = {str(k): int(v) for k, v in (g.get("models") or {}).items()}
                groups[str(name)] = GroupLayout(
                    name=str(name), queues=tuple(str(q) for q in g.get("queues") or ()),
                    models=models, min_workers=int(g.get("min_workers", 1)),
                )
            except (TypeError, ValueError, AttributeError) as exc:
                raise LayoutError(f"group {name!r}: {exc}") from exc
        return cls(groups)

    @classmethod
    def load(cls, path: Path) -> Layout:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise LayoutError(f"cannot read layout {path}: {exc}") from exc
        return cls.from_dict(data)


@dataclass(frozen=True, order=True)
class Drift:
    group: str
    worker: str  # "" for group-level drift
    kind: str  # workers | queue-missing | queue-extra | model-missing | model-version
    #            | model-failed | unexpected-group
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"group": self.group, "worker": self.worker, "kind": self.kind,
                "detail": self.detail}


def diff(expected: Layout, live: Snapshot) -> list[Drift]:
    """Every way the live cluster differs from the expected layout (empty = none)."""
    drift: list[Drift] = []
    for group in expected.groups.values():
        workers = [w for w in live.workers if w.group == group.name]
        if len(workers) < group.min_workers:
            drift.append(Drift(group.name, "", "workers",
                               f"expected at least {group.min_workers} live worker(s), "
                               f"found {len(workers)}"))
        for w in workers:
            for q in sorted(set(group.queues) - set(w.queues)):
                why = " (draining)" if w.draining else ""
                drift.append(Drift(group.name, w.name, "queue-missing",
                                   f"not consuming {q!r}{why}"))
            for q in sorted(set(w.queues) - set(group.queues)):
                drift.append(Drift(group.name, w.name, "queue-extra", f"also consumes {q!r}"))
            for proc in w.processes:
                where = f"{w.name} pid {proc.pid}"
                drift += _model_drift(group, where, proc.models)
            if not w.processes and group.models:
                drift.append(Drift(group.name, w.name, "model-missing",
                                   "no worker process reported its models"))
    for w in live.workers:
        if w.group not in expected.groups:
            drift.append(Drift(w.group or "?", w.name, "unexpected-group",
                               f"group {w.group!r} is not in the layout"))
    return sorted(drift)


def _model_drift(group: GroupLayout, where: str,
                 models: tuple[dict[str, Any], ...]) -> list[Drift]:
    out = []
    for name, version in sorted(group.models.items()):
        rows = [m for m in models if m["name"] == name]
        active = [m for m in rows if m.get("active") and m.get("status") == "READY"]
        failed = [m for m in rows if int(m["version"]) == version and m.get("status") == "FAILED"]
        if failed:
            out.append(Drift(group.name, where, "model-failed",
                             f"{name} v{version} FAILED: {failed[0].get('reason', '')}"))
        if not active:
            out.append(Drift(group.name, where, "model-missing",
                             f"{name} v{version} expected, no READY version loaded"))
        elif int(active[0]["version"]) != version:
            out.append(Drift(group.name, where, "model-version",
                             f"{name} expected v{version}, serving v{active[0]['version']}"))
    return out
