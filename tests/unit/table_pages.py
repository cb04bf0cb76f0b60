"""Generated table pages with known cells, for the ``table`` stage's tests:
a bordered grid (a header cell spanning two rows, two spanning two columns)
and a borderless financial table (a header spanning two columns over a rule,
right-aligned figures), each with a title above and a paragraph below.

A cell's truth box is the box of its text's ink (cTDaR's convention).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from tests.fixtures import _font

SIZE = 22


@dataclass(frozen=True)
class TrueCell:
    text: str
    row: int
    col: int
    row_span: int
    col_span: int
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the text's ink


def _text(draw: ImageDraw.ImageDraw, x: float, y: float, text: str,
          anchor: str = "lt") -> tuple[int, int, int, int]:
    font = _font("DejaVuSans", SIZE)
    draw.text((x, y), text, font=font, fill=0, anchor=anchor)
    x0, y0, x1, y1 = draw.textbbox((x, y), text, font=font, anchor=anchor)
    return int(x0), int(y0), int(x1), int(y1)


def _prose(draw: ImageDraw.ImageDraw, y: int) -> None:
    _text(draw, 40, y, "The figures above are unaudited and were prepared for")
    _text(draw, 40, y + 34, "internal use only; totals may not add up due to rounding.")


def bordered() -> tuple[np.ndarray, list[TrueCell]]:
    """5 x 5 grid: "Region" spans rows 0-1, "2025" and "2026" span two columns."""
    page = Image.new("L", (1000, 560), 255)
    draw = ImageDraw.Draw(page)
    _text(draw, 40, 20, "Quarterly sales by region")
    xs, ys = [40, 260, 430, 600, 770, 940], [80, 130, 180, 230, 280, 330]
    for i, y in enumerate(ys):  # no rule under "Region": it spans rows 0-1
        draw.line([(xs[1] if i == 1 else xs[0], y), (xs[-1], y)], fill=0, width=2)
    for i, x in enumerate(xs):  # none inside "2025" and "2026": they span two columns
        draw.line([(x, ys[1] if i in (2, 4) else ys[0]), (x, ys[-1])], fill=0, width=2)
    layout = [
        ("Region", 0, 0, 2, 1), ("2025", 0, 1, 1, 2), ("2026", 0, 3, 1, 2),
        ("Q1", 1, 1, 1, 1), ("Q2", 1, 2, 1, 1), ("Q1", 1, 3, 1, 1), ("Q2", 1, 4, 1, 1),
        ("North", 2, 0, 1, 1), ("1,204", 2, 1, 1, 1), ("1,310", 2, 2, 1, 1),
        ("1,452", 2, 3, 1, 1), ("1,508", 2, 4, 1, 1),
        ("South", 3, 0, 1, 1), ("872", 3, 1, 1, 1), ("915", 3, 2, 1, 1),
        ("990", 3, 3, 1, 1), ("1,036", 3, 4, 1, 1),
        ("West", 4, 0, 1, 1), ("655", 4, 1, 1, 1), ("702", 4, 2, 1, 1),
        ("748", 4, 3, 1, 1), ("811", 4, 4, 1, 1),
    ]
    cells = []
    for text, r, c, rs, cs in layout:
        cx = (xs[c] + xs[c + cs]) / 2
        cy = (ys[r] + ys[r + rs]) / 2
        box = _text(draw, cx, cy, text, anchor="mm")
        cells.append(TrueCell(text, r, c, rs, cs, box))
    _prose(draw, 400)
    return np.asarray(page.convert("RGB"))[:, :, ::-1].copy(), cells


def borderless() -> tuple[np.ndarray, list[TrueCell]]:
    """A label column and three right-aligned figure columns; "Year ended 31
    December" spans the first two over a short rule."""
    page = Image.new("L", (1000, 600), 255)
    draw = ImageDraw.Draw(page)
    _text(draw, 40, 20, "Consolidated statement of income")
    right = [540, 720, 900]
    cells = [TrueCell("Year ended 31 December", 0, 1, 1, 2,
                      _text(draw, (right[0] + right[1]) / 2 - 40, 100, "Year ended 31 December",
                            anchor="mt"))]
    draw.line([(420, 132), (right[1], 132)], fill=0, width=2)
    for c, text in enumerate(["2024", "2025", "Change"]):
        cells.append(TrueCell(text, 1, c + 1, 1, 1, _text(draw, right[c], 145, text, "rt")))
    body = [("Revenue", "12,480", "13,905", "11.4%"),
            ("Cost of sales", "(7,312)", "(8,020)", "9.7%"),
            ("Gross profit", "5,168", "5,885", "13.9%"),
            ("Operating expenses", "(2,904)", "(3,118)", "7.4%"),
            ("Net income", "2,264", "2,767", "22.2%")]
    for r, row in enumerate(body):
        y = 200 + 40 * r
        cells.append(TrueCell(row[0], r + 2, 0, 1, 1, _text(draw, 40, y, row[0])))
        for c, text in enumerate(row[1:]):
            cells.append(TrueCell(text, r + 2, c + 1, 1, 1, _text(draw, right[c], y, text, "rt")))
    _prose(draw, 440)
    return np.asarray(page.convert("RGB"))[:, :, ::-1].copy(), cells
