"""``ocrq eval --task table``: table cells and their structure on a cTDaR-style folder.

The manifest (``shared/eval/tables/README.md``) has one JSON object per image:
``{"image": ..., "tables": [{"box"}], "cells": [{"box": [[x, y] x 4], "row",
"col", "row_span", "col_span", "table"}]}``. A cTDaR cell box is the box of the
cell's content, so a predicted cell is scored by the box of the text it holds
(its grid box when it holds none).

- **cell P/R/F1 (IoU)**: predicted and true cells matched one to one, greedily
  by IoU, at IoU >= 0.5.
- **cell P/R/F1 (contain)**: the peer's rule (a predicted cell matches a true
  one it contains at least half of), also one to one; reported for everyone.
- **adjacency P/R/F1**: cTDaR's relation score: every cell's nearest non-empty
  neighbour to the right and below in the same table; a predicted relation is
  right when both its cells matched (IoU rule) the two cells of a true relation
  in the same direction.

Detectors: ``ocrq`` (the plan ``tid``'s stages in-process, as ``ocrq run --tid``)
and the peer ``img2table`` (PyPI, with borderless tables on and Tesseract as
its OCR), imported only when asked for.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ocrq.engine import Engine
from ocrq.evaluation.checkbox_eval import PeerUnavailable, Rect, match, rect_of
from ocrq.evaluation.dataset import manifest_rows
from ocrq.evaluation.detectors import score_detectors
from ocrq.names import STEPS
from ocrq.plans import Plans
from ocrq.plugin_stages import run_stages
from ocrq.settings import Settings


@dataclass(frozen=True)
class TCell:
    box: Rect
    row: int
    col: int
    row_span: int = 1
    col_span: int = 1
    table: int = 0


@dataclass(frozen=True)
class TableSample:
    path: Path
    truth: list[TCell]


def load_tables(folder: Path, limit: int | None = None) -> list[TableSample]:
    def sample(base: Path, row: dict[str, Any]) -> TableSample:
        truth = [TCell(rect_of(c["box"]), int(c["row"]), int(c["col"]), int(c["row_span"]),
                       int(c["col_span"]), int(c.get("table", 0))) for c in row["cells"]]
        return TableSample(base / row["image"], truth)

    return manifest_rows(folder, sample, limit, "not a table row")


def cells_of(doc: dict[str, Any]) -> list[TCell]:
    """The cells of a result document's ``tables`` field."""
    out = []
    for t, table in enumerate(doc.get("tables", {}).get("tables", [])):
        out.extend(TCell(rect_of(c["box"]), int(c["row"]), int(c["col"]),
                         int(c["row_span"]), int(c["col_span"]), t) for c in table["cells"])
    return out


