"""Lone glyphs DB does not see: ink blobs of a character's size beside found lines.

DB reads the page at most 1024 px on its longest side. On a tall receipt that
is half the scan's resolution, and a lone narrow glyph (the quantity "1" before
an item, an "I", a colon set apart) becomes a stroke a pixel wide whose
probability map breaks into specks: no box at all, so no weak candidate either
(stages/detect.py). The scan itself still shows the glyph plainly.

Here the page is binarised at full resolution (adaptive threshold: receipts are
unevenly lit), and every blob of ink that no region holds (strong, or DB's own
weak boxes), about a text line tall and no wider than a glyph, on the row of a
line found outright and of that line's colour, is proposed as a weak candidate.
The second look (stages/second_look.py) then reads it grown to a character cell
and keeps it only where the recogniser reads a letter, digit or colon
confidently: a speck, a rule's end or a logo's fragment does not pass.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ocrq.stages.quads import quad_height


@dataclass(frozen=True)
class InkLook:
    """Thresholds of the proposal, in units of the page's median line height."""

    min_height: float = 0.45  # a blob at least this tall...
    max_height: float = 1.3  # ... and at most this tall
    max_width: float = 1.0  # no wider than this (a glyph, not a word)...
    min_width: float = 0.09  # ... nor thinner (a rule, a border's edge: no glyph's stroke)
    dot: float = 0.3  # a blob at most this tall and wide is a dot...
    dot_gap: float = 0.6  # ... and two dots this close, one above the other, a colon
    colon_min_height: float = 0.3  # (a colon spans less than a glyph's height)
    row_overlap: float = 0.6  # shares this much of its height with a found line's row
    gap: float = 0.3  # and keeps this far from either end of every found box
    # Its ink's colour cast (per unit of darkness) this far from its row's print, and
    # not of the same hue: a pen's mark.
    max_tint: float = 0.06
    same_hue: float = 0.9  # cosine of two casts of one hue
    work_height: float = 32  # px: a page with taller lines is looked at scaled down
    max_pixels: int = 8_000_000  # and any page scaled to at most this many pixels
    per_row: int = 2  # candidates per found line's row: bounds the extra reading


def ink_candidates(image: np.ndarray, boxes: Sequence[np.ndarray], opts: InkLook,
                   others: Sequence[np.ndarray] = ()) -> list[np.ndarray]:
    """Axis-aligned quads (clockwise from top-left, image pixels) of lone glyph-sized
    ink blobs beside the found ``boxes`` (the strong regions' polygons) and outside
    them and ``others`` (candidates already proposed: DB's weak boxes)."""
    if not boxes:
        return []
    line_h = float(np.median([quad_height(b) for b in boxes]))
    if line_h < 6:
        return []  # too small to tell a glyph from a speck
    # Looked at with lines about work_height px tall (a phone photo's 30 Mpx page
    # costs what a scanned receipt does, and a glyph is still many pixels), and at
    # most max_pixels in all. By a whole factor: INTER_AREA's fast path.
    h, w = image.shape[:2]
    factor = max(1, round(line_h / opts.work_height),
                 math.ceil(math.sqrt(h * w / opts.max_pixels)))
    scale = 1.0 / factor
    if factor > 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        boxes = [b * scale for b in boxes]
        others = [b * scale for b in others]
        line_h *= scale
    return [q / scale for q in _candidates(image, boxes, others, line_h, opts)]


def _candidates(image: np.ndarray, boxes: Sequence[np.ndarray],
                others: Sequence[np.ndarray], line_h: float, opts: InkLook
                ) -> list[np.ndarray]:
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    block = max(3, int(line_h * 2) | 1)
    ink = cv2.adaptiveThreshold(gray, 1, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV,
                                block, 15)
    taken = np.zeros(ink.shape, np.uint8)
    # Kept apart from a box's ends (the next letter of a word DB cut short is not a
    # lone glyph), not from the lines above and below: receipts are set tight.
    pad = int(round(line_h * opts.gap))
    bounds = [_bounds(b) for b in boxes]
    for x0, y0, x1, y1 in [*bounds, *map(_bounds, others)]:
        taken[max(0, y0) : y1 + 1, max(0, x0 - pad) : x1 + pad + 1] = 1
    n, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    blobs = [tuple(int(v) for v in stats[i][:4]) for i in range(1, n)]
    shapes = [(b, opts.min_height) for b in blobs]
    shapes += [(c, opts.colon_min_height) for c in _colons(blobs, line_h, opts)]
    shapes.sort(key=lambda s: (s[0][1], s[0][0]))  # top to bottom, colons among them
    tints: dict[int, np.ndarray | None] = {}  # a found line's print colour, when asked
    per_row: dict[int, int] = {}
    out: list[np.ndarray] = []
    for (x, y, w, h), min_height in shapes:
        if not (min_height * line_h <= h <= opts.max_height * line_h
                and opts.min_width * line_h <= w <= opts.max_width * line_h):
            continue
        if taken[y : y + h, x : x + w].any():
            continue
        row = [i for i, (_, a, _, b) in enumerate(bounds)
               if min(y + h, b) - max(y, a) >= opts.row_overlap * h]
        if not row:
            continue
        if image.ndim == 3 and _pen(image, ink, (x, y, w, h), row, bounds, tints, opts):
            continue
        # At most a few per line's row (the cost of reading them is bounded, and a
        # long receipt's last rows, its totals, get their share).
        key = row[0]
        if per_row.get(key, 0) >= opts.per_row:
            continue
        per_row[key] = per_row.get(key, 0) + 1
        out.append(np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float32))
    return out


