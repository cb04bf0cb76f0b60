"""From line segments to table grids, for the ``table`` stage (ocrq/suite/table.py).

Borderless tables are found from the text alone: segments cluster into text
rows by vertical overlap; a table is a run of rows with cells side by side;
its columns are the x ranges that almost every row leaves blank (a header
spanning columns may cross such a gap, so a few rows may); its rows, the same
on the y axis once wrapped cell text is joined. A cell's span is how many of
those gaps its text crosses. Every number comes from the ``tcd`` parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from statistics import median
from typing import Any

from ocrq.suite.table_cv import Rulings, Seg, ruled_between

NUMERIC = re.compile(r"[\d.,%()$€£¥+\-–—/:*#\s]+")


@dataclass(frozen=True)
class Cell:
    seg: Seg
    row: int
    col: int
    row_span: int = 1
    col_span: int = 1


@dataclass(frozen=True)
class Grid:
    cells: list[Cell]
    rows: int
    cols: int


def is_numeric(text: str) -> bool:
    return bool(text.strip()) and bool(NUMERIC.fullmatch(text)) and any(
        c.isdigit() for c in text)


def text_rows(segs: list[Seg], p: dict[str, Any]) -> list[list[Seg]]:
    """Segments clustered into text rows (centres within ``row_tol`` line heights),
    top to bottom, each row left to right."""
    rows: list[list[Seg]] = []
    for s in sorted(segs, key=lambda s: s.cy):
        if rows and abs(s.cy - median(t.cy for t in rows[-1])) <= float(
                p["row_tol"]) * min(s.pad_h, rows[-1][0].pad_h):
            rows[-1].append(s)
        else:
            rows.append([s])
    return [sorted(r, key=lambda s: s.x0) for r in rows]


def _cover(spans: list[tuple[int, int]], lo: int, hi: int) -> list[int]:
    cover = [0] * (hi - lo + 1)
    for a, b in spans:  # a difference array: +1 at the start, -1 past the end
        cover[a - lo] += 1
        cover[b - lo] -= 1
    out, run = [], 0
    for c in cover[:-1]:
        run += c
        out.append(run)
    return out


def _runs(cover: list[int], limit: int, lo: int, inner: bool = True) -> list[tuple[int, int]]:
    """[a, b) runs of positions covered at most ``limit`` times (with ``inner``,
    only those with covered ground on both sides)."""
    out, start = [], None
    for x, c in enumerate([*cover, limit + 1]):
        if c <= limit and start is None:
            start = x
        elif c > limit and start is not None:
            if not inner or (start > 0 and x < len(cover)):
                out.append((lo + start, lo + x))
            start = None
    return out


def bands(spans: list[tuple[int, int]], tol: int, min_gap: float) -> list[tuple[int, int]]:
    """The gaps between bands of ``spans`` on one axis: blank runs at least
    ``min_gap`` wide; where a run crossed by at most ``tol`` spans (a header
    spanning columns, a cell spanning rows) holds no such blank run, the whole run."""
    if not spans:
        return []
    lo, hi = min(a for a, _ in spans), max(b for _, b in spans)
    cover = _cover(spans, lo, hi)
    gaps = []
    for a, b in _runs(cover, tol, lo, inner=False):
        blank = [(x0, x1) for x0, x1 in _runs(cover[a - lo:b - lo], 0, a, inner=False)
                 if x1 - x0 >= min_gap and lo < x0 and x1 < hi]
        if blank:
            gaps.extend(blank)
        elif b - a >= min_gap and lo < a and b < hi:
            gaps.append((a, b))
    return gaps


def place(a: int, b: int, gaps: list[tuple[int, int]]) -> tuple[int, int]:
    """(index, span) of the extent [a, b) between ``gaps``: it spans every gap it
    crosses from side to side and starts in the band before the first of them;
    one that crosses none lies in the band holding its middle."""
    crossed = [i for i, (g0, g1) in enumerate(gaps) if a < g0 and g1 < b]
    if crossed:
        return crossed[0], len(crossed) + 1
    mid = (a + b) / 2
    return sum(1 for g0, g1 in gaps if (g0 + g1) / 2 <= mid), 1


def is_break(row: list[Seg], gaps: list[tuple[int, int]], p: dict[str, Any]) -> bool:
    """A caption or a paragraph line: one segment that starts left of the first
    column gap and runs across it, or a sentence (``prose_words`` words) running
    across most of the columns (a note under the table)."""
    if not gaps:
        return False
    if len(row) == 1 and row[0].x0 < gaps[0][0] and row[0].x1 > gaps[0][1]:
        return True
    return any(len(s.text.split()) >= int(p["prose_words"]) and 2 * sum(
        s.x0 < g0 and g1 < s.x1 for g0, g1 in gaps) > len(gaps) for s in row)


def column_gaps(rows: list[list[Seg]], p: dict[str, Any]) -> list[tuple[int, int]]:
    tol = max(int(p["gap_tol_min"]), int(float(p["gap_tol"]) * len(rows)))
    unit = median(s.pad_h for r in rows for s in r)
    spans = [(s.x0, s.x1) for r in rows for s in r]
    # one row's segments count once where they overlap each other
    return bands(spans, tol, float(p["col_gap"]) * unit)


def blocks(rows: list[list[Seg]], p: dict[str, Any]) -> list[list[list[Seg]]]:
    """Runs of text rows that form tables: no wide vertical gap inside, no
    caption line crossing the first column gap, and enough rows with cells side
    by side."""
    runs: list[list[list[Seg]]] = []
    for row in rows:
        unit = max(s.pad_h for s in row)
        if runs and min(s.y0 for s in row) - max(s.y1 for s in runs[-1][-1]) <= float(
                p["block_gap"]) * unit:
            runs[-1].append(row)
        else:
            runs.append([row])
    out = []
    for run in runs:
        for piece in _split_at_prose(run, p):
            out.extend(_split_at_breaks(piece, p))
    return out


def _split_at_prose(run: list[list[Seg]], p: dict[str, Any]) -> list[list[list[Seg]]]:
    """A run cut at lines of prose (a title, a note): one segment as wide as
    ``prose_width`` of the run."""
    x0, x1 = min(s.x0 for r in run for s in r), max(s.x1 for r in run for s in r)
    pieces: list[list[list[Seg]]] = [[]]
    for row in run:
        if _prose(row, float(p["prose_width"]) * (x1 - x0), float(p["prose_gap"])):
            pieces.append([])
        else:
            pieces[-1].append(row)
    return [piece for piece in pieces if piece]


def _prose(row: list[Seg], width: float, gap: float) -> bool:
    """One run of words (gaps under ``gap`` line heights) at least ``width`` wide."""
    if len({s.order for s in row}) > 1:  # cells side by side are read as lines apart
        return False
    tight = all(b.x0 - a.x1 < gap * max(a.pad_h, b.pad_h)
                for a, b in zip(row, row[1:], strict=False))
    return tight and row[-1].x1 - row[0].x0 >= width


def _split_at_breaks(run: list[list[Seg]], p: dict[str, Any]) -> list[list[list[Seg]]]:
    multi = [r for r in run if len(r) >= 2]
    if len(multi) < int(p["min_multi_rows"]):
        return []
    gaps = column_gaps(multi, p)
    pieces: list[list[list[Seg]]] = [[]]
    for row in run:
        if is_break(row, gaps, p):
            pieces.append([])
        else:
            pieces[-1].append(row)
    out = []
    for piece in pieces:
        multi_rows = [r for r in piece if len(r) >= 2]
        if len(multi_rows) < int(p["min_multi_rows"]):
            continue
        # trim lone lines before the first and after the last row of cells
        first = next(i for i, r in enumerate(piece) if len(r) >= 2)
        last = max(i for i, r in enumerate(piece) if len(r) >= 2)
        lead = _adjacent(piece[first::-1], gaps, p)[::-1]
        tail = _adjacent(piece[last:], gaps, p)
        out.append([*lead, *piece[first + 1:last], *tail])
    return out


def _adjacent(rows: list[list[Seg]], gaps: list[tuple[int, int]],
              p: dict[str, Any]) -> list[list[Seg]]:
    """``rows[0]`` (a row of cells) and the lone lines after it (in either
    direction) that fit the columns and follow closely (``lead_gap`` heights):
    a header's upper lines, a total's label; not a title or a note."""
    out = rows[:1]
    for row in rows[1:]:
        prev = out[-1]
        gap = max(min(s.y0 for s in row) - max(s.y1 for s in prev),
                  min(s.y0 for s in prev) - max(s.y1 for s in row))
        if not _fits(row, gaps) or gap > float(p["lead_gap"]) * max(s.pad_h for s in row):
            break
        out.append(row)
    return out


def _fits(row: list[Seg], gaps: list[tuple[int, int]]) -> bool:
    return not gaps or all(not (s.x0 < gaps[0][0] and s.x1 > gaps[0][1]) for s in row)


Placed = tuple[Seg, int, int]  # segment, first column, column span


def _place_row(row: list[Seg], gaps: list[tuple[int, int]]) -> list[Placed]:
    """A text row's segments in columns; pieces in the same column join."""
    placed: list[Placed] = []
    for s in row:
        col, span = place(s.x0, s.x1, gaps)
        if placed and placed[-1][1] + placed[-1][2] > col:
            prev, c0, span0 = placed[-1]
            end = max(c0 + span0, col + span)
            placed[-1] = (prev.union(s), min(c0, col), end - min(c0, col))
        else:
            placed.append((s, col, span))
    return placed


