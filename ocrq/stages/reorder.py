"""Reading order: fragments -> printed lines -> blocks, top-to-bottom, left-to-right.

1. The page's skew is estimated from the long edges of the fragments and
   removed, so slightly skewed scans still group into the right lines.
2. A recursive XY-cut splits the page at horizontal whitespace bands (rows)
   and vertical whitespace rivers (columns). A river is treated as a column
   break only when the two sides are not row-aligned (a receipt's item and
   price columns are read line by line; two text columns are read one after
   the other), or when both sides hold wide text.
3. Inside a leaf, fragments whose vertical extents overlap form one printed
   line, ordered left to right. A new block starts at a column change or a
   vertical gap wider than a line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Placement:
    order: int
    block: int
    line: int


@dataclass
class _Frag:
    index: int
    left: float
    right: float
    top: float
    bottom: float

    @property
    def height(self) -> float:
        return max(self.bottom - self.top, 1.0)

    @property
    def cy(self) -> float:
        return (self.top + self.bottom) / 2


def estimate_skew(polygons: Sequence[np.ndarray]) -> float:
    """Median angle (radians) of the top edges of wide fragments, clamped to ±15°."""
    angles = []
    for q in polygons:
        q = np.asarray(q, np.float32).reshape(4, 2)
        dx, dy = q[1] - q[0]
        h = np.linalg.norm(q[3] - q[0])
        if dx > 2 * h and dx > 0:
            angles.append(np.arctan2(dy, dx))
    if not angles:
        return 0.0
    return float(np.clip(np.median(angles), -np.pi / 12, np.pi / 12))


def reading_order(polygons: Sequence[np.ndarray]) -> list[Placement]:
    """Placement of every polygon (same order as the input)."""
    if len(polygons) == 0:
        return []
    skew = estimate_skew(polygons)
    c, s = np.cos(-skew), np.sin(-skew)
    rot = np.array([[c, -s], [s, c]], np.float32)
    frags = []
    for i, q in enumerate(polygons):
        p = np.asarray(q, np.float32).reshape(4, 2) @ rot.T
        frags.append(_Frag(i, p[:, 0].min(), p[:, 0].max(), p[:, 1].min(), p[:, 1].max()))
    unit = float(np.median([f.height for f in frags]))
    leaves: list[tuple[tuple[int, ...], list[list[_Frag]]]] = []
    _xycut(frags, unit, (), leaves)

    placements: dict[int, Placement] = {}
    order = line_no = 0
    block = -1
    prev_path: tuple[int, ...] | None = None
    prev_bottom = None
    for path, lines in leaves:
        for line in lines:
            top = min(f.top for f in line)
            new_block = (
                prev_path is None
                or path[: _column_depth(path)] != prev_path[: _column_depth(prev_path)]
                or (prev_bottom is not None and top - prev_bottom > 1.2 * unit)
            )
            if new_block:
                block += 1
            for f in line:
                placements[f.index] = Placement(order, block, line_no)
                order += 1
            line_no += 1
            prev_path, prev_bottom = path, max(f.bottom for f in line)
    return [placements[i] for i in range(len(polygons))]


def _column_depth(path: tuple[int, ...]) -> int:
    # Path entries >= 1000 mark a column split; the prefix up to the last one
    # identifies the column a leaf belongs to.
    last = 0
    for k, step in enumerate(path):
        if step >= 1000:
            last = k + 1
    return last


def _xycut(
    frags: list[_Frag],
    unit: float,
    path: tuple[int, ...],
    out: list[tuple[tuple[int, ...], list[list[_Frag]]]],
) -> None:
    cols = _split_columns(frags, unit)
    if cols is not None:
        for k, col in enumerate(cols):
            _xycut(col, unit, (*path, 1000 + k), out)
        return
    # Paragraph-sized gaps first, so a title above two columns does not force
    # the columns into shared rows; then the gaps between single lines.
    rows = _split_rows(frags, unit, coarse=True) or _split_rows(frags, unit, coarse=False)
    if rows is not None:
        for k, row in enumerate(rows):
            _xycut(row, unit, (*path, k), out)
        return
    out.append((path, _group_lines(frags)))


def _gaps(intervals: list[tuple[float, float]], min_gap: float) -> list[float]:
    """Cut positions in the gaps of the union of ``intervals`` wider than ``min_gap``."""
    cuts = []
    intervals = sorted(intervals)
    end = intervals[0][1]
    for a, b in intervals[1:]:
        if a - end > min_gap:
            cuts.append((a + end) / 2)
        end = max(end, b)
    return cuts


def _split_rows(frags: list[_Frag], unit: float, coarse: bool) -> list[list[_Frag]] | None:
    if len(frags) < 2:
        return None
    if coarse:
        cuts = _gaps([(f.top, f.bottom) for f in frags], 0.8 * unit)
        if len(cuts) == 0:
            return None
        return _partition(frags, cuts, key=lambda f: f.cy)
    # Shrink each fragment's band so lines that touch (skew, tall glyphs) still separate.
    bands = [(f.top + 0.2 * f.height, f.bottom - 0.2 * f.height) for f in frags]
    cuts = _gaps(bands, 0.0)
    if not cuts:
        return None
    return _partition(frags, cuts, key=lambda f: f.cy)


def _split_columns(frags: list[_Frag], unit: float) -> list[list[_Frag]] | None:
    if len(frags) < 4:
        return None
    cuts = _gaps([(f.left, f.right) for f in frags], 1.5 * unit)
    if not cuts:
        return None
    cols = _partition(frags, cuts, key=lambda f: (f.left + f.right) / 2)
    # Keep the split only if it separates real columns, not the cells of rows.
    for a, b in zip(cols, cols[1:], strict=False):
        if len(a) < 2 or len(b) < 2:
            return None
        aligned = sum(any(_v_overlap(fb, fa) > 0.5 for fa in a) for fb in b) / len(b)
        wide = min(_median_width(a), _median_width(b)) > 8 * unit
        if aligned >= 0.5 and not wide:
            return None
    return cols


def _median_width(frags: list[_Frag]) -> float:
    return float(np.median([f.right - f.left for f in frags]))


def _v_overlap(a: _Frag, b: _Frag) -> float:
    inter = min(a.bottom, b.bottom) - max(a.top, b.top)
    return max(inter, 0.0) / min(a.height, b.height)


def _partition(frags: list[_Frag], cuts: list[float], key) -> list[list[_Frag]]:  # noqa: ANN001
    groups: list[list[_Frag]] = [[] for _ in range(len(cuts) + 1)]
    for f in frags:
        groups[int(np.searchsorted(cuts, key(f)))].append(f)
    return [g for g in groups if g]


def _group_lines(frags: list[_Frag]) -> list[list[_Frag]]:
    lines: list[list[_Frag]] = []
    for f in sorted(frags, key=lambda f: f.cy):
        best, best_ov = None, 0.5
        for line in lines[-3:]:
            ov = max(_v_overlap(f, g) for g in line)
            if ov > best_ov:
                best, best_ov = line, ov
        if best is None:
            lines.append([f])
        else:
            best.append(f)
    for line in lines:
        line.sort(key=lambda f: f.left)
    lines.sort(key=lambda ln: min(f.top for f in ln))
    return lines
