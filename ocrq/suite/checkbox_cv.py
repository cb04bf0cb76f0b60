"""Classic-CV checkbox and radio-button finding for the ``checkbox`` stage
(ocrq/suite/checkbox.py): every tuned number comes from the ``chk`` model's
parameters (the shares named below are "most", not tuned: the pinned parameters
of installed repositories stay valid).

Square outlines have four straight inked sides and square corners; they are
found on horizontal/vertical stroke maps, so a tick or a cross through a box
does not break them. Table rules are taken out first (boxes touch them); a box
whose side lay on a rule gets that side back from the rule. Round outlines are
circular, convex and inked all around. A box is ticked when enough ink is
inside it, its border left out.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

# "mostly paper inside": a corner pixel may be missing (_corners) on such an outline
HOLLOW = 0.5
# "mostly inked": the row beside a rule goes with the rule (without_rules)
RULE_EDGE = 0.5


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


def _corners(patch: np.ndarray, frac: float, hollow: bool) -> bool:
    """Ink near all four corners: a box has square corners, ``o``, ``O``, ``D`` do not.
    On a ``hollow`` outline a corner may miss its own pixel when both sides run up
    to it: blur and JPEG take that pixel where the light outer edges of a small
    printed box meet (a dot or a blurred letter is a blob with rounded corners)."""
    c = max(1, int(round(frac * min(patch.shape))))
    qs = (patch, patch[:, ::-1], patch[::-1], patch[::-1, ::-1])  # each corner at q[0, 0]
    return all(q[:c, :c].any() or (hollow and q[0, 1] and q[1, 0]) for q in qs)


def _inner_ink(patch: np.ndarray, band: int) -> float:
    """Ink share inside the outline's band."""
    inner = patch[band:-band, band:-band]
    return float(inner.mean()) if inner.size else 1.0


def _square_on(ink: np.ndarray, cand: tuple[int, int, int, int], k: int, lo: int, hi: int,
               p: dict[str, Any]) -> Box | None:
    band = max(2, int(round(float(p["side_band"]) * min(cand[2:]))))
    x, y, w, h = refine(ink, *cand, band)
    # sides at least k long are what the scale's opening kept (refine may trim the
    # candidate's light rim below 1.1 k, where the next scale down may have merged it)
    if not (max(lo, k) <= min(w, h) and max(w, h) <= min(hi, 1.8 * k + 2)
            and max(w, h) <= float(p["max_aspect"]) * min(w, h)):
        return None
    patch = ink[y:y + h, x:x + w] > 0
    cover = min(sides(patch, band))
    if cover < float(p["side_cover"]):
        return None
    hollow = _inner_ink(patch, band) < HOLLOW
    if not _corners(patch, float(p["corner"]), hollow):
        return None
    return Box(x, y, w, h, "box", round(cover, 3))


def _square_at(ink: np.ndarray, rules: np.ndarray, cand: tuple[int, int, int, int], k: int,
               lo: int, hi: int, p: dict[str, Any]) -> Box | None:
    """The box at a candidate; failing that, near a table rule, the box short of one
    side: that side lay on the rule and went with it (:func:`without_rules`), so
    the rule's pixels around the candidate are put back; the other three sides
    must stand alone."""
    box = _square_on(ink, cand, k, lo, hi, p)
    if box is not None:
        return box
    x, y, w, h = cand
    m = max(w, h) // 2 + 2
    x0, y0 = max(0, x - m), max(0, y - m)
    near = rules[y0:y + h + m, x0:x + w + m]
    if not near.any():
        return None
    b = max(2, int(round(float(p["side_band"]) * min(w, h))))
    cover = sides(ink[y:y + h, x:x + w] > 0, b)
    if sum(c >= float(p["side_cover"]) for c in cover) != 3:
        return None  # a box short of one side, or none
    # the weak side (top, bottom, left, right) starts a band further out: refine
    # looks inwards from there and meets the rule's rows first
    weak = int(np.argmin(cover))
    grow = [(0, -b, 0, b), (0, 0, 0, b), (-b, 0, b, 0), (0, 0, b, 0)][weak]
    local = ink[y0:y + h + m, x0:x + w + m]
    gx, gy = max(0, x - x0 + grow[0]), max(0, y - y0 + grow[1])
    gw = min(local.shape[1], x - x0 + w + grow[0] + grow[2]) - gx
    gh = min(local.shape[0], y - y0 + h + grow[1] + grow[3]) - gy
    box = _square_on(local, (gx, gy, gw, gh), k, lo, hi, p)
    if box is not None:  # the side was there, a pixel or two out of the candidate
        return dataclasses.replace(box, x=box.x + x0, y=box.y + y0)
    box = _square_on(local | near, (gx, gy, gw, gh), k, lo, hi, p)
    if box is None:
        return None
    box = dataclasses.replace(box, x=box.x + x0, y=box.y + y0)
    band = max(2, int(round(float(p["side_band"]) * box.side)))
    own = sides(ink[box.y:box.y + box.h, box.x:box.x + box.w] > 0, band)
    # the rule gave exactly the missing side: three sides of its own
    return box if sum(c >= float(p["side_cover"]) for c in own) == 3 else None


