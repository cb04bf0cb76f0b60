"""Table regions and cells (issue 13), as ocrq's own plug-in.

- Model kind ``tcd``: the detector's parameters, a JSON "weights" file made by
  code (suite/params.py) and pinned by its sha256 like any weight file. The classic
  CV (table_cv.py, table_grid.py) reads every number it uses from that file, so
  a better-tuned or a learned detector replaces it with ``ocrq models import tcd FILE``.
- Stage ``table``: ruling lines by morphology, the recognised lines cut where
  they cross a column gap and tightened to their ink, rows by vertical overlap,
  columns from the whitespace the rows share, wrapped cell text joined, spans
  from the gaps a cell's text crosses. The cell text is the recognition
  stage's: the OCR lines the stage receives.

Result field ``tables``: ``[{box, cells: [{box, row, col, row_span, col_span,
text}], rows, cols, html}]``. Boxes are ``[x0, y0, x1, y1]`` on the image as
submitted; a cell's box is the box of its text (cTDaR's convention).
"""

from __future__ import annotations

import html
from typing import Any

import cv2
import numpy as np

from ocrq.plugins import Plugin, StageInput, StageSpec
from ocrq.suite.checkbox import to_upright, upright_lines
from ocrq.suite.params import params_model
from ocrq.suite.table_cv import Rulings, Seg, ink, line_box, rulings, segments
from ocrq.suite.table_grid import Grid, blocks, build, text_rows
from ocrq.suite.table_ruled import ruled_tables

# Tuned on generated tables (tests/unit/test_table.py) and checked on the 18
# cTDaR dev pages as a whole (no per-file rule); numbers in line heights are
# scale-free.
PARAMS: dict[str, Any] = {
    "format": "ocrq-table-cv/1",
    "ink_max_grey": 170,  # ink is darker than Otsu's level and than this
    "ink_min_px": 1,  # ink pixels a column of a line needs to count as inked
    "band_gap_px": 2,  # a line's ink rows this close belong together (an i's dot)
    "rule_min_frac": 0.08,  # a ruling line is at least this share of the page side
    "rule_min_px": 40,
    "rule_block": 31,  # a rule is darker than the mean of this window (px) ...
    "rule_contrast": 25,  # ... by this many grey levels (light grey rules count)
    "rule_max_px": 5,  # a rule is thinner than this; a filled bar is no rule
    "vrule_cut": 0.6,  # share of a line's height a vertical rule covers to cut it
    "split_gap": 0.6,  # a line is cut at ink gaps this many line heights wide
    "row_tol": 0.35,  # segments of one text row: centres within this many heights
    "block_gap": 2.6,  # a blank this many line heights tall ends a table
    "lead_gap": 1.5,  # a lone line above or below the rows of cells, this close, belongs
    "min_multi_rows": 2,  # rows with cells side by side a table needs
    "prose_width": 0.5,  # a lone line this share of a run's width is prose, not a row
    "prose_gap": 1.6,  # ... when its words are closer than this many line heights
    "prose_words": 6,  # an edge column is running text when lines of this many words
    "prose_share": 0.6,  # ... make up this share of it
    "gap_tol": 0.1,  # share of rows that may cross a column gap (spanning headers)
    "gap_tol_min": 2,
    "row_cross": 1,  # cells that may cross a row gap (a cell spanning rows)
    "col_gap": 0.5,  # narrowest column gap, in line heights
    "row_gap": 0.05,  # narrowest row gap, in line heights
    "wrap_gap": 0.6,  # wrapped cell text: next line within this many heights
    "wrap_indent": 0.4,  # first column: a wrapped line is indented this much
    "min_cells": 4,  # fewer cells than this are no borderless table
    "max_graphics": 0.035,  # share of its box solidly inked by neither text nor rules
    "rule_cover": 0.5,  # a rule between two lines covers this share of them
    "grid_min_px": 30,  # a grid of rules is at least this wide and tall
    "grid_rule_px": 15,  # inside a grid, rules are at least this long
    "grid_rule_text": 1.5,  # ... and this many times the height of its text
    "grid_line_share": 0.08,  # ... and a line's pieces add up to this share of the grid
    "grid_unruled": 3,  # a grid row whose cells hold this many text rows each is unruled
    "grid_cover": 0.6,  # two slots are one cell unless a rule covers this share between
}
PARAMS_SHA256 = "2dd8557b8fa2bddd2d3f1e4a772011198eb69775f9f0e60919299c42da535beb"


def page_segments(page: StageInput, p: dict[str, Any]) -> tuple[list[Seg], np.ndarray, Rulings]:
    """The OCR lines of the upright page as cell pieces, its ink and its rulings."""
    gray = cv2.cvtColor(page.image, cv2.COLOR_BGR2GRAY) if page.image.ndim == 3 else page.image
    # rules are often printed lighter than text, and tables shaded: a rule is what
    # is darker than its surroundings by ``rule_contrast`` grey levels
    mask = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV,
                                 int(p["rule_block"]) | 1, float(p["rule_contrast"]))
    rules = rulings(mask, p)
    text_ink = ink(gray, p) & ~(rules.horizontal | rules.vertical)
    segs: list[Seg] = []
    for ln in upright_lines(page):
        box = line_box(np.array([[ln.x0, ln.y0], [ln.x1, ln.y1]]), gray.shape)
        if box[2] > box[0] and box[3] > box[1] and ln.text.strip():
            segs.extend(segments(box, ln.text, ln.order, text_ink, rules, p))
    return segs, mask, rules


