"""Glyphs the crop shows that greedy CTC decoding left out (stages/uncovered.py)."""

from __future__ import annotations

import numpy as np

from ocrq.stages.recognize import Ink, RecognizeOptions, decode
from ocrq.stages.uncovered import ink_blobs

# blank, letters, the ASCII colon and its full-width twin, space last
CHARSET = ["", "C", "A", "S", "H", ":", "：", "m", " "]


def _line(colon_ink: bool, colon: dict[int, float]) -> tuple[np.ndarray, Ink]:
    """'CASH' then, apart, a blob of ink at step 12 the argmax leaves blank."""
    p = np.full((16, len(CHARSET)), 0.0005, np.float32)
    p[:, 0] = 0.99
    for t, k in ((2, 1), (4, 2), (6, 3), (8, 4)):
        p[t] = 0.0005
        p[t, k] = 0.98
    p[12, 0] = 0.51
    for k, v in colon.items():
        p[12, k] = v
    columns = np.zeros(128, bool)
    columns[12:70] = True  # the word
    if colon_ink:
        columns[98:102] = True  # the colon, apart
    return p, Ink(columns, height=30.0)


def test_ink_blobs_are_runs_of_two_or_more_columns() -> None:
    cols = np.array([0, 1, 1, 0, 1, 0, 0, 1, 1, 1], bool)
    assert ink_blobs(cols) == [(1, 3), (7, 10)]


def test_a_colon_split_between_its_twins_is_read_where_the_crop_shows_it() -> None:
    p, ink = _line(True, {5: 0.24, 6: 0.22})  # 0.46 together, under the blank's 0.51
    assert decode(p, CHARSET, RecognizeOptions(), ink=ink, width=128).text == "CASH :"
    off = RecognizeOptions(uncovered_min_prob=1.0)
    assert decode(p, CHARSET, off, ink=ink, width=128).text == "CASH"


def test_nothing_is_added_without_ink_below_the_floor_or_as_a_letter() -> None:
    p, ink = _line(False, {5: 0.24, 6: 0.22})  # no ink there
    assert decode(p, CHARSET, RecognizeOptions(), ink=ink, width=128).text == "CASH"
    p, ink = _line(True, {5: 0.1, 6: 0.1})  # too little probability
    assert decode(p, CHARSET, RecognizeOptions(), ink=ink, width=128).text == "CASH"
    p, ink = _line(True, {7: 0.45})  # a letter: the far side of a wide glyph
    assert decode(p, CHARSET, RecognizeOptions(), ink=ink, width=128).text == "CASH"
