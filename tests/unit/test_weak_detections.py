"""The second look for what DB scores low (issue 10): short weak boxes come back as
candidates, and the engine keeps only those recognition reads confidently."""

from __future__ import annotations

import numpy as np

from ocrq.engine import Engine
from ocrq.stages.detect import DetectOptions, Region, boxes_from_map
from tests.fixtures import render_page


def _map(blobs: list[tuple[int, int, int, int, float]]) -> np.ndarray:
    prob = np.zeros((200, 400), np.float32)
    for x, y, w, h, p in blobs:
        prob[y : y + h, x : x + w] = p
    return prob


def test_short_low_scoring_boxes_are_weak_candidates_long_ones_are_not() -> None:
    prob = _map([(20, 20, 12, 24, 0.42),  # a lone thin digit: DB's score under 0.5
                 (100, 20, 200, 24, 0.42),  # a long faint band: not a candidate
                 (20, 120, 150, 24, 0.9)])  # a line
    off = boxes_from_map(prob, 400, 200, DetectOptions())
    assert [r.weak for r in off] == [False]
    on = boxes_from_map(prob, 400, 200, DetectOptions(weak_thresh=0.3))
    assert sorted(r.weak for r in on) == [False, True]
    weak = next(r for r in on if r.weak)
    assert weak.polygon[:, 0].max() < 60  # the digit's box, not the band's
    assert not boxes_from_map(prob, 400, 200, DetectOptions(weak_thresh=0.45))[0].weak


def test_weak_candidates_are_kept_only_when_read_confidently(engine: Engine) -> None:
    page = np.full((160, 480, 3), 255, np.uint8)
    text = render_page(["4711"], size=28, margin=4)
    page[20 : 20 + text.shape[0], 20 : 20 + text.shape[1]] = text
    h, w = text.shape[:2]
    on_text = Region(np.array([[20, 20], [20 + w, 20], [20 + w, 20 + h], [20, 20 + h]],
                              np.float32), 0.4, weak=True)
    blank = Region(np.array([[300, 90], [340, 90], [340, 130], [300, 130]], np.float32),
                   0.4, weak=True)
    strong = Region(on_text.polygon + np.float32([0, 0]), 0.9)
    regions = [strong, on_text, blank]
    polygons = [r.polygon for r in regions]
    votes = [(False, 0.99), (False, 0.9), (True, 0.6)]
    kept, kept_polys, kept_votes = engine._confirm(page, regions, polygons, votes, 0.0)
    assert [r.score for r in kept] == [0.9, 0.4] and kept[1].weak
    assert len(kept_polys) == len(kept_votes) == 2 and kept_votes[1] == (False, 0.9)


def _line_and_glyph(height: int, text: str, glyph: str, at: tuple[int, int]
                    ) -> tuple[np.ndarray, Region, tuple[int, int, int, int]]:
    """A white page 480 px wide with ``text`` at (20, 10) and ``glyph`` at ``at`` (x, y):
    the page, the line's strong region, and the glyph's rendered box (x, y, w, h)."""
    page = np.full((height, 480, 3), 255, np.uint8)
    line = render_page([text], size=28, margin=4)
    mark = render_page([glyph], size=28, margin=4)
    lh, lw = line.shape[:2]
    page[10 : 10 + lh, 20 : 20 + lw] = line
    x, y = at
    page[y : y + mark.shape[0], x : x + mark.shape[1]] = mark
    strong = Region(np.array([[20, 10], [20 + lw, 10], [20 + lw, 10 + lh], [20, 10 + lh]],
                             np.float32), 0.9)
    return page, strong, (x, y, mark.shape[1], mark.shape[0])


def test_a_thin_glyph_is_read_at_the_line_height_not_from_its_sliver(engine: Engine) -> None:
    import copy
    from dataclasses import replace

    page, strong, (x, y, w, h) = _line_and_glyph(120, "TOTAL 12.50", "1", (40, 70))
    lh = int(strong.polygon[2, 1] - strong.polygon[0, 1])
    ink = np.argwhere(page[y : y + h, x : x + w].min(axis=2) < 128)
    (y0, x0), (y1, x1) = ink.min(axis=0) + [y, x], ink.max(axis=0) + [y, x]
    cy = (y0 + y1) / 2
    # What DB boxes for a lone "1": a sliver of its stroke, shorter than the glyph.
    sliver = Region(np.array([[x0, cy - 5], [x1 + 1, cy - 5], [x1 + 1, cy + 5], [x0, cy + 5]],
                             np.float32), 0.42, weak=True)
    regions = [strong, sliver]
    votes = [(False, 0.99), (False, 0.99)]
    as_boxed = copy.copy(engine)
    as_boxed.options = replace(engine.options, weak_min_aspect=0.0)
    kept, _, _ = as_boxed._confirm(page, regions, [r.polygon for r in regions], votes, 0.0)
    assert len(kept) == 1  # read from the sliver, the "1" is not confident
    kept, polys, _ = engine._confirm(page, regions, [r.polygon for r in regions], votes, 0.0)
    assert len(kept) == 2 and kept[1].weak
    grown = kept[1].polygon
    assert grown[:, 1].max() - grown[:, 1].min() >= 0.95 * lh  # the line's height
    assert grown[:, 1].min() <= y0 and grown[:, 1].max() >= y1  # the whole glyph
    assert np.array_equal(polys[1], grown)


