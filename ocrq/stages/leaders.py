"""Dot leaders: the rows of dots that join a label to its value.

"TOTAL AMT .............. RM 60.31" — the DB detector keeps the words but
leaves most of the dots outside its boxes (they are small and faint), so the
text would lose them. After detection we look right of each near-horizontal
line, up to the next box on the same row: a leader is a run of at least
``min_dots`` small, roughly square blobs of ink on the text's baseline half,
evenly spaced, of even size and height. The count is appended to the line's
text as ``.`` characters when the page is assembled, and the line's polygon is
drawn out to the last dot (its *reach*), so that it holds all of its text.

A rule under the text, speckle and ordinary punctuation do not qualify: a rule
lies below the text's own rows, speckle is neither evenly spaced nor aligned,
and a line of text ends the search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np


@dataclass(frozen=True)
class LeaderOptions:
    min_dots: int = 4
    max_span: float = 40.0  # search at most this many line heights to the right
    max_dot: float = 0.3  # a dot is at most this share of the box height across
    max_aspect: float = 1.8  # (long side + 1) / (short side + 1) of a dot
    max_pitch_cv: float = 0.2  # spread of the spacing between dots
    max_size_cv: float = 0.5  # spread of the dots' areas
    max_y_spread: float = 0.08  # spread of their centres, in box heights
    max_skew: float = 0.1  # only near-horizontal lines (|dy/dx| of the top edge)


class Leader(NamedTuple):
    """A line's leader: its dots, and how far (px, along the line) the last one
    reaches past the line's polygon."""

    dots: int
    reach: float


NO_LEADER = Leader(0, 0.0)


def find_leaders(
    image: np.ndarray, polygons: Sequence[np.ndarray], options: LeaderOptions | None = None
) -> list[Leader]:
    """For each polygon, the leader right of it on ``image`` (NO_LEADER: none)."""
    opts = options or LeaderOptions()
    if not len(polygons):
        return []
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    quads = np.asarray([np.asarray(p, np.float32).reshape(4, 2) for p in polygons])
    return [_leader(gray, quads, i, opts) for i in range(len(quads))]


def reach_out(quad: np.ndarray, reach: float) -> np.ndarray:
    """``quad`` (clockwise from top-left) drawn out ``reach`` px along its top edge's
    direction at its right end: the polygon of a line with its leader."""
    q = np.asarray(quad, np.float64).reshape(4, 2).copy()
    along = q[1] - q[0]
    norm = float(np.linalg.norm(along))
    if reach > 0 and norm > 0:
        q[1:3] += along / norm * reach
    return q


@dataclass(frozen=True)
class _Box:
    """A near-horizontal line's pixel box: rows ``y0:y1``, columns ``xl:xr``."""

    y0: int
    y1: int
    xl: int
    xr: int

    @property
    def height(self) -> int:
        return self.y1 - self.y0


def _leader(gray: np.ndarray, quads: np.ndarray, i: int, opts: LeaderOptions) -> Leader:
    box = _line_box(quads[i], gray.shape[0], opts)
    if box is None:
        return NO_LEADER
    limit = _search_limit(box, np.delete(quads, i, axis=0), gray.shape[1], opts)
    if limit - box.xr < 2 * box.height or box.xr - box.xl < 2:
        return NO_LEADER
    ink = _text_ink(gray[box.y0:box.y1, box.xl:box.xr])
    if ink is None:
        return NO_LEADER
    thr, top, bottom = ink
    binary = (gray[box.y0:box.y1, box.xr:limit] < thr).astype(np.uint8)
    # A leader's first dot lies within 1.2 line heights of the text (_dots):
    # without ink there no leader starts, and labelling the strip (most of
    # this stage's time) is skipped; most lines end so.
    if not binary[:, : int(1.2 * box.height) + 1].any():
        return NO_LEADER
    xs, ys, areas = _dots(binary, box.height, top, bottom, opts)
    if len(xs) < opts.min_dots or not _regular(xs, ys, areas, box.height, opts):
        return NO_LEADER
    # The strip starts at box.xr; the last dot's far edge, about half its width past
    # its centre, from the quad's own right end; never past the page's last column.
    end = min(box.xr + xs[-1] + 0.5 * float(np.sqrt(areas[-1])) + 1.0, gray.shape[1] - 1.0)
    return Leader(len(xs), round(max(0.0, end - float(quads[i][:, 0].max())), 1))


