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