def test_on_its_row_a_less_confident_glyph_is_kept_off_it_not(engine: Engine) -> None:
    import copy
    from dataclasses import replace

    from ocrq.stages.second_look import glyph_like as _glyph_like
    from ocrq.stages.second_look import on_a_row as _on_a_row

    rows = [(10.0, 40.0)]
    assert _on_a_row(np.float32([[0, 12], [9, 12], [9, 38], [0, 38]]), rows)
    assert not _on_a_row(np.float32([[0, 30], [9, 30], [9, 60], [0, 60]]), rows)
    assert _glyph_like("1") and _glyph_like(":") and _glyph_like("x")
    assert not _glyph_like(".") and not _glyph_like("-") and not _glyph_like("'")

    page = np.full((140, 480, 3), 255, np.uint8)
    line = render_page(["TOTAL 12.50"], size=28, margin=4)
    one = render_page(["1"], size=28, margin=4)
    lh, lw = line.shape[:2]
    page[10 : 10 + lh, 120 : 120 + lw] = line
    strong = Region(np.array([[120, 10], [120 + lw, 10], [120 + lw, 10 + lh], [120, 10 + lh]],
                             np.float32), 0.9)
    # Only the row rule may keep a candidate here (no read reaches 1.01).
    strict = copy.copy(engine)
    strict.options = replace(engine.options, weak_min_confidence=1.01)
    kept_counts = []
    for y in (10, 90):  # on the line's row, then below it
        pg = page.copy()
        pg[y : y + one.shape[0], 40 : 40 + one.shape[1]] = one
        box = np.array([[40, y], [40 + one.shape[1], y], [40 + one.shape[1], y + one.shape[0]],
                        [40, y + one.shape[0]]], np.float32)
        regions = [strong, Region(box, 0.42, weak=True)]
        kept, _, _ = strict._confirm(pg, regions, [r.polygon for r in regions],
                                     [(False, 0.99)] * 2, 0.0)
        kept_counts.append(len(kept))
    assert kept_counts == [2, 1]


def test_a_colon_on_a_row_needs_less_confidence_than_other_glyphs(engine: Engine) -> None:
    from dataclasses import replace

    from ocrq.names import ModelKind
    from ocrq.stages.frames import line_crops
    from ocrq.stages.recognize import recognize
    from ocrq.stages.second_look import grow_to_line

    lw = render_page(["CASHIER"], size=28, margin=4).shape[1]
    # The colon set well apart, as "CASHIER    : 01".
    page, strong, (x, y, cw, ch) = _line_and_glyph(80, "CASHIER", ":", (60 + lw, 10))
    lh = int(strong.polygon[2, 1] - strong.polygon[0, 1])
    weak = Region(np.array([[x, y], [x + cw, y], [x + cw, y + ch], [x, y + ch]],
                           np.float32), 0.4, weak=True)
    # What the second look reads there: the colon, grown to the line height.
    grown = np.clip(grow_to_line(weak.polygon, float(lh), engine.options.weak_min_aspect),
                    0, [479, 79]).astype(np.float32)
    read = recognize(engine.registry.get(ModelKind.STR), line_crops(page, [grown], 0.0),
                     replace(engine.options.recognize, languages=()))[0]
    assert read.text == ":", read
    c = read.confidence
    kept = []
    for colon_floor in (c - 0.02, c + 0.02):
        # Only the row rules may keep it; any other glyph would need more than it has.
        opts = replace(engine.options, weak_min_confidence=1.01,
                       weak_row_min_confidence=min(c + 0.02, 1.0),
                       weak_colon_min_confidence=colon_floor)
        strict = Engine(engine.registry, opts)
        regions = [strong, weak]
        out, _, _ = strict._confirm(page, regions, [r.polygon for r in regions],
                                    [(False, 0.99)] * 2, 0.0)
        kept.append(len(out))
    assert kept == [2, 1]
