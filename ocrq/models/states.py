"""What the registry hands out and reports: loaded versions and their load status.

A :class:`LoadedModel` is immutable: a stage call holds a reference to one for
its whole duration, so swapping the active version never changes the model
under a running call. A :class:`VersionState` is the registry's mutable record
of one version (loading, ready, failed, unloading), as ``states()`` and the
cluster snapshot report it.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

from ocrq.models.repository import Manifest
from ocrq.models.runtimes import Runtime


class Status(enum.StrEnum):
    LOADING = "LOADING"
    READY = "READY"
    FAILED = "FAILED"
    UNLOADING = "UNLOADING"


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: int
    manifest: Manifest
    runtime: Runtime
    loaded_at: float = field(default_factory=time.time)
    # Stage helpers cache derived data here (e.g. the decoded charset).
    extras: dict[str, object] = field(default_factory=dict, compare=False)


@dataclass
class VersionState:
    name: str
    version: int
    status: Status
    reason: str = ""
    device: str = ""
    backend: str = ""
    since: float = field(default_factory=time.time)
    active: bool = False  # the global active version of ``name``
    bids: tuple[str, ...] = ()  # bids pinned to this version (canaries)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name, "version": self.version, "status": str(self.status),
            "reason": self.reason, "device": self.device, "backend": self.backend,
            "since": self.since, "active": self.active, "bids": list(self.bids),
        }
