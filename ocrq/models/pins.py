"""Model versions pinned for the code running in this context (a task of one bid),
and the versions a process should serve (:class:`Desired`).

A ContextVar, not an attribute: threads and tasks of other bids never see the
pins. :meth:`ModelRegistry.get <ocrq.models.registry.ModelRegistry.get>` reads
them; the registry's ``using``/``for_bid``/``pin_bid`` set them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

Pins = Mapping[str, int]  # model name -> version

_PINS: ContextVar[Pins | None] = ContextVar("ocrq_model_pins", default=None)


def current_pins() -> Pins | None:
    return _PINS.get()


def pin_versions(versions: Pins | None) -> Token[Pins | None]:
    """Pin a copy of ``versions`` (none when empty) until :func:`unpin_versions`."""
    return _PINS.set(dict(versions) if versions else None)


def unpin_versions(token: Token[Pins | None]) -> None:
    _PINS.reset(token)


@contextlib.contextmanager
def pinned_versions(versions: Pins | None) -> Iterator[None]:
    token = pin_versions(versions)
    try:
        yield
    finally:
        unpin_versions(token)


@dataclass(frozen=True)
class Desired:
    """Which versions should serve: globally, and per bid (canaries)."""

    versions: Mapping[str, int] = field(default_factory=dict)
    bids: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {"versions": dict(self.versions),
                "bids": {b: dict(v) for b, v in self.bids.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Desired:
        versions = data.get("versions") or {}
        bids = data.get("bids") or {}
        assert isinstance(versions, Mapping) and isinstance(bids, Mapping)
        return cls(
            {str(k): int(v) for k, v in versions.items()},
            {str(b): {str(k): int(v) for k, v in pins.items()} for b, pins in bids.items()},
        )


class BidPins:
    """The registry's pin methods (a mixin of ModelRegistry, which holds the pins of
    each bid in ``_bid_pins`` under ``_lock``)."""

    _bid_pins: dict[str, dict[str, int]]
    _lock: Any  # threading.RLock

    def using(self, versions: Mapping[str, int] | None) -> contextlib.AbstractContextManager[None]:
        """Serve ``versions`` (name -> version) to ``get`` calls in this context."""
        return pinned_versions(versions)

    def pin_bid(self, bid: str | None) -> Token[Mapping[str, int] | None]:
        """Like :meth:`for_bid` for code that cannot use ``with`` (task signal hooks);
        undo with :meth:`unpin`."""
        return pin_versions(self._bid_pins.get(bid) if bid else None)

    @staticmethod
    def unpin(token: Token[Mapping[str, int] | None]) -> None:
        unpin_versions(token)

    def for_bid(self, bid: str | None) -> contextlib.AbstractContextManager[None]:
        """Context in which ``get`` returns the versions pinned for ``bid``, if any."""
        return self.using(self._bid_pins.get(bid) if bid else None)

    def bid_pins(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {b: dict(p) for b, p in self._bid_pins.items()}
