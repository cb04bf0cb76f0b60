"""Evaluation gate: score a candidate model version against the active one.

Both versions run through the same in-process Engine on the same labelled
pages with the metrics of ``ocrq eval``; the gate passes when the candidate
loses no more than ``max_drop`` of word F1 or char F1 (detection recall too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocrq.engine import Engine, EngineOptions
from ocrq.evaluation.dataset import load_manifest
from ocrq.evaluation.peers import OcrqEngine
from ocrq.evaluation.runner import evaluate
from ocrq.models.registry import ModelRegistry
from ocrq.models.repository import ModelRepository
from ocrq.settings import Settings


@dataclass(frozen=True)
class GateResult:
    model: str
    baseline: int
    candidate: int
    results: Sequence[Any]  # EngineResult of baseline, then candidate
    deltas: dict[str, float]
    max_drop: float

    @property
    def passed(self) -> bool:
        return all(d >= -self.max_drop for d in self.deltas.values())

    def to_dict(self) -> dict[str, object]:
        return {"model": self.model, "baseline": self.baseline, "candidate": self.candidate,
                "passed": self.passed, "max_drop": self.max_drop, "deltas": self.deltas,
                "results": [r.to_dict() for r in self.results]}


def pinned_engine(settings: Settings, repository: ModelRepository, name: str,
                  version: int, label: str) -> OcrqEngine:
    registry = ModelRegistry(repository, settings)
    registry.activate(name, version)  # a broken candidate fails here, before scoring
    engine = Engine(registry, EngineOptions.from_settings(settings))
    return OcrqEngine(settings.threads, engine=engine, name=label)


def run_gate(settings: Settings, name: str, candidate: int, baseline: int,
             manifest_dir: Path, *, limit: int | None = None, max_drop: float = 0.0,
             progress: bool = False) -> GateResult:
    repository = ModelRepository(settings.model_root)
    samples = load_manifest(manifest_dir, limit=limit)
    engines = [
        pinned_engine(settings, repository, name, baseline, f"{name} v{baseline} (active)"),
        pinned_engine(settings, repository, name, candidate, f"{name} v{candidate} (candidate)"),
    ]
    results = evaluate(engines, samples, progress=progress)  # pages in turn: fair s/page
    base, cand = (r.corpus for r in results)
    deltas = {
        "word_f1": round(cand.words.f1 - base.words.f1, 6),
        "char_f1": round(cand.chars.f1 - base.chars.f1, 6),
        "det_recall": round(cand.boxes.recall - base.boxes.recall, 6),
    }
    return GateResult(name, baseline, candidate, results, deltas, max_drop)