def _line_box(q: np.ndarray, height: int, opts: LeaderOptions) -> _Box | None:
    """The box of quad ``q`` if it is a near-horizontal line tall enough to measure."""
    dx, dy = q[1] - q[0]
    if dx <= 0 or abs(dy) > opts.max_skew * dx:
        return None
    if np.linalg.norm(q[3] - q[0]) >= 1.5 * dx:
        return None  # a vertical line (read turned a quarter): no leader to its right
    y0 = max(0, int(np.floor(min(q[0, 1], q[1, 1]))))
    y1 = min(height, int(np.ceil(max(q[2, 1], q[3, 1]))))
    if y1 - y0 < 6:
        return None
    xl, xr = max(0, int(np.floor(q[:, 0].min()))), int(np.ceil(q[:, 0].max()))
    return _Box(y0, y1, xl, xr)


def _search_limit(box: _Box, others: np.ndarray, width: int, opts: LeaderOptions) -> int:
    """The column where the search right of ``box`` ends."""
    y0, y1, xr, bh = box.y0, box.y1, box.xr, box.height
    limit = min(width, int(xr + opts.max_span * bh))
    # The next box on the same row (vertical overlap) ends the search.
    if len(others):
        oy0, oy1 = others[:, :, 1].min(axis=1), others[:, :, 1].max(axis=1)
        ox0 = others[:, :, 0].min(axis=1)
        overlap = np.minimum(y1, oy1) - np.maximum(y0, oy0)
        same_row = (overlap > 0.4 * np.minimum(bh, oy1 - oy0)) & (ox0 > xr - 0.5 * bh)
        if same_row.any():
            limit = min(limit, int(ox0[same_row].min()))
    return limit


def _text_ink(text: np.ndarray) -> tuple[float, int, int] | None:
    """The ink threshold of the line's text and the top and bottom of its own rows."""
    if int(text.max()) - int(text.min()) < 40:
        return None
    # Ink is what the line's own text calls ink (Otsu on the text box).
    thr, _ = cv2.threshold(text, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    rows = np.flatnonzero((text < thr).mean(axis=1) > 0.08)
    if rows.size == 0:
        return None
    # The text's own rows: the longest run (a rule under the text is another run).
    runs = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1)
    run = max(runs, key=len)
    return thr, int(run[0]), int(run[-1])


def _dots(
    binary: np.ndarray, bh: int, top: int, bottom: int, opts: LeaderOptions
) -> tuple[list[float], list[float], list[int]]:
    """Centres (x, y) and areas of the dots left to right, up to what ends the leader."""
    n, _, stats, centres = cv2.connectedComponentsWithStats(binary, connectivity=8)
    order = sorted(range(1, n), key=lambda k: stats[k, 0])
    small = opts.max_dot * bh
    xs: list[float] = []
    ys: list[float] = []
    areas: list[int] = []
    for k in order:
        _, _, w, h, area = (int(v) for v in stats[k])
        cx, cy = float(centres[k, 0]), float(centres[k, 1])
        dot = (w <= small and h <= small and area >= 2
               and max(w, h) + 1 <= opts.max_aspect * (min(w, h) + 1)
               and top + 0.45 * (bottom - top) <= cy <= bottom + 1)
        if not dot:
            if h >= small or w > small:
                break  # real ink: text or a rule ends the leader
            continue  # a speck
        if not xs:
            if cx > 1.2 * bh:
                break  # a leader starts right where the text ends
        elif len(xs) == 1:
            if cx - xs[-1] > 1.2 * bh:
                break
        else:
            pitch = float(np.median(np.diff(xs)))
            if cx - xs[-1] > 1.7 * pitch:
                break
            if cx - xs[-1] < 0.5 * pitch:
                continue  # a fragment of the previous dot
        xs.append(cx)
        ys.append(cy)
        areas.append(area)
    return xs, ys, areas


def _regular(
    xs: list[float], ys: list[float], areas: list[int], bh: int, opts: LeaderOptions
) -> bool:
    """Evenly spaced, aligned and of even size: a leader, not speckle."""
    gaps, sizes = np.diff(xs), np.asarray(areas, float)
    return not (gaps.std() > opts.max_pitch_cv * gaps.mean()
                or float(np.std(ys)) > opts.max_y_spread * bh
                or sizes.std() > opts.max_size_cv * sizes.mean())
