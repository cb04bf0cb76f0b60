"""Lone glyphs DB does not see: ink blobs of a character's size beside found lines.

DB reads the page at most 1024 px on its longest side. On a tall receipt that
is half the scan's resolution, and a lone narrow glyph (the quantity "1" before
an item, an "I", a colon set apart) becomes a stroke a pixel wide whose
probability map breaks into specks: no box at all, so no weak candidate either
(stages/detect.py). The scan itself still shows the glyph plainly.

Here the page is binarised at full resolution (adaptive threshold: receipts are
unevenly lit), and every blob of ink that no region holds, about a text line tall
and no wider than a glyph, on the row of a line found outright, is proposed as a
weak candidate. The second look (stages/second_look.py) then reads it grown to a
character cell and keeps it only where the recogniser reads a letter, digit or
colon confidently: a speck, a rule's end or a logo's fragment does not pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class InkLook:
    """Thresholds of the proposal, in units of the page's median line height."""

    min_height: float = 0.45  # a blob at least this tall...
    max_height: float = 1.3  # ... and at most this tall
    max_width: float = 1.0  # no wider than this (a glyph, not a word)
    dot: float = 0.3  # a blob at most this tall and wide is a dot...
    dot_gap: float = 0.6  # ... and two dots this close, one above the other, a colon
    colon_min_height: float = 0.3  # (a colon spans less than a glyph's height)
    row_overlap: float = 0.6  # shares this much of its height with a found line's row
    gap: float = 0.3  # and keeps this far from either end of every found box
    max_tint: float = 6  # its ink's colour cast this far from the page's print: a pen's
    work_height: float = 32  # px: a page with taller lines is looked at scaled down
    max_candidates: int = 40  # per page: bounds the second look's extra reading


def ink_candidates(image: np.ndarray, boxes: Sequence[np.ndarray], opts: InkLook,
                   others: Sequence[np.ndarray] = ()) -> list[np.ndarray]:
    """Axis-aligned quads (clockwise from top-left, image pixels) of lone glyph-sized
    ink blobs beside the found ``boxes`` (the strong regions' polygons) and outside
    them and ``others`` (candidates already proposed: DB's weak boxes)."""
    if not boxes:
        return []
    line_h = float(np.median([_height(b) for b in boxes]))
    if line_h < 6:
        return []  # too small to tell a glyph from a speck
    # Looked at with lines about work_height px tall: a phone photo's 30 Mpx page
    # costs what a scanned receipt does, and a glyph is still many pixels.
    # By a whole factor: INTER_AREA's fast path (a third of the time of 1/3.5).
    scale = 1.0 / max(1, round(line_h / opts.work_height))
    if scale < 1.0:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        boxes = [b * scale for b in boxes]
        others = [b * scale for b in others]
        line_h *= scale
    return [q / scale for q in _candidates(image, boxes, others, line_h, opts)]


def _candidates(image: np.ndarray, boxes: Sequence[np.ndarray],
                others: Sequence[np.ndarray], line_h: float, opts: InkLook
                ) -> list[np.ndarray]:
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    block = int(line_h * 2) | 1
    ink = cv2.adaptiveThreshold(gray, 1, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV,
                                block, 15)
    taken = np.zeros(ink.shape, np.uint8)
    # Kept apart from a box's ends (the next letter of a word DB cut short is not a
    # lone glyph), not from the lines above and below: receipts are set tight.
    pad = int(round(line_h * opts.gap))
    for b in [*boxes, *others]:
        x0, y0, x1, y1 = _bounds(b)
        taken[max(0, y0) : y1 + 1, max(0, x0 - pad) : x1 + pad + 1] = 1
    rows = [(_bounds(b)[1], _bounds(b)[3]) for b in boxes]
    page_tint = None
    if image.ndim == 3:  # the page's print, from a sample of its ink
        sample = ink[::3, ::3].astype(bool)
        page_tint = _tint(image[::3, ::3][sample]) if sample.any() else None
    n, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    blobs = [tuple(int(v) for v in stats[i][:4]) for i in range(1, n)]
    out: list[np.ndarray] = []
    shapes = [(b, opts.min_height) for b in blobs]
    shapes += [(c, opts.colon_min_height) for c in _colons(blobs, line_h, opts)]
    for (x, y, w, h), min_height in shapes:
        if not (min_height * line_h <= h <= opts.max_height * line_h
                and w <= opts.max_width * line_h):
            continue
        if taken[y : y + h, x : x + w].any():
            continue
        if not any(min(y + h, b) - max(y, a) >= opts.row_overlap * h for a, b in rows):
            continue
        if page_tint is not None and _pen(image[y : y + h, x : x + w],
                                          ink[y : y + h, x : x + w], page_tint, opts):
            continue
        out.append(np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float32))
        if len(out) >= opts.max_candidates:
            break
    return out


def _tint(pixels: np.ndarray) -> np.ndarray:
    """The mean colour cast of BGR ``pixels``: each one less its own grey level."""
    px = pixels.astype(np.float32)
    return np.asarray((px - px.mean(axis=1, keepdims=True)).mean(axis=0))


def _pen(patch: np.ndarray, ink: np.ndarray, page_tint: np.ndarray, opts: InkLook) -> bool:
    """The blob's ink has another colour than the page's print: a pen's mark (a tick,
    a handwritten figure), which the printed text does not include. Compared with
    the page's own ink, not with grey: some receipts print in purple or blue."""
    mask = ink.astype(bool)
    if not mask.any():
        return False
    return float(np.linalg.norm(_tint(patch[mask]) - page_tint)) > opts.max_tint


def _colons(blobs: Sequence[tuple[int, int, int, int]], line_h: float, opts: InkLook
            ) -> list[tuple[int, int, int, int]]:
    """Pairs of dots one above the other (a colon's, a semicolon's), as one blob:
    each dot alone is far too small to be proposed, and joining every blob's
    vertical gaps would join a column's stacked glyphs ("1" above "1") too."""
    dot = opts.dot * line_h
    dots = sorted((b for b in blobs if b[2] <= dot and b[3] <= dot), key=lambda b: b[1])
    out = []
    for i, (x, y, w, h) in enumerate(dots):
        for x2, y2, w2, h2 in dots[i + 1 :]:
            if y2 - (y + h) > opts.dot_gap * line_h:
                break  # sorted by top: the rest are further down
            if y2 >= y + h and abs((x + w / 2) - (x2 + w2 / 2)) <= max(w, w2):
                left, right = min(x, x2), max(x + w, x2 + w2)
                out.append((left, y, right - left, y2 + h2 - y))
                break
    return out


def _height(q: np.ndarray) -> float:
    return float(max(np.linalg.norm(q[0] - q[3]), np.linalg.norm(q[1] - q[2])))


def _bounds(q: np.ndarray) -> tuple[int, int, int, int]:
    return (int(q[:, 0].min()), int(q[:, 1].min()), int(np.ceil(q[:, 0].max())),
            int(np.ceil(q[:, 1].max())))
