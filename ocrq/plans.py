"""Execution plans: ``bid`` + ``tid`` -> ordered steps with hardware and options.

Loaded from YAML (the bundled ``plans.yaml`` unless ``settings.plans_file``),
validated once, then resolved per request. Unknown names raise
:class:`UnknownPlan`: an unknown tid lists the tids of the caller's bid; an
unknown bid lists nothing (the other businesses are not the caller's to see).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ocrq.errors import OcrqError
from ocrq.models.builtin import catalog
from ocrq.names import REQUIRED_STEPS, STEPS
from ocrq.settings import Settings
from ocrq.stages.fusion import is_threshold
from ocrq.stages.lexicon import UnknownLanguage, check_languages

HARDWARE = ("gpu", "cpu")
# A plug-in step's option: the label its result carries -> the tid whose plug-in
# stages run next (``document``: classify, then the plan of the page's class).
THEN = "then"


class UnknownPlan(OcrqError):
    code = "unknown_plan"


class InvalidPlans(OcrqError):
    code = "invalid_plans"


@dataclass(frozen=True)
class Step:
    name: str
    hardware: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    bid: str
    tid: str
    steps: tuple[Step, ...]
    # Pages read below this mean confidence are kept as bad cases; None: the
    # global OCRQ_BADCASE_CONFIDENCE (ocrq/pipeline/badcases.py).
    badcase_confidence: float | None = None

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {"bid": self.bid, "tid": self.tid,
                "steps": [{"step": s.name, "hardware": s.hardware, "options": s.options}
                          for s in self.steps]}


class Plans:
    def __init__(self, data: dict[str, Any], source: str = "<dict>") -> None:
        self.source = source
        self.default_bid: str = str(data.get("default_bid", "default"))
        tids = data.get("tids") or {}
        bids = data.get("bids") or {}
        if not isinstance(tids, dict) or not tids:
            raise InvalidPlans(f"{source}: 'tids' must be a non-empty mapping")
        self._tids = {str(k): _steps(v, f"{source}: tid {k}") for k, v in tids.items()}
        self._badcase = {str(k): _badcase(v, f"{source}: tid {k}") for k, v in tids.items()}
        self._bids: dict[str, dict[str, Any]] = {str(k): dict(v or {}) for k, v in bids.items()}
        self._bids.setdefault(self.default_bid, {})
        # Resolve every combination now: a broken override fails at load, not mid-request.
        for bid in self._bids:
            for tid in self._tids:
                self._check_then(self.resolve(bid, tid))

    def _check_then(self, plan: Plan) -> None:
        """A step's ``then`` (its result's ``label`` -> the tid whose plug-in stages
        follow; ``"*"``: any other label) names known tids only."""
        for step in plan.steps:
            table = step.options.get(THEN)
            if table is None:
                continue
            where = f"{self.source}: bid {plan.bid} tid {plan.tid} step {step.name}"
            if step.name in STEPS or not isinstance(table, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in table.items()):
                raise InvalidPlans(f"{where}: {THEN} must map labels to tids, on a plug-in "
                                   "stage")
            unknown = sorted(set(table.values()) - set(self._tids))
            if unknown:
                raise InvalidPlans(f"{where}: {THEN} names unknown tids {', '.join(unknown)}")

    def then(self, plan: Plan, step: Step, label: str) -> Plan | None:
        """The plan a step's result chooses (its ``then`` option), for the same bid."""
        table = step.options.get(THEN) or {}
        tid = table.get(label, table.get("*"))
        return None if tid is None else self.resolve(plan.bid, tid)

    @classmethod
    def load(cls, path: Path | None = None) -> Plans:
        if path is None:
            text = resources.files("ocrq").joinpath("plans.yaml").read_text("utf-8")
            return cls(yaml.safe_load(text), "ocrq/plans.yaml")
        return cls(yaml.safe_load(Path(path).read_text("utf-8")) or {}, str(path))

    @classmethod
    def from_settings(cls, settings: Settings) -> Plans:
        return cls.load(settings.plans_file)

    @property
    def bids(self) -> list[str]:
        return sorted(self._bids)

    @property
    def tids(self) -> list[str]:
        return sorted(self._tids)

    def tids_for(self, bid: str) -> list[str]:
        """The tids ``bid`` may use (every tid: a bid only overrides their steps)."""
        return self.tids if bid in self._bids else []

    def resolve(self, bid: str | None, tid: str | None) -> Plan:
        bid = bid or self.default_bid
        tid = tid or "ocr"
        if bid not in self._bids:
            # Other businesses' names are not the caller's to see: none are listed.
            raise UnknownPlan(f"unknown bid {bid!r}", field="bid")
        if tid not in self._tids:
            known = self.tids_for(bid)
            raise UnknownPlan(f"unknown tid {tid!r}; known: {', '.join(known)}",
                              field="tid", known=known)
        steps, badcase = self._tids[tid], self._badcase[tid]
        override = self._bids[bid].get(tid)
        if override:
            where = f"{self.source}: bid {bid} tid {tid}"
            steps = _apply_override(steps, override, where)
            badcase = _badcase(override, where, badcase)
        return Plan(bid=bid, tid=tid, steps=steps, badcase_confidence=badcase)