def _wraps(a: Placed, b: Placed, mode: str, rules: Rulings, p: dict[str, Any]) -> bool:
    """Whether ``b`` (on the next text row) continues the text of cell ``a``: same
    columns, close below, no rule between. In the first column only a hanging
    indent says so (a label's next line is another row). Elsewhere it depends on
    the two rows: a record whose label wraps ("record") wraps any cell but two
    figures; rows without labels (a header) wrap words, never figures; two rows
    with labels of their own are two records."""
    (sa, ca, na), (sb, cb, nb) = a, b
    if (ca, na) != (cb, nb) or sb.y0 - sa.y1 > float(p["wrap_gap"]) * min(sa.pad_h, sb.pad_h):
        return False
    x0, x1 = max(sa.x0, sb.x0), min(sa.x1, sb.x1)
    if x1 <= x0 or ruled_between(rules, sa.y1, sb.y0, x0, x1, float(p["rule_cover"])):
        return False
    if mode == "heading":
        return True
    if ca == 0:
        return sb.x0 - sa.x0 >= float(p["wrap_indent"]) * sa.pad_h
    if mode == "record":
        return not (is_numeric(sa.text) and is_numeric(sb.text))
    return mode == "header" and not (is_numeric(sa.text) or is_numeric(sb.text))


