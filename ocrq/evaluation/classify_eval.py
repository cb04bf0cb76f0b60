"""``ocrq eval DIR --task classify``: document-class accuracy of a plan's classifier.

The manifest has one JSON object per line with ``image`` (relative to the
manifest) and ``label`` (other keys are ignored; the format of
``shared/eval/doctypes``). Each image is read as ``ocrq run`` reads it
(``ocrq.images.load_image``: EXIF orientation applied, transparent margins
composited onto white), OCR'd in-process and given to the plan's plug-in
stages; the stage's ``label`` is compared with the manifest's.

Scores: accuracy, per-class precision/recall/F1 with support, macro-F1 (the
unweighted mean over every class that is a label or a prediction), and the
confusion matrix (rows: truth, columns: prediction). A few dozen counts do not
justify scikit-learn and its SciPy stack as a dependency.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ocrq.engine import Engine
from ocrq.evaluation.dataset import manifest_rows
from ocrq.images import load_image
from ocrq.names import STEPS
from ocrq.plans import Plans
from ocrq.plugin_stages import run_stages
from ocrq.settings import Settings


@dataclass(frozen=True)
class Labelled:
    path: Path
    label: str


@dataclass(frozen=True)
class Predicted:
    name: str
    truth: str
    label: str
    confidence: float
    stage_ms: float  # the classification stage alone
    ocr_ms: float  # reading the page (the stages before it)


def load_labels(folder: str | Path, limit: int | None = None) -> list[Labelled]:
    return manifest_rows(
        folder, lambda base, row: Labelled(base / str(row["image"]), str(row["label"])), limit)


@dataclass(frozen=True)
class ClassScore:
    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class ClassifyReport:
    pages: list[Predicted]
    classes: list[str]
    per_class: list[ClassScore]
    confusion: list[list[int]]  # [truth index][predicted index]

    @property
    def accuracy(self) -> float:
        return sum(p.label == p.truth for p in self.pages) / max(len(self.pages), 1)

    @property
    def macro_f1(self) -> float:
        return statistics.fmean(c.f1 for c in self.per_class) if self.per_class else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"pages": len(self.pages), "accuracy": round(self.accuracy, 4),
                "macro_f1": round(self.macro_f1, 4),
                "per_class": [vars(c) for c in self.per_class],
                "classes": self.classes, "confusion": self.confusion,
                "stage_ms": _ms([p.stage_ms for p in self.pages]),
                "ocr_ms": _ms([p.ocr_ms for p in self.pages]),
                "per_page": [vars(p) for p in self.pages]}


def _ms(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    return {"mean": round(statistics.fmean(values), 1),
            "median": round(statistics.median(values), 1), "max": round(max(values), 1)}


def score(pages: list[Predicted]) -> ClassifyReport:
    classes = sorted({p.truth for p in pages} | {p.label for p in pages})
    index = {c: i for i, c in enumerate(classes)}
    confusion = [[0] * len(classes) for _ in classes]
    for p in pages:
        confusion[index[p.truth]][index[p.label]] += 1
    per_class = []
    for c, i in index.items():
        hit = confusion[i][i]
        predicted = sum(row[i] for row in confusion)
        support = sum(confusion[i])
        precision = hit / predicted if predicted else 0.0
        recall = hit / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if hit else 0.0
        per_class.append(ClassScore(c, round(precision, 4), round(recall, 4), round(f1, 4),
                                    support))
    return ClassifyReport(pages, classes, per_class, confusion)


def classify_all(samples: Sequence[Labelled], settings: Settings, tid: str = "classify",
                 *, key: str = "document_class", progress: bool = False) -> list[Predicted]:
    """Read and classify every sample with the plug-in stages of plan ``tid``."""
    plan = Plans.from_settings(settings).resolve(None, tid)
    stages = [(s.name, dict(s.options)) for s in plan.steps if s.name not in STEPS]
    engine = Engine.from_settings(settings)
    out = []
    for sample in tqdm(samples, unit="img", disable=not progress, dynamic_ncols=True):
        t0 = time.perf_counter()
        image = load_image(sample.path, settings)
        page = engine.run(image, sample.path.name).to_dict()
        ocr_ms = (time.perf_counter() - t0) * 1000
        doc = run_stages(engine, image, page, stages)
        result = doc.get(key) or {}
        out.append(Predicted(sample.path.name, sample.label, str(result.get("label", "")),
                             float(result.get("confidence", 0.0)),
                             sum(doc["timings_ms"].get(n, 0.0) for n, _ in stages),
                             round(ocr_ms, 1)))
    return out


def format_report(report: ClassifyReport) -> str:
    lines = [f"pages {len(report.pages)}   accuracy {report.accuracy:.3f}   "
             f"macro-F1 {report.macro_f1:.3f}", "",
             f"{'class':<14} {'P':>6} {'R':>6} {'F1':>6} {'n':>4}"]
    lines += [f"{c.label:<14} {c.precision:6.3f} {c.recall:6.3f} {c.f1:6.3f} {c.support:4d}"
              for c in report.per_class]
    width = max(len(c) for c in report.classes) if report.classes else 5
    short = [c[:7] for c in report.classes]
    lines += ["", "confusion (rows: truth, columns: predicted)",
              " " * (width + 1) + " ".join(f"{s:>7}" for s in short)]
    lines += [f"{c:<{width}} " + " ".join(f"{n:>7}" for n in row)
              for c, row in zip(report.classes, report.confusion, strict=True)]
    stage, ocr = _ms([p.stage_ms for p in report.pages]), _ms([p.ocr_ms for p in report.pages])
    if stage:
        lines += ["", f"classification stage ms/page: mean {stage['mean']}, median "
                      f"{stage['median']}, max {stage['max']}   (reading the page: mean "
                      f"{ocr['mean']} ms)"]
    wrong = [p for p in report.pages if p.label != p.truth]
    lines += ["", "misclassified:" if wrong else "misclassified: none"]
    lines += [f"  {p.name}: {p.truth} -> {p.label} ({p.confidence:.2f})" for p in wrong]
    return "\n".join(lines)
