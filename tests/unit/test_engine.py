"""The in-process engine on rendered pages with known content (real models)."""

from __future__ import annotations

import numpy as np
import pytest

from ocrq.stages.frames import to_original
from ocrq.stages.rotate import rotate_image
from tests.fixtures import INVOICE_LINES, add_noise, render_page, rotate


def _lines(page) -> list[str]:
    return page.text().splitlines()


def test_reads_rendered_invoice_with_word_spaces(engine, invoice_page):
    page = engine.run(invoice_page, "invoice.png")
    assert _lines(page) == INVOICE_LINES
    assert page.rotation == 0
    assert set(page.models) == {"rot", "std", "dir", "str", "str2"}
    assert set(page.timings_ms) == {"rotate", "detect", "recognize", "reorder"}
    for ln in page.lines:
        assert 0.5 < ln.confidence <= 1.0
        xs = [p[0] for p in ln.polygon]
        ys = [p[1] for p in ln.polygon]
        assert min(xs) >= 0 and max(xs) < page.width
        assert min(ys) >= 0 and max(ys) < page.height


def test_second_reading_off_loads_and_records_no_second_model(model_root, invoice_page):
    from ocrq.engine import Engine
    from ocrq.settings import Settings

    engine = Engine.from_settings(Settings(model_root=model_root, threads=0, second_reading=0))
    engine.preload()
    assert {m.name for m in engine.registry.loaded()} == {"rot", "std", "dir", "str"}
    page = engine.run(invoice_page, "invoice.png")
    assert _lines(page) == INVOICE_LINES  # a clean page needs no second reading
    assert set(page.models) == {"rot", "std", "dir", "str"}
    with pytest.raises(ValueError, match="OCRQ_SECOND_READING"):
        Engine.from_settings(Settings(model_root=model_root, second_reading=-0.1))


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotated_page_reads_like_upright(engine, invoice_page, degrees):
    upright = engine.run(invoice_page, "up.png")
    turned = rotate(invoice_page, degrees)  # counter-clockwise
    page = engine.run(turned, "turned.png")
    assert page.text() == upright.text()
    assert page.rotation == degrees  # ocrq turns it back clockwise by as much
    assert (page.width, page.height) == (turned.shape[1], turned.shape[0])
    # Polygons are given on the image as submitted: the same line lies where
    # the upright line lands after turning.
    h, w = invoice_page.shape[:2]
    for a, b in zip(upright.lines, page.lines, strict=True):
        expect = _turn_ccw(np.array(a.polygon), degrees, w, h)
        got = np.array(b.polygon)
        # Detection rounds sizes differently per orientation: a few px apart.
        assert np.abs(np.sort(expect, axis=0) - np.sort(got, axis=0)).max() < 12


def _turn_ccw(points: np.ndarray, degrees: int, w: int, h: int) -> np.ndarray:
    x, y = points[:, 0], points[:, 1]
    if degrees == 90:
        return np.stack([y, w - 1 - x], axis=1)
    if degrees == 180:
        return np.stack([w - 1 - x, h - 1 - y], axis=1)
    return np.stack([h - 1 - y, x], axis=1)


def test_to_original_inverts_the_turn():
    q = np.array([[10, 20], [50, 20], [50, 30], [10, 30]], np.float32)
    # A 200x100 (w x h) page turned clockwise by 90 becomes 100x200.
    back = to_original(q, 90, uw=100, uh=200)
    # Upright (x', y') = (H-1-y, x) for the submitted (x, y).
    assert np.allclose(np.stack([99 - back[:, 1], back[:, 0]], axis=1), q)
    assert np.allclose(to_original(q, 0, 100, 200), q)


def test_recognition_does_not_depend_on_batching(engine, invoice_page):
    d = engine.step_detect(invoice_page, 0)
    whole = engine.step_recognize(invoice_page, 0, d.polygons, d.flipped).texts
    pieces = []
    for i in range(0, len(d.polygons), 2):
        part = engine.step_recognize(
            invoice_page, 0, d.polygons[i : i + 2], d.flipped[i : i + 2]
        )
        pieces += part.texts
    assert [t for t, _ in pieces] == [t for t, _ in whole]