def _join_wrapped(lines: list[list[Placed]], rules: Rulings, p: dict[str, Any]) -> list[Placed]:
    """Cells with their wrapped lines joined, top to bottom."""
    lines = [list(ln) for ln in lines]
    # above the first figure is the header: its labels wrap, the first column's too
    head = next((i for i, ln in enumerate(lines) if any(is_numeric(s.text) for s, _, _ in ln)),
                0)
    for i in range(len(lines) - 1):
        up, down = lines[i], lines[i + 1]
        stubs = ([c for c in up if c[1] == 0], [c for c in down if c[1] == 0])
        mode = "header"
        if i + 1 < head:
            mode = "heading"
        elif stubs[0] and stubs[1]:
            mode = "record" if _wraps(stubs[0][0], stubs[1][0], "", rules, p) else "none"
        for a in list(up):
            for j, b in enumerate(down):
                if _wraps(a, b, mode, rules, p):
                    down[j] = (a[0].union(b[0]), b[1], b[2])
                    up.remove(a)
                    break
    return [c for ln in lines for c in ln]


def _without_prose_columns(block: list[list[Seg]], gaps: list[tuple[int, int]],
                           p: dict[str, Any]) -> list[list[Seg]]:
    """The block without a first or last column of running text (a commentary
    beside a chart or a table: most of its lines have ``prose_words`` words)."""
    if len(gaps) < 2:
        return block
    drop: set[int] = set()
    for edge in (0, len(gaps)):
        segs = [s for r in block for s in r if place(s.x0, s.x1, gaps) == (edge, 1)]
        wordy = sum(len(s.text.split()) >= int(p["prose_words"]) for s in segs)
        if len(segs) >= 2 and wordy >= float(p["prose_share"]) * len(segs):
            drop.update(id(s) for s in segs)
    if not drop:
        return block
    rows = [[s for s in r if id(s) not in drop] for r in block]
    return [r for r in rows if r]


def build(block: list[list[Seg]], rules: Rulings, p: dict[str, Any]) -> Grid:
    """One table's grid: columns from the text rows' gaps, wrapped text joined,
    then rows from the cells' gaps on the y axis; spans from the gaps crossed."""
    gaps = column_gaps(block, p)
    kept = _without_prose_columns(block, gaps, p)
    if kept is not block:
        block, gaps = kept, column_gaps(kept, p)
    placed = _join_wrapped([_place_row(r, gaps) for r in block], rules, p)
    unit = median(s.pad_h for s, _, _ in placed)
    rgaps = bands([(s.y0, s.y1) for s, _, _ in placed], int(p["row_cross"]),
                  float(p["row_gap"]) * unit)
    at: dict[tuple[int, int], Cell] = {}
    for s, col, span in placed:
        row, rspan = place(s.y0, s.y1, rgaps)
        old = at.get((row, col))
        if old is not None:  # two pieces landed on one grid cell: one cell
            s = old.seg.union(s)
            rspan, span = max(rspan, old.row_span), max(span, old.col_span)
        at[(row, col)] = Cell(s, row, col, rspan, span)
    cells = sorted(at.values(), key=lambda c: (c.row, c.col))
    return Grid(cells, len(rgaps) + 1, len(gaps) + 1)
