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
from ocrq.models.runtimes.cost import NO_COST, Cost, Measure, page_cost
from ocrq.names import STEPS
from ocrq.plans import THEN, Plan, Plans, Step
from ocrq.plugins import PluginError, StageInput, StageSpec
from ocrq.stages.rotate import rotate_image


@dataclass(frozen=True)
class StageOutcome:
    key: str  # the result field it fills
    output: dict[str, Any]
    models: dict[str, int]  # kind -> version it used
    ms: float
    cost: Cost = NO_COST  # its CPU and GPU seconds (models/runtimes/cost.py)


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
    with Measure() as measured:
        upright = rotate_image(image, int(page.get("rotation", 0)))
        output = spec.run(StageInput(upright, page, dict(options or {}), model, read))
    if not isinstance(output, dict):
        raise PluginError(f"stage {name!r} returned {type(output).__name__}, not a dict")
    return StageOutcome(spec.key, output, used, round((time.perf_counter() - t0) * 1000, 2),
                        measured.cost)


def apply(page: dict[str, Any], outcome: StageOutcome, stage: str) -> dict[str, Any]:
    """The result document with a stage's outcome merged in (a new dict)."""
    steps = {k: Cost.from_dict(v) for k, v in (page.get("cost") or {}).items() if k != "total"}
    return {**page, outcome.key: outcome.output,
            "models": {**page.get("models", {}), **outcome.models},
            "timings_ms": {**page.get("timings_ms", {}), stage: outcome.ms},
            "cost": page_cost({**steps, stage: outcome.cost})}


def branch(plans: Plans, plan: Plan, name: str, options: Mapping[str, Any],
           output: Mapping[str, Any], done: Sequence[str]) -> tuple[dict[str, Any] | None,
                                                                   list[Step]]:
    """After stage ``name`` of ``plan``: the branch its result takes (``then``), and
    the chosen plan's plug-in steps that have not run (the page is read already,
    so its core steps are not repeated). (None, []) when the stage does not branch."""
    if not options.get(THEN):
        return None, []
    label = str(output.get("label", ""))
    chosen = plans.then(plan, Step(name, "cpu", dict(options)), label)
    if chosen is None:
        return {"after": name, "label": label, "tid": None, "stages": []}, []
    steps = [s for s in chosen.steps if s.name not in STEPS and s.name not in done]
    return {"after": name, "label": label, "tid": chosen.tid,
            "stages": [s.name for s in steps]}, steps


def with_branch(page: dict[str, Any], taken: dict[str, Any]) -> dict[str, Any]:
    return {**page, "branch": [*page.get("branch", []), taken]}


def step_of(plans: Plans, plan: Plan, page: Mapping[str, Any], name: str) -> Step | None:
    """Stage ``name``'s step: in the job's plan, else in a plan a branch chose."""
    for tid in [plan.tid, *(b["tid"] for b in page.get("branch", []) if b.get("tid"))]:
        step = plans.resolve(plan.bid, tid).step(name)
        if step is not None:
            return step
    return None


def run_stages(engine: Engine, image: np.ndarray, page: dict[str, Any],
               steps: Sequence[tuple[str, Mapping[str, Any]]],
               plans: Plans | None = None, plan: Plan | None = None) -> dict[str, Any]:
    """In-process: every (stage, options) in order on one read page; with the plan
    table and the job's plan, a stage's ``then`` appends the chosen plan's stages."""
    queue = list(steps)
    for name, options in queue:  # grows while it runs: a branch appends to it
        outcome = run_stage(engine, name, image, page, options)
        page = apply(page, outcome, name)
        if plans is not None and plan is not None:
            taken, extra = branch(plans, plan, name, options, outcome.output,
                                  [n for n, _ in queue])
            if taken is not None:
                page = with_branch(page, taken)
                queue += [(s.name, dict(s.options)) for s in extra]
    return page
