"""``ocrq eval --task checkbox``: checkbox detection and ticked state on a labelled folder.

The manifest (``shared/eval/checkboxes/README.md``) has one JSON object per
image: ``{"image": ..., "checkboxes": [{"box": [[x, y] x 4], "checked": bool}]}``.
Detections match ground truth one to one, greedily by IoU (axis-aligned boxes,
IoU >= 0.5); detection P/R/F1 count the matches, the ticked state is scored on
the matched boxes only (accuracy, and precision/recall of "ticked").

Detectors: ``ocrq`` (the plan ``tid``'s stages in-process, as ``ocrq run --tid``)
and the peer ``checkbox-extractor`` (PyPI; OpenCV rules, Tesseract for labels,
nothing downloaded), imported only when asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ocrq.engine import Engine
from ocrq.errors import OcrqError
from ocrq.evaluation.dataset import manifest_rows
from ocrq.evaluation.detectors import score_detectors
from ocrq.names import STEPS
from ocrq.plans import Plans
from ocrq.plugin_stages import run_stages
from ocrq.settings import Settings

Rect = tuple[float, float, float, float]  # x0, y0, x1, y1
Found = list[tuple[Rect, bool]]  # boxes and their ticked state


class PeerUnavailable(OcrqError):
    code = "peer_unavailable"


@dataclass(frozen=True)
class CheckboxSample:
    path: Path
    truth: Found


def rect_of(points: Sequence[Sequence[float]] | np.ndarray) -> Rect:
    """The axis-aligned bounding rectangle (x0, y0, x1, y1) of points (or of a flat box)."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    return (float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()),
            float(pts[:, 1].max()))


def load_checkboxes(folder: Path, limit: int | None = None) -> list[CheckboxSample]:
    def sample(base: Path, row: dict[str, Any]) -> CheckboxSample:
        truth = [(rect_of(c["box"]), bool(c["checked"])) for c in row["checkboxes"]]
        return CheckboxSample(base / row["image"], truth)

    return manifest_rows(folder, sample, limit, "not a checkbox row")


def ocrq_detector(settings: Settings, tid: str) -> Callable[[np.ndarray], Found]:
    """The plan's steps in-process (reading, then its plug-in stages)."""
    engine = Engine.from_settings(settings)
    plan = Plans.from_settings(settings).resolve(None, tid)
    steps = [(s.name, dict(s.options)) for s in plan.steps if s.name not in STEPS]

    def detect(image: np.ndarray) -> Found:
        doc = run_stages(engine, image, engine.run(image).to_dict(), steps)
        boxes = doc.get("checkboxes", {}).get("boxes", [])
        return [(rect_of(b["polygon"]), bool(b["ticked"])) for b in boxes]

    return detect


def peer_detector() -> Callable[[np.ndarray], Found]:
    try:  # an optional peer, named by string: only `ocrq eval` asks for it
        peer = importlib.import_module("checkbox_extractor")
    except ImportError as exc:
        raise PeerUnavailable("checkbox-extractor is not installed "
                              "(pip install checkbox-extractor)") from exc

    def detect(image: np.ndarray) -> Found:
        result = peer.extract(image, full=True)
        boxes = [c for g in result["groups"] for c in g["checkboxes"]]
        return [((x, y, x + w, y + h), bool(c["ticked"]))
                for c in boxes for x, y, w, h in [c["bbox"]]]

    return detect


def _iou(a: Rect, b: Rect) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(found: Found, truth: Found, min_iou: float = 0.5) -> list[tuple[int, int]]:
    """(found index, truth index) pairs, greedily by IoU, each used once."""
    pairs = sorted(((_iou(f[0], t[0]), i, j) for i, f in enumerate(found)
                    for j, t in enumerate(truth)), reverse=True)
    used_f: set[int] = set()
    used_t: set[int] = set()
    out = []
    for iou, i, j in pairs:
        if iou >= min_iou and i not in used_f and j not in used_t:
            used_f.add(i)
            used_t.add(j)
            out.append((i, j))
    return out


@dataclass
class CheckboxScore:
    detector: str
    found: int = 0
    truth: int = 0
    matched: int = 0
    # ticked state on matched boxes: [truth][found] as "tt", "tf", "ft", "ff"
    states: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("tt", "tf", "ft", "ff"), 0))
    seconds: float = 0.0
    pages: list[dict[str, Any]] = field(default_factory=list)

    def add(self, name: str, found: Found, truth: Found, seconds: float) -> None:
        pairs = match(found, truth)
        for i, j in pairs:
            self.states[("t" if truth[j][1] else "f") + ("t" if found[i][1] else "f")] += 1
        self.found += len(found)
        self.truth += len(truth)
        self.matched += len(pairs)
        self.seconds += seconds
        self.pages.append({"image": name, "found": len(found), "truth": len(truth),
                           "matched": len(pairs), "seconds": round(seconds, 3)})

    def metrics(self) -> dict[str, float]:
        p = self.matched / self.found if self.found else 0.0
        r = self.matched / self.truth if self.truth else 0.0
        s = self.states
        right = s["tt"] + s["ff"]
        return {
            "precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
            "ticked_accuracy": right / self.matched if self.matched else 0.0,
            "ticked_precision": s["tt"] / (s["tt"] + s["ft"]) if s["tt"] + s["ft"] else 0.0,
            "ticked_recall": s["tt"] / (s["tt"] + s["tf"]) if s["tt"] + s["tf"] else 0.0,
            "s_per_page": self.seconds / len(self.pages) if self.pages else 0.0,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), **{k: round(v, 4) for k, v in self.metrics().items()}}


DETECTORS = ("ocrq", "checkbox-extractor")


def evaluate_checkboxes(samples: Sequence[CheckboxSample], detectors: Sequence[str],
                        settings: Settings, tid: str = "checkbox") -> list[CheckboxScore]:
    return score_detectors(
        samples, detectors, DETECTORS, "checkbox",
        lambda d: ocrq_detector(settings, tid) if d == "ocrq" else peer_detector(), CheckboxScore)


def format_checkbox_table(scores: Sequence[CheckboxScore]) -> str:
    head = (f"{'detector':<20} {'found':>6} {'truth':>6} {'P':>6} {'R':>6} {'F1':>6} "
            f"{'ticked acc':>10} {'tick P':>7} {'tick R':>7} {'s/page':>7}")
    rows = [head, "-" * len(head)]
    for s in scores:
        m = s.metrics()
        rows.append(f"{s.detector:<20} {s.found:>6} {s.truth:>6} {m['precision']:>6.3f} "
                    f"{m['recall']:>6.3f} {m['f1']:>6.3f} {m['ticked_accuracy']:>10.3f} "
                    f"{m['ticked_precision']:>7.3f} {m['ticked_recall']:>7.3f} "
                    f"{m['s_per_page']:>7.2f}")
    rows.append("")
    rows.append("matched boxes, truth -> found: " + "; ".join(
        f"{s.detector}: ticked->ticked {s.states['tt']}, ticked->empty {s.states['tf']}, "
        f"empty->ticked {s.states['ft']}, empty->empty {s.states['ff']}" for s in scores))
    return "\n".join(rows)
