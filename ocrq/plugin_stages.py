"""Running a plan's plug-in stages on a page that has been read.

The same function serves ``ocrq run`` (in-process, after ``Engine.run``) and
the distributed pipeline (one ``ocrq.stage`` task per stage), so both give the
same document. A stage gets the upright page, the result document so far, its
plan options, the loaded versions of the model kinds it declared, and OCR of
any crop through the same engine; its answer goes under its result key.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ocrq.engine import Engine
from ocrq.models.builtin import catalog
from ocrq.plugins import PluginError, StageInput, StageSpec
from ocrq.stages.rotate import rotate_image


@dataclass(frozen=True)
class StageOutcome:
    key: str  # the result field it fills
    output: dict[str, Any]
    models: dict[str, int]  # kind -> version it used
    ms: float


def stage_spec(name: str) -> StageSpec:
    stages = catalog().stages
    if name not in stages:
        raise PluginError(f"unknown stage {name!r}; known: {', '.join(sorted(stages)) or '-'}",
                          known=sorted(stages))
    return stages[name]


def run_stage(engine: Engine, name: str, image: np.ndarray, page: Mapping[str, Any],
              options: Mapping[str, Any] | None = None) -> StageOutcome:
    """Run plug-in stage ``name`` on ``image`` (as submitted) read as ``page``."""
    spec = stage_spec(name)
    used: dict[str, int] = {}

    def model(kind: str) -> Any:
        if kind not in spec.models:
            raise PluginError(f"stage {name!r} asked for model {kind!r}, which it does not "
                              f"declare (it declares: {', '.join(spec.models) or '-'})")
        loaded = engine.registry.get(kind)
        used[kind] = loaded.version
        return loaded

    def read(crop: np.ndarray) -> dict[str, Any]:
        return engine.run(np.ascontiguousarray(crop), name=f"{name}-crop").to_dict()

    t0 = time.perf_counter()
    upright = rotate_image(image, int(page.get("rotation", 0)))
    output = spec.run(StageInput(upright, page, dict(options or {}), model, read))
    if not isinstance(output, dict):
        raise PluginError(f"stage {name!r} returned {type(output).__name__}, not a dict")
    return StageOutcome(spec.key, output, used, round((time.perf_counter() - t0) * 1000, 2))


def apply(page: dict[str, Any], outcome: StageOutcome, stage: str) -> dict[str, Any]:
    """The result document with a stage's outcome merged in (a new dict)."""
    return {**page, outcome.key: outcome.output,
            "models": {**page.get("models", {}), **outcome.models},
            "timings_ms": {**page.get("timings_ms", {}), stage: outcome.ms}}


def run_stages(engine: Engine, image: np.ndarray, page: dict[str, Any],
               steps: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """In-process: every (stage, options) in order on one read page."""
    for name, options in steps:
        page = apply(page, run_stage(engine, name, image, page, options), name)
    return page
