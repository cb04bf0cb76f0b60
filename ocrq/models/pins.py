"""Model versions pinned for the code running in this context (a task of one bid).

A ContextVar, not an attribute: threads and tasks of other bids never see the
pins. :meth:`ModelRegistry.get <ocrq.models.registry.ModelRegistry.get>` reads
them; the registry's ``using``/``for_bid``/``pin_bid`` set them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar, Token

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