def find_squares(ink: np.ndarray, rules: np.ndarray, p: dict[str, Any]) -> list[Box]:
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
            box = _square_at(ink, rules, (x, y, w, h), k, lo, hi, p)
            if box and not any(_overlaps(box, b) or _inside(box, b) for b in found):
                found.append(box)
    return found


def _ring(ink: np.ndarray, box: Box) -> float:
    """Share of 48 points on the outline's circle with ink within 2 px."""
    x0, y0 = max(0, box.x - 3), max(0, box.y - 3)  # the box's window, not the page
    near = cv2.dilate(ink[y0:box.y + box.h + 3, x0:box.x + box.w + 3], np.ones((5, 5), np.uint8))
    cx, cy, r = box.x + box.w / 2 - x0, box.y + box.h / 2 - y0, box.side / 2 - 1.5
    hits = 0
    for a in np.linspace(0, 2 * math.pi, 48, endpoint=False):
        px, py = int(round(cx + r * math.cos(a))), int(round(cy + r * math.sin(a)))
        hits += bool(0 <= py < near.shape[0] and 0 <= px < near.shape[1] and near[py, px])
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


def _within(a: Box, b: Box) -> bool:
    """``a`` inside ``b`` and clear of its outline all round."""
    return (a.x > b.x + 1 and a.y > b.y + 1 and a.x + a.w < b.x + b.w - 1
            and a.y + a.h < b.y + b.h - 1)


def _overlaps(a: Box, b: Box) -> bool:
    ix = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    iy = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    return ix > 0 and iy > 0 and ix * iy > 0.3 * min(a.w * a.h, b.w * b.h)


def without_rules(ink: np.ndarray, longest: int) -> tuple[np.ndarray, np.ndarray]:
    """Ink less the straight rules longer than any box (a form's table lines), which
    boxes often touch; a box's own sides are shorter and stay. And the rules."""
    n = longest + 2

    def rule(along: tuple[int, int], across: tuple[int, int]) -> np.ndarray:
        found = cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones(along, np.uint8))
        # its blurred edge, a pixel beside it: inked in pieces, too broken to be a
        # rule itself, yet its pieces would join the boxes along the rule; a box's
        # own side there is short and leaves that edge mostly paper
        edge = cv2.dilate(found, np.ones(across, np.uint8)) & ink & ~found
        dense = cv2.boxFilter(edge, cv2.CV_32F, along[::-1]) >= RULE_EDGE * 255
        return found | (edge & np.where(dense, 255, 0).astype(np.uint8))

    rules = rule((1, n), (3, 1)) | rule((n, 1), (1, 3))
    return ink & ~rules, rules


def form_ink(image: np.ndarray, p: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The page's ink less its table rules (what boxes are found and told from
    letters on), and the rules."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    return without_rules(ink_mask(gray, p), side_limits(gray.shape, p)[1])


def detect(ink: np.ndarray, rules: np.ndarray, p: dict[str, Any]) -> list[tuple[Box, float]]:
    """Boxes and circles on :func:`form_ink` with their interior fill, nested and
    duplicate ones dropped."""
    squares = find_squares(ink, rules, p)
    # a square clear of a circle's outline is a ticked radio button's dot: the circle stays
    circles = [c for c in find_circles(ink, p)
               if not any(_overlaps(c, s) and not _within(s, c) for s in squares)]
    boxes = [b for b in squares + circles
             if not any(o is not b and _inside(b, o) for o in squares + circles)]
    return [(b, fill_ratio(ink, b, p)) for b in sorted(boxes, key=lambda b: (b.y, b.x))]