def _marks(segs: list[Seg], mask: np.ndarray, rules: Rulings) -> np.ndarray:
    """Dark pixels that are neither text nor rules: drawings, bars, shading edges."""
    marks = mask & ~(rules.horizontal | rules.vertical)
    for s in segs:
        marks[max(0, s.y0 - 2):s.y1 + 2, max(0, s.x0 - 2):s.x1 + 2] = 0
    # solid shapes only (bars, pies, filled markers): strokes and edges are thinner
    return cv2.morphologyEx(marks, cv2.MORPH_OPEN, cv2.getStructuringElement(
        cv2.MORPH_RECT, (7, 7)))


def _box(grid: Grid) -> tuple[int, int, int, int]:
    xs = [c.seg for c in grid.cells]
    return (min(s.x0 for s in xs), min(s.y0 for s in xs), max(s.x1 for s in xs),
            max(s.y1 for s in xs))


def grids(segs: list[Seg], mask: np.ndarray, rules: Rulings, p: dict[str, Any]) -> list[Grid]:
    """Bordered tables (a grid of rules) first; the text left over is searched for
    borderless ones."""
    ruled = ruled_tables(mask, rules, segs, p)
    used = set().union(*(r.used for r in ruled)) if ruled else set()
    rest = [s for k, s in enumerate(segs) if k not in used]
    found = [r.grid for r in ruled]
    marks = _marks(segs, mask, rules)
    for block in blocks(text_rows(rest, p), p):
        grid = build(block, rules, p)
        x0, y0, x1, y1 = _box(grid)
        # a chart's labels line up like a table: its bars and curves give it away
        if (len(grid.cells) >= int(p["min_cells"]) and grid.cols >= 2
                and marks[y0:y1, x0:x1].mean() / 255 <= float(p["max_graphics"])):
            found.append(grid)
    return sorted(found, key=lambda g: min(c.seg.y0 for c in g.cells))


def _fit(r: int, c: int, rs: int, cs: int, taken: set[tuple[int, int]],
         starts: set[tuple[int, int]]) -> tuple[int, int]:
    """Spans cut back so a cell covers no slot another cell starts in or took."""
    def free(i: int, j: int) -> bool:
        return (r + i, c + j) not in taken and ((i, j) == (0, 0) or (r + i, c + j) not in starts)

    while cs > 1 and not all(free(0, j) for j in range(cs)):
        cs -= 1
    while rs > 1 and not all(free(i, j) for i in range(rs) for j in range(cs)):
        rs -= 1
    return rs, cs


def to_html(grid: Grid) -> str:
    """The grid as an HTML table: every cell once at its top-left slot, spans as
    rowspan/colspan, empty slots as empty cells, all text escaped."""
    taken: set[tuple[int, int]] = set()
    starts = {(c.row, c.col): c for c in grid.cells}
    out = ["<table>"]
    for r in range(grid.rows):
        out.append("<tr>")
        for c in range(grid.cols):
            if (r, c) in taken:
                continue
            cell = starts.get((r, c))
            if cell is None:
                out.append("<td></td>")
                continue
            rs, cs = _fit(r, c, min(cell.row_span, grid.rows - r),
                          min(cell.col_span, grid.cols - c), taken, set(starts))
            taken.update((r + i, c + j) for i in range(rs) for j in range(cs))
            attrs = (f' rowspan="{rs}"' if rs > 1 else "") + (f' colspan="{cs}"' if cs > 1 else "")
            out.append(f"<td{attrs}>{html.escape(cell.seg.text)}</td>")
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def _back(box: tuple[float, float, float, float], rotation: int, width: int,
          height: int) -> list[float]:
    x0, y0, x1, y1 = box
    pts = to_upright(np.array([[x0, y0], [x1, y1]], np.float64), rotation, width, height,
                     back=True)
    (a, b), (c, d) = pts.min(axis=0), pts.max(axis=0)
    return [round(float(a), 1), round(float(b), 1), round(float(c), 1), round(float(d), 1)]


def run_table(page: StageInput) -> dict[str, Any]:
    p = page.model("tcd").runtime
    rotation = int(page.page.get("rotation", 0)) % 360
    h, w = page.image.shape[:2]
    width, height = (h, w) if rotation in (90, 270) else (w, h)  # the submitted size
    segs, mask, rules = page_segments(page, p)
    tables = []
    for grid in grids(segs, mask, rules, p):
        box = _box(grid)
        tables.append({
            "box": _back(box, rotation, width, height),
            "rows": grid.rows, "cols": grid.cols,
            "cells": [{"box": _back((c.seg.x0, c.seg.y0, c.seg.x1, c.seg.y1), rotation,
                                    width, height),
                       "row": c.row, "col": c.col, "row_span": c.row_span,
                       "col_span": c.col_span, "text": c.seg.text} for c in grid.cells],
            "html": to_html(grid),
        })
    return {"tables": tables, "count": len(tables)}


plugin = Plugin(
    name="ocrq-suite-table",
    kinds=(params_model("tcd", "table region and cell detector parameters (classic CV)",
                        PARAMS, PARAMS_SHA256, "table.json"),),
    stages=(StageSpec("table", run_table, models=("tcd",), hardware="cpu",
                      result_key="tables"),),
)