def ocrq_detector(settings: Settings, tid: str) -> Callable[[np.ndarray], list[TCell]]:
    """The plan's steps in-process (reading, then its plug-in stages)."""
    engine = Engine.from_settings(settings)
    plan = Plans.from_settings(settings).resolve(None, tid)
    steps = [(s.name, dict(s.options)) for s in plan.steps if s.name not in STEPS]

    def detect(image: np.ndarray) -> list[TCell]:
        return cells_of(run_stages(engine, image, engine.run(image).to_dict(), steps))

    return detect


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """File descriptor 1 goes to stderr meanwhile (a child process's output too)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def peer_detector() -> Callable[[np.ndarray], list[TCell]]:
    try:  # an optional peer with heavy deps (opencv-contrib), named by string
        document = importlib.import_module("img2table.document")
        ocr = importlib.import_module("img2table.ocr")
    except ImportError as exc:
        raise PeerUnavailable("img2table is not importable here (it needs "
                              "opencv-contrib-python: see BENCHMARKS.md)") from exc
    with _stdout_to_stderr():  # it runs `tesseract --version` on our stdout (--json)
        tesseract = ocr.TesseractOCR(n_threads=1, lang="eng")

    def detect(image: np.ndarray) -> list[TCell]:
        ok, png = cv2.imencode(".png", image)
        doc = document.Image(src=png.tobytes(), detect_rotation=False)
        out = []
        for t, table in enumerate(doc.extract_tables(ocr=tesseract, borderless_tables=True)):
            seen: dict[int, TCell] = {}
            for r, row in table.content.items():
                for c, cell in enumerate(row):
                    first = seen.get(id(cell))
                    if first is None:  # a spanning cell repeats at every slot it covers
                        b = cell.bbox
                        seen[id(cell)] = TCell((b.x1, b.y1, b.x2, b.y2), int(r), c, 1, 1, t)
                    else:
                        seen[id(cell)] = TCell(first.box, first.row, first.col,
                                               int(r) - first.row + 1,
                                               max(first.col_span, c - first.col + 1), t)
            out.extend(seen.values())
        return out

    return detect


def _contain_match(found: list[TCell], truth: list[TCell]) -> list[tuple[int, int]]:
    """(found, truth) pairs, one to one, of predicted cells holding >= half a true
    cell's area."""
    def share(f: Rect, t: Rect) -> float:
        iw = max(0.0, min(f[2], t[2]) - max(f[0], t[0]))
        ih = max(0.0, min(f[3], t[3]) - max(f[1], t[1]))
        area = (t[2] - t[0]) * (t[3] - t[1])
        return iw * ih / area if area > 0 else 0.0

    pairs = sorted(((share(f.box, t.box), i, j) for i, f in enumerate(found)
                    for j, t in enumerate(truth)), reverse=True)
    used_f: set[int] = set()
    used_t: set[int] = set()
    out = []
    for s, i, j in pairs:
        if s >= 0.5 and i not in used_f and j not in used_t:
            used_f.add(i)
            used_t.add(j)
            out.append((i, j))
    return out


def _right(pred_rel: set[tuple[int, int, str]], true_rel: set[tuple[int, int, str]],
           pairs: list[tuple[int, int]]) -> int:
    """Predicted relations whose two cells matched the two cells of a true one."""
    to_truth = dict(pairs)
    return sum((to_truth.get(i), to_truth.get(j), d) in true_rel for i, j, d in pred_rel)


def relations(cells: Sequence[TCell]) -> set[tuple[int, int, str]]:
    """(cell, neighbour, "h"|"v"): each cell's nearest cell to the right in a row it
    spans, and below in a column it spans, within its table."""
    out = set()
    for i, a in enumerate(cells):
        for d, lo, hi, at, span in (("h", a.row, a.row + a.row_span, "col", a.col_span),
                                    ("v", a.col, a.col + a.col_span, "row", a.row_span)):
            start = getattr(a, at) + span
            near = [(getattr(b, at), j) for j, b in enumerate(cells) if b.table == a.table
                    and getattr(b, at) >= start and _overlaps(b, d, lo, hi)]
            if near:
                first = min(k for k, _ in near)
                out.update((i, j, d) for k, j in near if k == first)
    return out


def _overlaps(b: TCell, d: str, lo: int, hi: int) -> bool:
    b_lo, b_hi = (b.row, b.row + b.row_span) if d == "h" else (b.col, b.col + b.col_span)
    return b_lo < hi and lo < b_hi


def _prf(hit: int, found: int, truth: int) -> tuple[float, float, float]:
    p = hit / found if found else 0.0
    r = hit / truth if truth else 0.0
    return p, r, 2 * p * r / (p + r) if p + r else 0.0


