"""CTC decoding and word spacing on hand-made probability matrices."""

from __future__ import annotations

import numpy as np

from ocrq.stages.recognize import Ink, RecognizeOptions, decode

CHARSET = ["", "A", "B", ":", "1", " "]  # blank, dictionary..., space last


def probs_for(
    seq: list[tuple[int, int]], steps: int = 40, space_at: int | None = None
) -> np.ndarray:
    """One-hot-ish CTC output: ``seq`` is (step, class) peaks, blank elsewhere."""
    p = np.full((steps, len(CHARSET)), 0.001, np.float32)
    p[:, 0] = 0.99
    for t, k in seq:
        p[t] = 0.001
        p[t, k] = 0.95
    if space_at is not None:
        p[space_at, 5] = 0.2  # below argmax, above the space threshold
    return p


def test_collapses_repeats_and_blanks_and_reports_confidence():
    p = probs_for([(2, 1), (3, 1), (6, 1), (9, 2)])  # A A(repeat) _ A B
    r = decode(p, CHARSET, RecognizeOptions())
    assert r.text == "AAB"
    assert abs(r.confidence - 0.95) < 1e-3


def test_empty_output():
    r = decode(probs_for([]), CHARSET, RecognizeOptions())
    assert r.text == "" and r.confidence == 0.0


def test_space_probability_between_characters_inserts_a_space():
    p = probs_for([(2, 1), (5, 2), (8, 1)], space_at=6)
    assert decode(p, CHARSET, RecognizeOptions()).text == "AB A"


def test_ink_gap_inserts_a_space_only_where_the_crop_is_blank():
    # 40 steps over a 320 px strip: 8 px per step; characters at steps 2,5,8,16,19.
    seq = [(2, 1), (5, 2), (8, 3), (16, 4), (19, 4)]
    columns = np.zeros(320, bool)
    for t, _ in seq:
        columns[t * 8 : t * 8 + 14] = True  # ink around each character
    ink = Ink(columns, height=30.0)
    r = decode(probs_for(seq), CHARSET, RecognizeOptions(), ink=ink, width=320)
    assert r.text == "AB: 11"
    # Same steps, but the crop shows ink all along: no space.
    solid = Ink(np.ones(320, bool), height=30.0)
    r = decode(probs_for(seq), CHARSET, RecognizeOptions(), ink=solid, width=320)
    assert r.text == "AB:11"


def test_full_width_punctuation_is_folded():
    charset = ["", "（", "R", "M", "）", " "]
    p = np.full((20, 6), 0.001, np.float32)
    p[:, 0] = 0.99
    for t, k in [(1, 1), (3, 2), (5, 3), (7, 4)]:
        p[t] = 0.001
        p[t, k] = 0.9
    assert decode(p, charset, RecognizeOptions()).text == "(RM)"


def test_zero_and_o_settled_by_their_neighbours():
    from ocrq.stages.zero_o import settle_zero_o as fix

    assert fix("R0N: 1O5O.25 INV0ICE") == "RON: 1050.25 INVOICE"
    # Mixed codes and runs too short to tell stay as read.
    assert fix("M026588 N0 0 O 00 1O") == "M026588 N0 0 O 00 1O"
    # A word holding a decimal number keeps its zeros.
    assert fix("RM0.00 TOTAL:RM0,50") == "RM0.00 TOTAL:RM0,50"


def test_an_o_that_opens_an_amount_is_a_zero():
    from ocrq.stages.zero_o import settle_zero_o as fix

    assert fix("RMO.20 -RMO.01 $O.50 O.75 (O.5)") == "RM0.20 -RM0.01 $0.50 0.75 (0.5)"
    # "NO." is the abbreviation for number, and a word is not an amount.
    assert fix("NO.32 INFO.12 O.K") == "NO.32 INFO.12 O.K"


def test_a_wide_gap_after_a_decimal_separator_is_no_word_break():
    charset = ["", "1", "2", ".", "A", " "]
    # "12.12" then "A.1": 8 px per step, ink around each character, and a blank as
    # wide as a word break after each point (a point is narrow).
    seq = [(2, 1), (5, 2), (8, 3), (16, 1), (19, 2), (28, 4), (31, 3), (39, 1)]
    p = np.full((44, len(charset)), 0.001, np.float32)
    p[:, 0] = 0.99
    columns = np.zeros(352, bool)
    for t, k in seq:
        p[t] = 0.001
        p[t, k] = 0.95
        columns[t * 8 : t * 8 + (4 if k == 3 else 14)] = True
    r = decode(p, charset, RecognizeOptions(), ink=Ink(columns, height=30.0), width=352)
    # Inside the number the gap is ignored; after "A." it still splits words.
    assert r.text == "12.12 A. 1"
    p[12, 5] = 0.2  # the network itself reads a space there: that one stands
    r = decode(p, charset, RecognizeOptions(), ink=Ink(columns, height=30.0), width=352)
    assert r.text == "12. 12 A. 1"