def _badcase(spec: Any, where: str, default: float | None = None) -> float | None:
    """``badcase_confidence``: a number in [0, 1] (0: keep no low-confidence page)."""
    value = spec.get("badcase_confidence") if isinstance(spec, dict) else None
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InvalidPlans(f"{where}: badcase_confidence must be a number from 0 to 1")
    return float(value)


def _steps(spec: Any, where: str) -> tuple[Step, ...]:
    raw = spec.get("steps") if isinstance(spec, dict) else None
    if not isinstance(raw, list) or not raw:
        raise InvalidPlans(f"{where}: 'steps' must be a non-empty list")
    stages = catalog().stages
    steps: list[Step] = []
    for item in raw:
        if isinstance(item, str):
            item = {"step": item}
        name = str(item.get("step", ""))
        if name not in STEPS and name not in stages:
            raise InvalidPlans(f"{where}: unknown step {name!r}; known: "
                               f"{', '.join([*STEPS, *sorted(stages)])}")
        default_hw = stages[name].hardware if name in stages else "gpu"
        hw = str(item.get("hardware", default_hw))
        if hw not in HARDWARE:
            raise InvalidPlans(f"{where}: step {name}: hardware must be one of {HARDWARE}")
        steps.append(Step(name, hw, dict(item.get("options") or {})))
    names = [s.name for s in steps]
    core = [n for n in names if n in STEPS]
    if (names[:len(core)] != core or core != [s for s in STEPS if s in core]
            or any(r not in names for r in REQUIRED_STEPS) or len(set(names)) != len(names)):
        raise InvalidPlans(f"{where}: steps {names} must follow rotate? -> detect -> "
                           "recognize -> reorder, then plug-in stages, each once")
    rec = steps[names.index("recognize")].options
    bl = rec.get("batch_lines")
    if bl is not None and (not isinstance(bl, int) or bl < 1):
        raise InvalidPlans(f"{where}: recognize.batch_lines must be a positive integer")
    if "lexicon" in rec:
        _check_lexicon(rec["lexicon"], where)
    if not isinstance(rec.get("amounts", True), bool):
        raise InvalidPlans(f"{where}: recognize.amounts must be true or false")
    if not is_threshold(rec.get("second_reading", 0.0)):
        raise InvalidPlans(f"{where}: recognize.second_reading must be a number from 0 (off) "
                           "to 1 (every word)")
    return tuple(steps)


def _check_lexicon(value: Any, where: str) -> None:
    """``recognize.lexicon``: a list of wordfreq language codes; [] turns correction off."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidPlans(f"{where}: recognize.lexicon must be a list of language codes "
                           "(e.g. [en, ms]; [] for none)")

    try:
        check_languages(value)
    except UnknownLanguage as exc:
        raise InvalidPlans(f"{where}: recognize.lexicon: {exc.message}") from exc


def _apply_override(base: tuple[Step, ...], override: dict[str, Any], where: str
                    ) -> tuple[Step, ...]:
    if "steps" in override:
        return _steps(override, where)
    options = override.get("options") or {}
    hardware = override.get("hardware") or {}
    for name in [*options, *hardware]:
        if name not in STEPS and name not in catalog().stages:
            raise InvalidPlans(f"{where}: unknown step {name!r} in override")
    out = []
    for s in base:
        opts = copy.deepcopy(s.options)
        opts.update(options.get(s.name) or {})
        out.append(Step(s.name, str(hardware.get(s.name, s.hardware)), opts))
    return _steps({"steps": [{"step": s.name, "hardware": s.hardware, "options": s.options}
                             for s in out]}, where)