@dataclass
class TableScore:
    detector: str
    found: int = 0
    truth: int = 0
    matched: int = 0  # IoU >= 0.5
    contained: int = 0  # the peer's containment rule
    rel_found: int = 0
    rel_truth: int = 0
    rel_right: int = 0
    rel_right_contain: int = 0  # the same with cells matched by the containment rule
    seconds: float = 0.0
    pages: list[dict[str, Any]] = field(default_factory=list)

    def add(self, name: str, found: list[TCell], truth: list[TCell], seconds: float) -> None:
        pairs = match([(c.box, False) for c in found], [(c.box, False) for c in truth])
        held = _contain_match(found, truth)
        pred_rel, true_rel = relations(found), relations(truth)
        right = _right(pred_rel, true_rel, pairs)
        contained = len(held)
        self.rel_right_contain += _right(pred_rel, true_rel, held)
        self.found, self.truth = self.found + len(found), self.truth + len(truth)
        self.matched, self.contained = self.matched + len(pairs), self.contained + contained
        self.rel_found, self.rel_truth = self.rel_found + len(pred_rel), self.rel_truth + len(
            true_rel)
        self.rel_right += right
        self.seconds += seconds
        self.pages.append({"image": name, "found": len(found), "truth": len(truth),
                           "matched": len(pairs), "contained": contained,
                           "relations": [len(pred_rel), len(true_rel), right],
                           "seconds": round(seconds, 3)})

    def metrics(self) -> dict[str, float]:
        p, r, f = _prf(self.matched, self.found, self.truth)
        cp, cr, cf = _prf(self.contained, self.found, self.truth)
        ap, ar, af = _prf(self.rel_right, self.rel_found, self.rel_truth)
        af_contain = _prf(self.rel_right_contain, self.rel_found, self.rel_truth)[2]
        return {"cell_precision": p, "cell_recall": r, "cell_f1": f,
                "contain_precision": cp, "contain_recall": cr, "contain_f1": cf,
                "adjacency_precision": ap, "adjacency_recall": ar, "adjacency_f1": af,
                "adjacency_f1_contain": af_contain,
                "s_per_page": self.seconds / len(self.pages) if self.pages else 0.0}

    def to_dict(self) -> dict[str, Any]:
        return {"detector": self.detector, "found": self.found, "truth": self.truth,
                "matched": self.matched, "contained": self.contained,
                "relations": [self.rel_found, self.rel_truth, self.rel_right,
                              self.rel_right_contain],
                **{k: round(v, 4) for k, v in self.metrics().items()}, "pages": self.pages}


DETECTORS = ("ocrq", "img2table")


def evaluate_tables(samples: Sequence[TableSample], detectors: Sequence[str],
                    settings: Settings, tid: str = "table") -> list[TableScore]:
    return score_detectors(
        samples, detectors, DETECTORS, "table",
        lambda d: ocrq_detector(settings, tid) if d == "ocrq" else peer_detector(), TableScore)


def format_table_scores(scores: Sequence[TableScore]) -> str:
    head = (f"{'detector':<11} {'found':>5} {'truth':>5} {'cell P':>6} {'cell R':>6} "
            f"{'cell F1':>7} {'contain F1':>10} {'adj P':>6} {'adj R':>6} {'adj F1':>6} "
            f"{'adj F1 (contain)':>16} {'s/page':>6}")
    rows = [head, "-" * len(head)]
    for s in scores:
        m = s.metrics()
        rows.append(f"{s.detector:<11} {s.found:>5} {s.truth:>5} {m['cell_precision']:>6.3f} "
                    f"{m['cell_recall']:>6.3f} {m['cell_f1']:>7.3f} {m['contain_f1']:>10.3f} "
                    f"{m['adjacency_precision']:>6.3f} {m['adjacency_recall']:>6.3f} "
                    f"{m['adjacency_f1']:>6.3f} {m['adjacency_f1_contain']:>16.3f} "
                    f"{m['s_per_page']:>6.2f}")
    rows.append("")
    rows.append("cell: one-to-one at IoU >= 0.5 on the box of a cell's text; contain: a "
                "predicted cell holding >= 50% of a true cell; adj: cTDaR adjacency relations "
                "(cells matched by IoU, or by containment)")
    return "\n".join(rows)