def test_skewed_and_noisy_scan(engine):
    lines = INVOICE_LINES[:6]
    img = add_noise(rotate(render_page(lines), 2.5), sigma=12, seed=3)
    page = engine.run(img, "skewed.png")
    assert _lines(page) == lines


def test_two_columns_read_one_after_the_other(engine):
    left = ["Left column first", "left column second", "left column third"]
    right = ["Right column first", "right column second", "right column third"]
    img = render_page(["Two column heading"], columns=[left, right], size=26)
    page = engine.run(img, "columns.png")
    assert _lines(page) == ["Two column heading", *left, *right]
    blocks = {ln.text: ln.block for ln in page.lines}
    assert blocks[left[0]] == blocks[left[2]] != blocks[right[0]]


def test_receipt_rows_keep_item_and_price_together(engine):
    img = render_page(
        ["Coffee                              3.80", "Croissant                           2.40",
         "Orange juice                        3.50"],
        font="DejaVuSansMono", size=24,
    )
    page = engine.run(img, "receipt.png")
    assert _lines(page) == ["Coffee 3.80", "Croissant 2.40", "Orange juice 3.50"]


def test_blank_page_gives_no_lines(engine):
    page = engine.run(np.full((300, 400, 3), 255, np.uint8), "blank.png")
    assert page.lines == [] and page.text() == ""


@pytest.mark.parametrize("turn", [90, 180, 270])
def test_a_page_taken_the_wrong_way_up_is_detected_again_upright(engine, invoice_page, turn):
    """The orientation model may confuse 90° with 270°; the line-direction vote then
    turns the page 180°, and detection must run again on the truly upright pixels
    rather than map polygons found on the upside-down page (DB is not equivariant)."""
    upright = engine.step_detect(invoice_page, 0)
    turned = rotate_image(invoice_page, turn)
    correct = (360 - turn) % 360
    d = engine.step_detect(turned, (correct + 180) % 360)  # the wrong way up
    assert d.rotation == correct
    assert (d.polygons, d.flipped, d.leaders) == (upright.polygons, upright.flipped,
                                                  upright.leaders)


@pytest.mark.parametrize("turn", [90, 180, 270])
def test_a_page_turned_by_quarter_turns_reads_exactly_like_the_upright_page(
        engine, invoice_page, turn):
    page = engine.run(invoice_page)
    turned = engine.run(rotate_image(invoice_page, turn))
    assert turned.rotation == (360 - turn) % 360
    assert [(ln.text, ln.confidence, ln.order) for ln in turned.lines] == [
        (ln.text, ln.confidence, ln.order) for ln in page.lines]


@pytest.mark.parametrize("degrees", [98.0, 172.0])
def test_a_page_turned_and_skewed_reads_like_upright(engine, invoice_page, degrees):
    """A quarter turn plus a skew: the turn is taken back losslessly first, then the
    skew is measured on the upright page and turned out (stages/deskew.py)."""
    upright = engine.run(invoice_page)
    img = rotate(invoice_page, degrees)  # counter-clockwise
    d = engine.step_detect(img, engine.step_rotate(img).rotation)
    quarter = int(round(degrees / 90)) * 90
    assert d.rotation == quarter % 360  # turned back clockwise by as much
    assert d.skew == pytest.approx(degrees - quarter, abs=0.5)
    page = engine.run(img)
    assert page.text() == upright.text()
    for ln in page.lines:  # on the image as submitted
        xs, ys = zip(*ln.polygon, strict=True)
        assert min(xs) >= 0 and max(xs) < page.width
        assert min(ys) >= 0 and max(ys) < page.height


@pytest.mark.parametrize("off", [90, 270])
def test_a_page_taken_a_quarter_turn_off_is_turned_back(engine, invoice_page, off):
    """The orientation model may be a quarter off (it is on some skewed photos): lines
    then run up and down the page, and it is turned back before anything is read."""
    upright = engine.step_detect(invoice_page, 0)
    d = engine.step_detect(invoice_page, off)
    assert d.rotation == 0
    assert (d.polygons, d.flipped, d.leaders) == (upright.polygons, upright.flipped,
                                                  upright.leaders)
