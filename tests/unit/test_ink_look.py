"""Lone glyphs DB does not see (issue 10): ink blobs of a glyph's size beside found
lines are proposed as weak candidates (stages/ink_look.py), and the engine keeps
those that recognition reads as a glyph."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from ocrq.engine import Engine
from ocrq.stages.ink_look import InkLook, ink_candidates
from tests.fixtures import render_page

SIZE = 20
ITEMS = ["Hot Chocolate      13.00", "Cappucino          13.00", "Caramel Crepe      13.90"]


def _paste(page: np.ndarray, img: np.ndarray, x: int, y: int) -> tuple[int, int, int, int]:
    h, w = img.shape[:2]
    page[y : y + h, x : x + w] = np.minimum(page[y : y + h, x : x + w], img)
    return x, y, w, h


def _quad(x: int, y: int, w: int, h: int) -> np.ndarray:
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float32)


def _ink(img: np.ndarray, bgr: tuple[int, int, int]) -> np.ndarray:
    """Black text of a rendering recoloured (white stays white)."""
    out = img.copy()
    dark = (img < 128).all(axis=2)
    out[dark] = bgr
    return out


def _receipt(items: list[str] = ITEMS, pitch: int = 40, colour: tuple[int, int, int] = (0, 0, 0)
             ) -> tuple[np.ndarray, list[np.ndarray], list[tuple[int, int, int, int]]]:
    """A quantity column of lone "1"s before item lines, ``pitch`` px apart, printed
    in ``colour``; (page, the item lines' boxes, the "1"s' boxes)."""
    # Tall, as a receipt is: DB reads it at half its resolution, where a thin "1" fades.
    page = np.full((max(2800, 120 + pitch * len(items)), 700, 3), 255, np.uint8)
    lines, ones = [], []
    for i, item in enumerate(items):
        y = 60 + pitch * i
        text = _ink(render_page([item], font="DejaVuSansMono", size=SIZE, margin=2), colour)
        lines.append(_quad(*_paste(page, text, 110, y)))
        one = _ink(render_page(["1"], font="DejaVuSansMono", size=SIZE, margin=2), colour)
        ones.append(_paste(page, one, 60, y))
    return page, lines, ones


def _holds(quad: np.ndarray, box: tuple[int, int, int, int]) -> bool:
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    return bool(quad[:, 0].min() <= cx <= quad[:, 0].max()
                and quad[:, 1].min() <= cy <= quad[:, 1].max())


def test_lone_glyphs_beside_lines_are_proposed_and_nothing_else() -> None:
    page, lines, ones = _receipt()
    # A colon set apart on the first line's row; a "1" on no line's row; a pen's tick.
    colon = _paste(page, render_page([":"], font="DejaVuSansMono", size=SIZE, margin=2),
                   480, 60)
    lone = _paste(page, render_page(["1"], font="DejaVuSansMono", size=SIZE, margin=2), 60, 400)
    pen = _ink(render_page(["3"], font="DejaVuSansMono", size=SIZE, margin=2), (200, 60, 20))
    tick = _paste(page, pen, 600, 100)  # blue ink (BGR) on the second item's row
    found = ink_candidates(page, lines, InkLook())
    for glyph in [*ones, colon]:
        assert sum(_holds(q, glyph) for q in found) == 1, glyph
    assert not any(_holds(q, lone) or _holds(q, tick) for q in found)
    assert len(found) == len(ones) + 1  # nothing inside the item lines
    # A glyph already proposed (DB's weak box) is not proposed twice.
    again = ink_candidates(page, lines, InkLook(), others=[_quad(*ones[0])])
    assert len(again) == len(found) - 1
    assert ink_candidates(page, [], InkLook()) == []


def test_print_of_any_colour_is_looked_at_and_a_coloured_logo_changes_nothing() -> None:
    # Purple print (some receipts): its lone glyphs are print, not a pen's.
    page, lines, ones = _receipt(colour=(140, 40, 120))
    assert len(ink_candidates(page, lines, InkLook())) == len(ones)
    # Black print under a red logo and a red line elsewhere on the page.
    page, lines, ones = _receipt()
    page[1500:1540, 100:600] = (30, 30, 220)
    red = _ink(render_page(["TOTAL 39.90"], font="DejaVuSansMono", size=SIZE, margin=2),
               (30, 30, 220))
    _paste(page, red, 110, 1700)
    assert len(ink_candidates(page, lines, InkLook())) == len(ones)


def test_tight_leading_a_long_receipt_and_specks_do_not_hide_glyphs() -> None:
    # Lines set tight (pitch about the text's height) and 60 rows: every row's "1"
    # (a per-page cap once dropped the last rows, the totals).
    items = [f"Item {i:02d}            {i}.50" for i in range(60)]
    page, lines, ones = _receipt(items, pitch=26)
    found = ink_candidates(page, lines, InkLook())
    assert all(sum(_holds(q, one) for q in found) == 1 for one in ones)
    # A colon among a thousand specks of noise (pairing them all once took seconds).
    page, lines, _ = _receipt()
    rng = np.random.default_rng(7)
    for x, y in zip(rng.integers(0, 700, 1000), rng.integers(400, 2700, 1000), strict=True):
        page[y : y + 2, x : x + 2] = 0
    colon = _paste(page, render_page([":"], font="DejaVuSansMono", size=SIZE, margin=2),
                   480, 60)
    assert sum(_holds(q, colon) for q in ink_candidates(page, lines, InkLook())) == 1


def test_the_engine_reads_a_quantity_column_it_did_not_detect(engine: Engine) -> None:
    page, _, _ = _receipt()
    page = cv2.GaussianBlur(page, (3, 3), 0)
    det = replace(engine.options.detect, weak_thresh=0.0)  # DB's own weak boxes off

    def read(ink: InkLook | None) -> list[str]:
        engine.options = replace(engine.options, detect=replace(det, ink_look=ink))
        return [line.text for line in engine.run(page).lines]

    before = engine.options
    try:
        without, with_ink = read(None), read(InkLook())
    finally:
        engine.options = before
    assert without.count("1") < len(ITEMS)  # DB alone misses some of them here
    assert with_ink.count("1") == len(ITEMS)
    assert [t for t in with_ink if t != "1"] == [t for t in without if t != "1"]
