"""``ocrq eval DIR --task idcard``: the ID-card stage on a manifest folder.

Rows with ``corners`` (generated cards: ``python -m ocrq.suite.idcard_synth``)
score the quadrilateral: the corner error is the largest distance from a
true corner to its found one (the found quad's best cyclic order), as a share
of the card's diagonal (the mean of the two); the target is <= 2% on >= 95%
of cards. A card not found counts as an error of 100%.

Rows without corners but labelled ``id_card`` (the real cards of
``shared/eval/doctypes``, which have no text truth) compare two readings of
the card: the whole image (its lines whose centre lies inside the found quad)
and the perspective-corrected crop. With no truth, the reference is the union
of the two word multisets (a word counts as often as the reading that saw it
more often), and each reading's coverage is the share of it that reading has.
Words are upper-cased runs of letters and digits of two or more characters.

Each image is read as ``ocrq run --tid`` reads it, plan ``--tid`` (idcard by
default) with its ``then`` branches; the per-stage times are reported too.
"""

from __future__ import annotations

import re
import statistics
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from ocrq.engine import Engine
from ocrq.evaluation.dataset import manifest_rows
from ocrq.images import load_image
from ocrq.names import STEPS
from ocrq.plans import Plans
from ocrq.plugin_stages import run_stages
from ocrq.settings import Settings

WORD = re.compile(r"[^\W_]{2,}")


@dataclass(frozen=True)
class CardRow:
    path: Path
    label: str
    corners: np.ndarray | None  # 4 x 2, or None: no corner truth


@dataclass(frozen=True)
class CardResult:
    name: str
    found: bool
    confidence: float
    corner_error: float | None  # share of the diagonal; None: no corner truth
    page_words: int = 0  # reading the whole image, inside the quad
    crop_words: int = 0
    reference_words: int = 0
    page_coverage: float | None = None
    crop_coverage: float | None = None
    # Against the whole image's every line instead (a wrong quad shows here: its
    # crop misses what the whole image read; text beside the card counts too).
    crop_coverage_all: float | None = None
    page_coverage_all: float | None = None
    mrz_valid: bool | None = None
    stage_ms: dict[str, float] = field(default_factory=dict)
    ocr_ms: float = 0.0


def load_cards(folder: str | Path, limit: int | None = None) -> list[CardRow]:
    def card(base: Path, row: dict[str, Any]) -> CardRow | None:
        corners = np.asarray(row["corners"], np.float64) if "corners" in row else None
        label = str(row.get("label", ""))
        if corners is None and label != "id_card":
            return None  # a row of another class, without corners
        return CardRow(base / str(row["image"]), label, corners)

    return manifest_rows(folder, card, limit)


def corner_error(found: np.ndarray, truth: np.ndarray) -> float:
    diagonal = (np.hypot(*(truth[2] - truth[0])) + np.hypot(*(truth[3] - truth[1]))) / 2
    worst = min(float(np.max(np.hypot(*(np.roll(found, k, axis=0) - truth).T)))
                for k in range(4))
    return worst / max(float(diagonal), 1e-6)


def words(texts: Sequence[str]) -> Counter[str]:
    return Counter(w.upper() for t in texts for w in WORD.findall(t))


def _inside(lines: Sequence[Mapping[str, Any]], quad: Sequence[Sequence[float]] | None
            ) -> list[str]:
    if not quad:
        return [str(ln.get("text", "")) for ln in lines]
    contour = np.asarray(quad, np.float32).reshape(-1, 1, 2)
    out = []
    for ln in lines:
        c = np.asarray(ln["polygon"], np.float64).mean(axis=0)
        if cv2.pointPolygonTest(contour, (float(c[0]), float(c[1])), False) >= 0:
            out.append(str(ln.get("text", "")))
    return out


def coverage(page: Counter[str], crop: Counter[str]) -> tuple[int, float, float]:
    """(reference words, page coverage, crop coverage) against the union of the two."""
    reference = page | crop  # max count per word
    total = sum(reference.values())
    if not total:
        return 0, 0.0, 0.0
    return (total, sum((page & reference).values()) / total,
            sum((crop & reference).values()) / total)


def score_card(row: CardRow, doc: Mapping[str, Any], ocr_ms: float,
               stages: Sequence[str]) -> CardResult:
    card = doc.get("card") or {}
    found = bool(card.get("found"))
    quad = card.get("quad")
    ms = {n: float(doc.get("timings_ms", {}).get(n, 0.0)) for n in stages}
    mrz = (card.get("fields") or {}).get("mrz")
    base = {"name": row.path.name, "found": found,
            "confidence": float(card.get("confidence", 0.0)), "stage_ms": ms,
            "ocr_ms": round(ocr_ms, 1), "mrz_valid": None if mrz is None else bool(mrz["valid"])}
    if row.corners is not None:
        err = corner_error(np.asarray(quad, np.float64), row.corners) if found else 1.0
        return CardResult(corner_error=round(err, 5), **base)
    page = words(_inside(doc.get("lines", []), quad))
    crop = words([str(ln.get("text", "")) for ln in card.get("lines", [])])
    total, page_cov, crop_cov = coverage(page, crop)
    _, page_all, crop_all = coverage(words(_inside(doc.get("lines", []), None)), crop)
    return CardResult(corner_error=None, page_words=sum(page.values()),
                      crop_words=sum(crop.values()), reference_words=total,
                      page_coverage=round(page_cov, 4), crop_coverage=round(crop_cov, 4),
                      page_coverage_all=round(page_all, 4),
                      crop_coverage_all=round(crop_all, 4), **base)