def _tint(pixels: np.ndarray) -> np.ndarray | None:
    """The colour cast of BGR ``pixels`` per unit of ink: each pixel less its grey
    level, over how dark it is. A blend of one ink with the white paper (a thin
    glyph's anti-aliased edge, a blurred scan) has the cast of the ink itself."""
    if not len(pixels):
        return None
    px = pixels.astype(np.float32)
    grey = px.mean(axis=1, keepdims=True)
    return np.asarray((px - grey).sum(axis=0) / max(float((255.0 - grey).sum()), 1.0))


def _same_ink(a: np.ndarray, b: np.ndarray, opts: InkLook) -> bool:
    """Two casts are one ink: close, or (both coloured) of the same hue, since a
    scan fades a thin glyph's colour more than a line's."""
    if float(np.linalg.norm(a - b)) <= opts.max_tint:
        return True
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return min(na, nb) >= opts.max_tint and float(a @ b) / (na * nb) >= opts.same_hue


def _pen(image: np.ndarray, ink: np.ndarray, blob: tuple[int, int, int, int],
         row: Sequence[int], bounds: Sequence[tuple[int, int, int, int]],
         tints: dict[int, np.ndarray | None], opts: InkLook) -> bool:
    """The blob's ink has another colour than the print of every line on its row: a
    pen's mark (a tick, a handwritten figure), which the printed text does not
    include. Compared with the row's own lines, not with grey (some receipts print
    in purple) nor with the whole page (a coloured logo would shift that)."""
    x, y, w, h = blob
    own = _tint(image[y : y + h, x : x + w][ink[y : y + h, x : x + w].astype(bool)])
    if own is None:
        return False
    for i in row:
        if i not in tints:
            x0, y0, x1, y1 = bounds[i]
            x0, y0 = max(0, x0), max(0, y0)
            tints[i] = _tint(image[y0 : y1 + 1 : 2, x0 : x1 + 1 : 2][
                ink[y0 : y1 + 1 : 2, x0 : x1 + 1 : 2].astype(bool)])
        line = tints[i]
        if line is None or _same_ink(own, line, opts):
            return False
    return True


def _colons(blobs: Sequence[tuple[int, int, int, int]], line_h: float, opts: InkLook
            ) -> list[tuple[int, int, int, int]]:
    """Pairs of dots one above the other (a colon's, a semicolon's), as one blob:
    each dot alone is far too small to be proposed, and joining every blob's
    vertical gaps would join a column's stacked glyphs ("1" above "1") too.

    Dots are bucketed by column and sorted by top, so each one looks only at the
    dots starting below it in its own and the neighbouring columns: a page
    speckled with noise costs about as many steps as it has dots."""
    dot = opts.dot * line_h
    cell = max(1, int(math.ceil(dot)))
    columns: dict[int, list[tuple[int, int, int, int]]] = {}
    for b in blobs:
        if b[2] <= dot and b[3] <= dot:
            columns.setdefault(int(b[0] + b[2] / 2) // cell, []).append(b)
    for col in columns.values():
        col.sort(key=lambda b: b[1])
    tops = {k: [b[1] for b in col] for k, col in columns.items()}
    out = []
    for k, col in columns.items():
        for x, y, w, h in col:
            for kk in (k - 1, k, k + 1):
                near = columns.get(kk)
                if near is None:
                    continue
                j = bisect.bisect_left(tops[kk], y + h)  # dots that start below this one
                if j < len(near):
                    x2, y2, w2, h2 = near[j]
                    if (y2 - (y + h) <= opts.dot_gap * line_h
                            and abs((x + w / 2) - (x2 + w2 / 2)) <= max(w, w2)):
                        left, right = min(x, x2), max(x + w, x2 + w2)
                        out.append((left, y, right - left, y2 + h2 - y))
                        break
    return out


def _bounds(q: np.ndarray) -> tuple[int, int, int, int]:
    return (int(q[:, 0].min()), int(q[:, 1].min()), int(np.ceil(q[:, 0].max())),
            int(np.ceil(q[:, 1].max())))
