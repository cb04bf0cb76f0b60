"""Scoring of OCR output against line-level ground truth.

All text comparisons are case-insensitive (both sides upper-cased) because the
SROIE ground truth is upper-case even where the receipt prints lower case.

Averaging: every per-page score keeps its raw counts (matches, predicted,
true), and corpus scores are **micro-averaged**: sums of matches over sums of
predicted/true items across all pages. Pages with many words weigh more, which
is what "how many words did we read right" means. Detection recall is micro
too (covered boxes over all boxes). Seconds per page is the plain mean.

Beside the totals, to show which error to fix next: detection recall per
ground-truth line length (``LENGTH_BUCKETS``), the ground-truth lines that were
missed, and the confusions between matched lines and what was read there
(``ocrq.evaluation.confusions``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from ocrq.evaluation.confusions import Confusions, page_confusions
from ocrq.evaluation.geometry import Grid, Polygon

# A ground-truth box counts as detected when at least this share of its area is
# covered by the union of the predicted polygons.
COVERAGE_THRESHOLD = 0.5
# Ground-truth lines are bucketed by their number of non-space characters:
# (label, shortest, longest; None = no limit). Single characters and short
# tokens ("RM", "1", "X2") are where a detector tuned for words loses lines;
# the doubling widths keep every bucket well filled on receipts. An empty
# transcript (none in SROIE) falls in the first bucket.
LENGTH_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("1", 0, 1), ("2-3", 2, 3), ("4-7", 4, 7), ("8-15", 8, 15), ("16+", 16, None),
)
# Missed ground-truth lines listed in the corpus JSON (most frequent, then shortest).
MISSED_TOP = 100


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
    for pages larger than ``geometry.MAX_MASK_SIDE``); overlapping predictions count once.
    """
    grid = Grid.of(width, height)
    covered = np.zeros((grid.height, grid.width), dtype=np.uint8)
    polys = [grid.pixels(p) for p in predicted if len(p) >= 3]
    if polys:
        cv2.fillPoly(covered, polys, 1)

    shares: list[float] = []
    for box in truth_boxes:
        pts = grid.pixels(box)
        # Rasterise the box in a local window so each box costs its own area only.
        x0, y0, x1, y1 = window = grid.window(pts)
        local = grid.mask(pts, window)
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


def length_bucket(text: str) -> str:
    """The ``LENGTH_BUCKETS`` label of a ground-truth line (non-space characters)."""
    n = sum(not c.isspace() for c in text)
    return next(label for label, _, hi in LENGTH_BUCKETS if hi is None or n <= hi)


def recall_by_length(texts: Sequence[str], covered: Sequence[bool]) -> dict[str, Counts]:
    """Detection counts per length bucket (every bucket present, in order)."""
    found = {label: Counts() for label, _, _ in LENGTH_BUCKETS}
    for text, hit in zip(texts, covered, strict=True):
        label = length_bucket(text)
        found[label] = found[label] + Counts(int(hit), 0, 1)
    return found


def _length_rows(by_length: dict[str, Counts]) -> list[dict[str, object]]:
    return [
        {"length": label, "min": lo, "max": hi, "boxes": by_length[label].true,
         "covered": by_length[label].matched,
         "recall": by_length[label].recall if by_length[label].true else None}
        for label, lo, hi in LENGTH_BUCKETS
    ]


@dataclass(frozen=True)
class PageScore:
    image: str
    words: Counts
    chars: Counts
    boxes: Counts
    seconds: float
    by_length: dict[str, Counts] = field(default_factory=dict)
    missed: tuple[str, ...] = ()  # ground-truth texts not detected, in manifest order
    confusions: Confusions = field(default_factory=Confusions)

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
            "missed": list(self.missed),
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
    shares = box_coverage([b for _, b in truth], [p for _, p in predicted], width, height)
    covered = [share >= COVERAGE_THRESHOLD for share in shares]
    return PageScore(
        image=image,
        words=word_counts(pred_text, true_text),
        chars=char_counts(pred_text, true_text),
        boxes=Counts(sum(covered), 0, len(covered)),
        seconds=seconds,
        by_length=recall_by_length([text for text, _ in truth], covered),
        missed=tuple(text for (text, _), hit in zip(truth, covered, strict=True) if not hit),
        confusions=page_confusions(truth, predicted, covered, width, height),
    )


@dataclass(frozen=True)
class CorpusScore:
    """Micro-averaged totals over pages."""

    pages: int
    words: Counts
    chars: Counts
    boxes: Counts
    seconds: float  # total
    by_length: dict[str, Counts] = field(default_factory=dict)
    missed: Counter[str] = field(default_factory=Counter)
    confusions: Confusions = field(default_factory=Confusions)

    @classmethod
    def of(cls, pages: Sequence[PageScore]) -> CorpusScore:
        total_w, total_c, total_b = Counts(), Counts(), Counts()
        by_length = {label: Counts() for label, _, _ in LENGTH_BUCKETS}
        missed: Counter[str] = Counter()
        confusions = Confusions()
        for p in pages:
            total_w, total_c, total_b = total_w + p.words, total_c + p.chars, total_b + p.boxes
            for label, counts in p.by_length.items():
                by_length[label] = by_length[label] + counts
            missed.update(p.missed)
            confusions = confusions + p.confusions
        return cls(len(pages), total_w, total_c, total_b, sum(p.seconds for p in pages),
                   by_length, missed, confusions)

    def top_missed(self, n: int = MISSED_TOP) -> list[tuple[str, int]]:
        """Missed ground-truth texts: the most frequent first, then the shortest."""
        return sorted(self.missed.items(), key=lambda kv: (-kv[1], len(kv[0]), kv[0]))[:n]

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
            "detection_recall_by_length": _length_rows(self.by_length),
            "missed_lines": [{"text": t, "count": n} for t, n in self.top_missed()],
            "missed_distinct": len(self.missed),
            "confusions": self.confusions.to_dict(),
        }
