"""Scoring of OCR output against line-level ground truth.

All text comparisons are case-insensitive (both sides upper-cased) because the
SROIE ground truth is upper-case even where the receipt prints lower case.

Averaging: every per-page score keeps its raw counts (matches, predicted,
true), and corpus scores are **micro-averaged**: sums of matches over sums of
predicted/true items across all pages. Pages with many words weigh more, which
is what "how many words did we read right" means. Detection recall is micro
too (covered boxes over all boxes). Seconds per page is the plain mean.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

Polygon = Sequence[Sequence[float]]

# A ground-truth box counts as detected when at least this share of its area is
# covered by the union of the predicted polygons.
COVERAGE_THRESHOLD = 0.5
# Masks for huge page scans are rasterised on a grid whose longer side is at most
# this many cells; coverage is a ratio of areas, so a uniform downscale keeps it.
MAX_MASK_SIDE = 4096


@dataclass(frozen=True)
class Counts:
    """Multiset match counts; P/R/F1 follow from them and sum across pages."""

    matched: int = 0
    predicted: int = 0
    true: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.matched + other.matched,
            self.predicted + other.predicted,
            self.true + other.true,
        )

    @property
    def precision(self) -> float:
        # Nothing predicted and nothing expected is a perfect (empty) page.
        if self.predicted == 0:
            return 1.0 if self.true == 0 else 0.0
        return self.matched / self.predicted

    @property
    def recall(self) -> float:
        if self.true == 0:
            return 1.0 if self.predicted == 0 else 0.0
        return self.matched / self.true

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)

    def to_dict(self) -> dict[str, float | int]:
        return {
            "matched": self.matched,
            "predicted": self.predicted,
            "true": self.true,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


def _multiset_counts(predicted: Counter[str], truth: Counter[str]) -> Counts:
    matched = sum((predicted & truth).values())  # & = min of the two counts per key
    return Counts(matched, sum(predicted.values()), sum(truth.values()))


def words(text: str) -> Counter[str]:
    """Multiset of whitespace-separated words, upper-cased."""
    return Counter(text.upper().split())


def chars(text: str) -> Counter[str]:
    """Multiset of non-whitespace characters, upper-cased."""
    return Counter(c for c in text.upper() if not c.isspace())


def word_counts(predicted: str, truth: str) -> Counts:
    return _multiset_counts(words(predicted), words(truth))


def char_counts(predicted: str, truth: str) -> Counts:
    return _multiset_counts(chars(predicted), chars(truth))


def box_coverage(
    truth_boxes: Sequence[Polygon],
    predicted: Iterable[Polygon],
    width: int,
    height: int,
) -> list[float]:
    """Share of each ground-truth box's area covered by the union of ``predicted``.

    Both sides are rasterised with ``cv2.fillPoly`` on the image grid (downscaled
    for pages larger than ``MAX_MASK_SIDE``); overlapping predictions count once.
    """
    scale = min(1.0, MAX_MASK_SIDE / max(width, height, 1))
    mask_w, mask_h = max(1, round(width * scale)), max(1, round(height * scale))

    def to_pixels(poly: Polygon) -> np.ndarray:
        pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2) * scale
        return np.round(pts).astype(np.int32)

    covered = np.zeros((mask_h, mask_w), dtype=np.uint8)
    polys = [to_pixels(p) for p in predicted if len(p) >= 3]
    if polys:
        cv2.fillPoly(covered, polys, 1)

    shares: list[float] = []
    for box in truth_boxes:
        pts = to_pixels(box)
        x0, y0 = np.clip(pts.min(axis=0), 0, [mask_w - 1, mask_h - 1])
        x1, y1 = np.clip(pts.max(axis=0), 0, [mask_w - 1, mask_h - 1])
        # Rasterise the box in a local window so each box costs its own area only.
        local = np.zeros((y1 - y0 + 1, x1 - x0 + 1), dtype=np.uint8)
        cv2.fillPoly(local, [pts - [x0, y0]], 1)
        area = int(local.sum())
        if area == 0:
            shares.append(0.0)
            continue
        hit = int((covered[y0 : y1 + 1, x0 : x1 + 1] & local).sum())
        shares.append(hit / area)
    return shares


def detection_counts(
    truth_boxes: Sequence[Polygon],
    predicted: Iterable[Polygon],
    width: int,
    height: int,
    threshold: float = COVERAGE_THRESHOLD,
) -> Counts:
    """Detection recall as counts: ``matched`` = boxes covered >= ``threshold``.

    ``predicted`` is left at 0: recall is the only detection score (unannotated
    stamps and logos make detection precision meaningless on SROIE).
    """
    shares = box_coverage(truth_boxes, predicted, width, height)
    return Counts(sum(s >= threshold for s in shares), 0, len(shares))


@dataclass(frozen=True)
class PageScore:
    image: str
    words: Counts
    chars: Counts
    boxes: Counts
    seconds: float

    def to_dict(self) -> dict[str, object]:
        return {
            "image": self.image,
            "words": self.words.to_dict(),
            "chars": self.chars.to_dict(),
            "detection": {
                "covered": self.boxes.matched,
                "boxes": self.boxes.true,
                "recall": self.boxes.recall,
            },
            "seconds": self.seconds,
        }


def score_page(
    image: str,
    predicted: Sequence[tuple[str, Polygon]],
    truth: Sequence[tuple[str, Polygon]],
    width: int,
    height: int,
    seconds: float,
) -> PageScore:
    """Score one page: ``predicted``/``truth`` are (text, polygon) lines."""
    pred_text = "\n".join(text for text, _ in predicted)
    true_text = "\n".join(text for text, _ in truth)
    return PageScore(
        image=image,
        words=word_counts(pred_text, true_text),
        chars=char_counts(pred_text, true_text),
        boxes=detection_counts([b for _, b in truth], [p for _, p in predicted], width, height),
        seconds=seconds,
    )


@dataclass(frozen=True)
class CorpusScore:
    """Micro-averaged totals over pages."""

    pages: int
    words: Counts
    chars: Counts
    boxes: Counts
    seconds: float  # total

    @classmethod
    def of(cls, pages: Sequence[PageScore]) -> CorpusScore:
        total_w, total_c, total_b = Counts(), Counts(), Counts()
        for p in pages:
            total_w, total_c, total_b = total_w + p.words, total_c + p.chars, total_b + p.boxes
        return cls(len(pages), total_w, total_c, total_b, sum(p.seconds for p in pages))

    @property
    def seconds_per_page(self) -> float:
        return self.seconds / self.pages if self.pages else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "pages": self.pages,
            "averaging": "micro",
            "word_precision": self.words.precision,
            "word_recall": self.words.recall,
            "word_f1": self.words.f1,
            "char_precision": self.chars.precision,
            "char_recall": self.chars.recall,
            "char_f1": self.chars.f1,
            "detection_recall": self.boxes.recall,
            "seconds_per_page": self.seconds_per_page,
            "words": self.words.to_dict(),
            "chars": self.chars.to_dict(),
            "boxes": {"covered": self.boxes.matched, "total": self.boxes.true},
        }
