"""Classic-CV checkbox and radio-button finding for the ``checkbox`` stage
(ocrq/suite/checkbox.py): every number comes from the ``chk`` model's parameters.

Square outlines have four straight inked sides and square corners; they are
found on horizontal/vertical stroke maps, so a tick or a cross through a box
does not break them. Round outlines are circular, convex and inked all around.
A box is ticked when enough ink is inside it, its border left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int
    shape: str  # "box" | "circle"
    confidence: float  # how clearly the outline is there

    @property
    def side(self) -> int:
        return min(self.w, self.h)


def ink_mask(gray: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    """Dark pixels: locally dark (thin strokes on uneven scans) or globally dark
    (the middle of a filled box, which a local threshold sees as background)."""
    block = int(p["adaptive_block"]) | 1
    local = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV,
                                  block, float(p["adaptive_c"]))
    otsu, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return local | np.where(gray < min(otsu, 160), 255, 0).astype(np.uint8)


def side_limits(shape: tuple[int, ...], p: dict[str, Any]) -> tuple[int, int]:
    top = max(int(p["max_side"]), int(p["max_side_frac"] * max(shape[:2])))
    return int(p["min_side"]), top


def _straight(mask: np.ndarray, band: int) -> float:
    """Longest share of the width one straight line covers within ``band`` rows of
    the top (two neighbouring rows together: a side drifting by a pixel still
    counts). A curve (a letter, a ring) covers little of any single row."""
    rows = mask[: band + 1]
    pairs = rows[:-1] | rows[1:] if len(rows) > 1 else rows
    return float(pairs.mean(axis=1).max()) if pairs.size else 0.0


def sides(patch: np.ndarray, band: int) -> list[float]:
    """:func:`_straight` of the top, bottom, left and right sides of ``patch``."""
    return [_straight(patch, band), _straight(patch[::-1], band),
            _straight(patch.T, band), _straight(patch.T[::-1], band)]


def _scales(lo: int, hi: int) -> list[int]:
    """Stroke lengths for the side range: each scale takes sides of 1.1-1.8 times it."""
    ks, k = [], max(3, int(lo / 1.8))
    while k * 1.1 <= hi:
        ks.append(k)
        k = max(k + 1, int(k * 1.5))
    return ks


def _edge(inked: np.ndarray, start: int, step: int, reach: int) -> int:
    """The side's row: from ``start`` inwards (against ``step``) to the first row at
    least half inked (a tick sticking out is not), then outwards over the inked
    rows next to it (a stroke map shrinks thick round letters)."""
    i = start
    while not inked[i] and abs(i - start) < reach and 0 <= i - step < len(inked):
        i -= step
    while 0 <= i + step < len(inked) and inked[i + step]:
        i += step
    return i


def refine(ink: np.ndarray, x: int, y: int, w: int, h: int, band: int
           ) -> tuple[int, int, int, int]:
    """The candidate's sides moved to its outline (:func:`_edge`); a table rule a
    blank row away does not move them."""
    x0, y0 = max(0, x - band), max(0, y - band)
    win = ink[y0:y + h + band, x0:x + w + band] > 0
    rows = win[:, x - x0:x - x0 + w].mean(axis=1) >= 0.5
    cols = win[y - y0:y - y0 + h].mean(axis=0) >= 0.5
    ry, rx = h // 3, w // 3
    top, bottom = _edge(rows, y - y0, -1, ry), _edge(rows, y - y0 + h - 1, 1, ry)
    left, right = _edge(cols, x - x0, -1, rx), _edge(cols, x - x0 + w - 1, 1, rx)
    return x0 + left, y0 + top, right - left + 1, bottom - top + 1


def _corners(patch: np.ndarray, frac: float) -> bool:
    """Ink near all four corners: a box has square corners, ``o``, ``O``, ``D`` do not."""
    c = max(1, int(round(frac * min(patch.shape))))
    return all(q.any() for q in (patch[:c, :c], patch[:c, -c:], patch[-c:, :c], patch[-c:, -c:]))


def _square_at(ink: np.ndarray, cand: tuple[int, int, int, int], k: int, lo: int, hi: int,
               p: dict[str, Any]) -> Box | None:
    band = max(2, int(round(float(p["side_band"]) * min(cand[2:]))))
    x, y, w, h = refine(ink, *cand, band)
    if not (max(lo, 1.1 * k) <= min(w, h) and max(w, h) <= min(hi, 1.8 * k + 2)
            and max(w, h) <= float(p["max_aspect"]) * min(w, h)):
        return None
    patch = ink[y:y + h, x:x + w] > 0
    cover = min(sides(patch, band))
    if cover < float(p["side_cover"]) or not _corners(patch, float(p["corner"])):
        return None
    return Box(x, y, w, h, "box", round(cover, 3))


def find_squares(ink: np.ndarray, p: dict[str, Any]) -> list[Box]:
    """Outlines with four straight inked sides and square corners. Candidates are
    the components of the horizontal+vertical stroke map at a scale near their
    size (largest first, so a box's inner fill is not taken for a box): a tick
    or a cross through the box is no long straight stroke and does not grow them."""
    lo, hi = side_limits(ink.shape, p)
    found: list[Box] = []
    for k in reversed(_scales(lo, hi)):
        # no closing first: it joins a box to the letters and rules beside it
        strokes = (cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((1, k), np.uint8))
                   | cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((k, 1), np.uint8)))
        n, _labels, stats, _ = cv2.connectedComponentsWithStats(strokes, connectivity=8)
        for i in range(1, n):
            x, y, w, h, _area = (int(v) for v in stats[i])
            if min(w, h) < 1.1 * k - 2 or max(w, h) > 1.8 * k + 2:
                continue
            box = _square_at(ink, (x, y, w, h), k, lo, hi, p)
            if box and not any(_overlaps(box, b) or _inside(box, b) for b in found):
                found.append(box)
    return found


def _ring(ink: np.ndarray, box: Box) -> float:
    """Share of 48 points on the outline's circle with ink within 2 px."""
    near = cv2.dilate(ink, np.ones((5, 5), np.uint8))
    cx, cy, r = box.x + box.w / 2, box.y + box.h / 2, box.side / 2 - 1.5
    hits = 0
    for a in np.linspace(0, 2 * math.pi, 48, endpoint=False):
        px, py = int(round(cx + r * math.cos(a))), int(round(cy + r * math.sin(a)))
        hits += bool(0 <= py < ink.shape[0] and 0 <= px < ink.shape[1] and near[py, px])
    return hits / 48


def find_circles(ink: np.ndarray, p: dict[str, Any]) -> list[Box]:
    """Outer contours that are round, convex and inked all around (radio buttons)."""
    lo, hi = side_limits(ink.shape, p)
    contours, _ = cv2.findContours(ink, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    a_lo, a_hi = (float(v) for v in p["circle_area"])
    found = []
    for c in contours:
        x, y, w, h = cv2.boundingRect(c)
        if not (lo <= min(w, h) and max(w, h) <= hi
                and max(w, h) <= float(p["max_aspect"]) * min(w, h)):
            continue
        area = cv2.contourArea(c)
        hull = cv2.contourArea(cv2.convexHull(c))
        # the contour runs through the edge pixels' centres: its box is (w-1) x (h-1)
        if not (a_lo <= area / ((w - 1) * (h - 1)) <= a_hi and hull and area / hull
                >= float(p["circle_solidity"])):
            continue
        box = Box(x, y, w, h, "circle", 0.0)
        ring = _ring(ink, box)
        if ring >= float(p["ring_cover"]):
            found.append(Box(x, y, w, h, "circle", round(ring, 3)))
    return found


def fill_ratio(ink: np.ndarray, box: Box, p: dict[str, Any]) -> float:
    """Ink share of the box's interior, its border (however thick) left out."""
    patch = ink[box.y:box.y + box.h, box.x:box.x + box.w] > 0
    border = 1
    while border < max(2, box.side // 8) and patch[border].mean() > 0.6:
        border += 1  # a thick (or blurred) top edge: step past it, not into a fill
    pad = border + int(round(float(p["inner_pad"]) * box.side))
    if box.shape == "circle":
        pad = max(pad, int(round(0.25 * box.side)))  # a square well inside the ring
    inner = patch[pad:box.h - pad, pad:box.w - pad]
    return float(inner.mean()) if inner.size else 0.0


def _inside(a: Box, b: Box) -> bool:
    return (a.x >= b.x - 1 and a.y >= b.y - 1 and a.x + a.w <= b.x + b.w + 1
            and a.y + a.h <= b.y + b.h + 1)


def _overlaps(a: Box, b: Box) -> bool:
    ix = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    iy = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    return ix > 0 and iy > 0 and ix * iy > 0.3 * min(a.w * a.h, b.w * b.h)


def without_rules(ink: np.ndarray, longest: int) -> np.ndarray:
    """Ink less the straight rules longer than any box (a form's table lines), which
    boxes often touch; a box's own sides are shorter and stay."""
    n = longest + 2
    rules = (cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((1, n), np.uint8))
             | cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((n, 1), np.uint8)))
    return ink & ~rules


def detect(image: np.ndarray, p: dict[str, Any]) -> list[tuple[Box, float]]:
    """Boxes and circles with their interior fill, nested and duplicate ones dropped."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    ink = without_rules(ink_mask(gray, p), side_limits(gray.shape, p)[1])
    squares = find_squares(ink, p)
    circles = [c for c in find_circles(ink, p) if not any(_overlaps(c, s) for s in squares)]
    boxes = [b for b in squares + circles
             if not any(o is not b and _inside(b, o) for o in squares + circles)]
    return [(b, fill_ratio(ink, b, p)) for b in sorted(boxes, key=lambda b: (b.y, b.x))]
