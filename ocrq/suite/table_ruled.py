"""Bordered tables for the ``table`` stage (ocrq/suite/table.py): a grid of
ruling lines found by morphology; cells are the grid's slots, joined where the
line between two slots is missing (a spanning cell); the text of a cell is the
OCR segments whose middle lies in it. Every number comes from the ``tcd``
parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ocrq.suite.table_cv import Rulings, Seg, thin
from ocrq.suite.table_grid import Cell, Grid, is_numeric, text_rows


@dataclass(frozen=True)
class Ruled:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the grid
    grid: Grid
    used: frozenset[int]  # indices of the segments inside it


def _positions(profile: np.ndarray, min_len: int, start: int) -> list[int]:
    """Middles of the runs of ``profile >= min_len`` (one ruling line each)."""
    flags = np.concatenate(([0], (profile >= min_len).astype(np.int8), [0]))
    edges = np.diff(flags)
    return [start + (a + b - 1) // 2 for a, b in zip(np.flatnonzero(edges == 1),
                                                     np.flatnonzero(edges == -1), strict=True)]


def _lines(mask: np.ndarray, box: tuple[int, int, int, int], text_h: float,
           p: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, list[int], list[int]]:
    """Short ruling segments inside a grid's box (a one-line row's dividers are
    short, but longer than the text is tall: a "1" or an "l" is no rule), and
    the x and y of its lines."""
    x0, y0, x1, y1 = box
    region = mask[y0:y1, x0:x1]
    n = max(3, int(p["grid_rule_px"]), int(float(p["grid_rule_text"]) * text_h))
    thick = int(p["rule_max_px"]) + 1
    horiz = thin(cv2.morphologyEx(region, cv2.MORPH_OPEN, cv2.getStructuringElement(
        cv2.MORPH_RECT, (n, 1))), thick, across=0)
    vert = thin(cv2.morphologyEx(region, cv2.MORPH_OPEN, cv2.getStructuringElement(
        cv2.MORPH_RECT, (1, n))), thick, across=1)
    min_len = max(n, int(float(p["grid_line_share"]) * min(x1 - x0, y1 - y0)))
    xs = _positions((vert > 0).sum(axis=0), min_len, 0)
    ys = _positions((horiz > 0).sum(axis=1), min_len, 0)
    return horiz, vert, xs, ys


def _joined(vert: np.ndarray, horiz: np.ndarray, xs: list[int], ys: list[int],
            cover: float) -> list[int]:
    """Union-find over the grid's slots: neighbours with no line between them are one cell."""
    rows, cols = len(ys) - 1, len(xs) - 1
    parent = list(range(rows * cols))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for r in range(rows):
        for c in range(cols):
            a, b = ys[r] + 2, max(ys[r] + 3, ys[r + 1] - 2)
            if c + 1 < cols and (vert[a:b, max(0, xs[c + 1] - 2):xs[c + 1] + 3] > 0).any(
                    axis=1).mean() < cover:
                parent[find(r * cols + c)] = find(r * cols + c + 1)
            a, b = xs[c] + 2, max(xs[c] + 3, xs[c + 1] - 2)
            if r + 1 < rows and (horiz[max(0, ys[r + 1] - 2):ys[r + 1] + 3, a:b] > 0).any(
                    axis=0).mean() < cover:
                parent[find(r * cols + c)] = find((r + 1) * cols + c)
    return [find(i) for i in range(rows * cols)]


def _grid(box: tuple[int, int, int, int], mask: np.ndarray, segs: list[Seg],
          p: dict[str, Any]) -> Ruled | None:
    inside = [s.h for s in segs if box[0] <= s.cx < box[2] and box[1] <= s.cy < box[3]]
    horiz, vert, xs, ys = _lines(mask, box, float(np.median(inside)) if inside else 0.0, p)
    if len(xs) < 3 or len(ys) < 3:
        return None  # rules above and below a table, not a grid
    cols = len(xs) - 1
    roots = _joined(vert, horiz, xs, ys, float(p["grid_cover"]))
    slots: dict[int, list[int]] = {}
    for i, root in enumerate(roots):
        slots.setdefault(root, []).append(i)
    x0, y0 = box[0], box[1]
    text: dict[int, list[int]] = {}
    used = set()
    for k, s in enumerate(segs):
        cx, cy = s.cx - x0, s.cy - y0
        if xs[0] <= cx < xs[-1] and ys[0] <= cy < ys[-1]:
            c = int(np.searchsorted(xs, cx, side="right")) - 1
            r = int(np.searchsorted(ys, cy, side="right")) - 1
            text.setdefault(roots[r * cols + c], []).append(k)
            used.add(k)
    if _unruled(text, segs, p):
        return None
    cells = []
    for root, members in slots.items():
        if root not in text:
            continue  # an empty cell: a blank slot in the HTML
        rs, cs = [i // cols for i in members], [i % cols for i in members]
        parts = sorted((segs[k] for k in text[root]), key=lambda s: (round(s.cy), s.x0))
        seg = parts[0]
        for other in parts[1:]:
            seg = seg.union(other)
        cells.append(Cell(seg, min(rs), min(cs), max(rs) - min(rs) + 1, max(cs) - min(cs) + 1))
    cells.sort(key=lambda c: (c.row, c.col))
    grid = Grid(cells, len(ys) - 1, cols)
    return Ruled((x0 + xs[0], y0 + ys[0], x0 + xs[-1], y0 + ys[-1]), grid, frozenset(used))


def _unruled(text: dict[int, list[int]], segs: list[Seg], p: dict[str, Any]) -> bool:
    """Whether the grid leaves rows out: two of its cells hold ``grid_unruled``
    or more text rows at the same heights, one per record, one of them a column
    of figures. (Wrapped text in a truly ruled table does not line up cell to
    cell; headers wrapped alike hold no figures.)"""
    need = int(p["grid_unruled"])
    tall = [[r[0] for r in rows] for members in text.values()
            if len(rows := text_rows([segs[k] for k in members], p)) >= need]
    for i, a in enumerate(tall):
        for b in tall[i + 1:]:
            if not any(sum(is_numeric(r.text) for r in x) * 2 >= len(x) for x in (a, b)):
                continue
            level = sum(any(abs(x.cy - y.cy) <= float(p["row_tol"]) * x.pad_h for y in b)
                        for x in a)
            if level >= need:
                return True
    return False


def ruled_tables(mask: np.ndarray, rules: Rulings, segs: list[Seg],
                 p: dict[str, Any]) -> list[Ruled]:
    """Every grid of ruling lines on the page with text in it."""
    lines = cv2.dilate(rules.horizontal | rules.vertical,
                       cv2.getStructuringElement(cv2.MORPH_RECT, (5, 5)))
    n, _, stats, _ = cv2.connectedComponentsWithStats(lines, connectivity=8)
    out = []
    for i in range(1, n):
        x, y, w, h = (int(v) for v in stats[i, :4])
        if min(w, h) < int(p["grid_min_px"]):
            continue
        box = (x, y, min(mask.shape[1], x + w), min(mask.shape[0], y + h))
        ruled = _grid(box, mask, segs, p)
        if ruled is not None and ruled.grid.cells:
            out.append(ruled)
    return out
