"""Dot leaders right of a line (stages/leaders.py) and their dots in the page text."""

from __future__ import annotations

import numpy as np
from PIL import ImageDraw

from ocrq.stages.leaders import NO_LEADER, find_leaders, reach_out
from tests.fixtures import GREY, _font, dots, label_with


def test_counts_the_dots_of_a_leader():
    for n in (4, 9, 23):
        image, quad = label_with(dots(n))
        assert [f.dots for f in find_leaders(image, [quad])] == [n]


def test_the_next_box_on_the_row_ends_the_leader():
    image, quad = label_with(dots(20))
    x_stop = quad[1, 0] + 8 + 10 * 12 - 4  # between the 12th and the 13th dot
    value = quad.copy()
    value[:, 0] += x_stop - value[0, 0]
    assert [f.dots for f in find_leaders(image, [quad, value])][0] == 12


def test_text_after_a_gap_of_dots_ends_the_leader():
    def then_text(d: ImageDraw.ImageDraw, x_end: int, baseline: int) -> None:
        dots(6)(d, x_end, baseline)
        d.text((x_end + 8 + 6 * 10, 20), "RM 60.31", font=_font("DejaVuSansMono", 24), fill=0)
    image, quad = label_with(then_text)
    assert [f.dots for f in find_leaders(image, [quad])] == [6]


def test_vertical_lines_have_no_leader():
    image, quad = label_with(dots(12))
    x0, y0 = quad[0]
    tall = np.array([[x0, y0], [x0 + 20, y0], [x0 + 20, y0 + 60], [x0, y0 + 60]], np.float32)
    assert [f.dots for f in find_leaders(image, [tall])] == [0]


def test_rules_speckle_and_plain_punctuation_are_not_leaders():
    def rule(d: ImageDraw.ImageDraw, x_end: int, baseline: int) -> None:
        # A dashed rule under the whole line, as receipts print between sections.
        for x in range(10, 880, 9):
            d.rectangle([x, baseline + 8, x + 4, baseline + 9], fill=GREY)
    image, quad = label_with(rule)
    assert [f.dots for f in find_leaders(image, [quad])] == [0]

    rng = np.random.default_rng(7)
    def speckle(d: ImageDraw.ImageDraw, x_end: int, baseline: int) -> None:
        for _ in range(40):
            x, y = int(rng.integers(x_end, 880)), int(rng.integers(10, 70))
            s = int(rng.integers(1, 3))
            d.rectangle([x, y, x + s, y + s], fill=int(rng.integers(60, 200)))
    image, quad = label_with(speckle)
    assert [f.dots for f in find_leaders(image, [quad])] == [0]

    image, quad = label_with(dots(3))  # "..." after a word is the recogniser's job
    assert [f.dots for f in find_leaders(image, [quad])] == [0]
    image, quad = label_with(lambda d, x, y: None)
    assert [f.dots for f in find_leaders(image, [quad])] == [0]


def _leader_to(n: int) -> tuple[np.ndarray, np.ndarray, float]:
    """A label with an ``n``-dot leader, its quad, and the last dot's far edge (x)."""
    seen: dict[str, float] = {}

    def lead(d: ImageDraw.ImageDraw, x_end: int, baseline: int) -> None:
        seen["x"] = x_end + 8 + (n - 1) * 10 + 1.6  # dots(): start 8, pitch 10, r 1.6
        dots(n)(d, x_end, baseline)
    image, quad = label_with(lead)
    return image, quad, seen["x"]


def test_a_leader_reaches_to_its_last_dot():
    for n in (5, 17):
        image, quad, last = _leader_to(n)
        [found] = find_leaders(image, [quad])
        assert found.dots == n
        assert abs(float(quad[:, 0].max()) + found.reach - last) <= 2.0, (found, last)
    image, quad = label_with(lambda d, x, y: None)
    assert find_leaders(image, [quad]) == [NO_LEADER]


def test_a_leader_never_reaches_past_the_page():
    image, quad, last = _leader_to(10)
    for width in (int(np.ceil(last)), int(np.ceil(last)) + 1):
        cut = np.ascontiguousarray(image[:, :width])  # the last dot at the page's edge
        [found] = find_leaders(cut, [quad])
        assert found.dots == 10
        assert float(quad[:, 0].max()) + found.reach <= width - 1 + 1e-3


def test_a_quad_is_drawn_out_along_its_own_direction():
    q = np.array([[0, 0], [10, 0], [10, 4], [0, 4]], np.float32)
    assert reach_out(q, 5).tolist() == [[0, 0], [15, 0], [15, 4], [0, 4]]
    assert reach_out(q, 0).tolist() == q.tolist()
    tilted = np.array([[0, 0], [30, 40], [26, 43], [-4, 3]], np.float32)  # along (0.6, 0.8)
    out = reach_out(tilted, 10)
    assert np.allclose(out[1], [36, 48]) and np.allclose(out[2], [32, 51])
    assert np.allclose(out[[0, 3]], tilted[[0, 3]])


def test_engine_appends_the_leader_to_its_line(engine):
    image, _, last = _leader_to(18)
    page = engine.run(image, "leader.png")
    texts = [ln.text for ln in page.lines]
    line = next(ln for ln in page.lines if "TOTAL" in ln.text.upper())
    assert line.text.upper().startswith("TOTAL AMT")
    assert line.text.count(".") == 18, texts
    # The polygon holds the whole text: it reaches to the last dot, not past it.
    right = max(x for x, _ in line.polygon)
    assert last - 1.0 <= right <= last + 3.0, (line.polygon, last)