def evaluate_cards(rows: Sequence[CardRow], settings: Settings, tid: str = "idcard",
                   progress: bool = False) -> list[CardResult]:
    plans = Plans.from_settings(settings)
    plan = plans.resolve(None, tid)
    steps = [(s.name, dict(s.options)) for s in plan.steps if s.name not in STEPS]
    engine = Engine.from_settings(settings)
    out = []
    for row in tqdm(rows, unit="img", disable=not progress, dynamic_ncols=True):
        t0 = time.perf_counter()
        image = load_image(row.path, settings)
        page = engine.run(image, row.path.name).to_dict()
        ocr_ms = (time.perf_counter() - t0) * 1000
        doc = run_stages(engine, image, page, steps, plans, plan)
        ran = list(doc.get("timings_ms", {}))
        out.append(score_card(row, doc, ocr_ms, [n for n in ran if n not in STEPS]))
    return out


def _dist(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    v = np.asarray(values, np.float64)
    return {"mean": round(float(v.mean()), 5), "median": round(float(np.median(v)), 5),
            "p90": round(float(np.quantile(v, 0.9)), 5),
            "p95": round(float(np.quantile(v, 0.95)), 5), "max": round(float(v.max()), 5)}


def summary(results: Sequence[CardResult]) -> dict[str, Any]:
    gen = [r for r in results if r.corner_error is not None]
    real = [r for r in results if r.corner_error is None]
    stages = sorted({n for r in results for n in r.stage_ms})
    out: dict[str, Any] = {"cards": len(results), "found": sum(r.found for r in results)}
    if gen:
        errs = [r.corner_error or 0.0 for r in gen]
        out["generated"] = {"cards": len(gen), "within_2pct": round(
            sum(e <= 0.02 for e in errs) / len(errs), 4), "corner_error": _dist(errs)}
    if real:
        out["real"] = {"cards": len(real),
                       "page_coverage": round(statistics.fmean(
                           r.page_coverage or 0.0 for r in real), 4),
                       "crop_coverage": round(statistics.fmean(
                           r.crop_coverage or 0.0 for r in real), 4),
                       "crop_at_least_page": sum((r.crop_coverage or 0) >= (
                           r.page_coverage or 0) for r in real),
                       "page_coverage_all": round(statistics.fmean(
                           r.page_coverage_all or 0.0 for r in real), 4),
                       "crop_coverage_all": round(statistics.fmean(
                           r.crop_coverage_all or 0.0 for r in real), 4)}
    out["stage_ms"] = {n: _dist([r.stage_ms[n] for r in results if n in r.stage_ms])
                       for n in stages}
    out["ocr_ms"] = _dist([r.ocr_ms for r in results])
    return out


def format_cards(results: Sequence[CardResult]) -> str:
    s = summary(results)
    lines = [f"cards {s['cards']}   found {s['found']}"]
    if "generated" in s:
        g, e = s["generated"], s["generated"]["corner_error"]
        lines += [f"generated: corner error <= 2% of the diagonal on {g['within_2pct']:.1%} "
                  f"of {g['cards']}; error % of diagonal: median {100 * e['median']:.2f}, "
                  f"p90 {100 * e['p90']:.2f}, p95 {100 * e['p95']:.2f}, max {100 * e['max']:.1f}"]
    if "real" in s:
        r = s["real"]
        lines += ["", "real cards (no text truth: reference = union of both readings' words)",
                  f"{'image':<36} {'found':>5} {'conf':>5} {'ref':>4} {'page':>6} {'crop':>6}"
                  f" {'page*':>6} {'crop*':>6}   (*: against every line of the image)"]
        lines += [f"{x.name[:36]:<36} {x.found!s:>5} {x.confidence:5.2f} {x.reference_words:4d}"
                  f" {x.page_coverage or 0:6.3f} {x.crop_coverage or 0:6.3f}"
                  f" {x.page_coverage_all or 0:6.3f} {x.crop_coverage_all or 0:6.3f}"
                  for x in results if x.corner_error is None]
        lines += [f"mean coverage: page {r['page_coverage']:.3f}, crop {r['crop_coverage']:.3f};"
                  f" crop >= page on {r['crop_at_least_page']} of {r['cards']}; against every"
                  f" line: page {r['page_coverage_all']:.3f}, crop {r['crop_coverage_all']:.3f}"]
    lines += [""] + [f"{n} ms/page: mean {d['mean']:.1f}, median {d['median']:.1f}, max "
                     f"{d['max']:.1f}" for n, d in s["stage_ms"].items() if d]
    lines += [f"reading the page ms: mean {s['ocr_ms'].get('mean', 0):.1f}"]
    return "\n".join(lines)
