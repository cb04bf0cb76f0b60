"""CTC decoding and word spacing on hand-made probability matrices."""

from __future__ import annotations

import numpy as np

from ocrq.stages.recognize import Ink, RecognizeOptions, decode

CHARSET = ["", "A", "B", ":", "1", " "]  # blank, dictionary..., space last


def probs_for(
    seq: list[tuple[int, int]], steps: int = 40, space_at: int | None = None,
    charset: list[str] = CHARSET,
) -> np.ndarray:
    """One-hot-ish CTC output: ``seq`` is (step, class) peaks, blank elsewhere."""
    p = np.full((steps, len(charset)), 0.001, np.float32)
    p[:, 0] = 0.99
    for t, k in seq:
        p[t] = 0.001
        p[t, k] = 0.95
    if space_at is not None:
        p[space_at, len(charset) - 1] = 0.2  # below argmax, above the space threshold
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
    # Some probability for the space class in the gap does not split a number,
    p[12, 5] = 0.2
    r = decode(p, charset, RecognizeOptions(), ink=Ink(columns, height=30.0), width=352)
    assert r.text == "12.12 A. 1"
    # nor does a space the network emits there, before two decimals ("72. 00"),
    p[12] = 0.001
    p[12, 5] = 0.95
    r = decode(p, charset, RecognizeOptions(), ink=Ink(columns, height=30.0), width=352)
    assert r.text == "12.12 A. 1"


def test_an_emitted_space_before_a_single_decimal_stands() -> None:
    # "N0. 1" is more likely "NO. 1" misread than an amount.
    charset = ["", "1", "2", ".", " "]
    p = probs_for([(2, 1), (5, 2), (8, 3), (12, 4), (16, 1)], 20, charset=charset)
    assert decode(p, charset, RecognizeOptions()).text == "12. 1"
    p[19] = 0.001
    p[19, 2] = 0.95  # "12. 12": two decimals, an amount
    assert decode(p, charset, RecognizeOptions()).text == "12.12"


def test_a_space_before_the_point_of_an_amount_is_no_word_break() -> None:
    charset = ["", "1", "9", ".", "2", "0", " "]
    # "191 .20" as the network reads it (its own space before the point).
    p = probs_for([(2, 1), (5, 2), (8, 1), (12, 6), (16, 3), (19, 4), (22, 5)], 26,
                  charset=charset)
    assert decode(p, charset, RecognizeOptions()).text == "191.20"


def test_a_comma_splits_a_list_but_not_a_thousands_group() -> None:
    charset = ["", "1", "8", "2", "0", ",", "5", " "]  # space last, as PP-OCR
    def read(digits_after: str) -> str:
        # "18," then a wide gap, then the digits: the space class rises in the gap.
        seq = [(2, 1), (5, 2), (8, 5)] + [(14 + 3 * i, charset.index(c))
                                           for i, c in enumerate(digits_after)]
        p = probs_for(seq, 14 + 3 * len(digits_after) + 2, space_at=11, charset=charset)
        return decode(p, charset, RecognizeOptions()).text
    assert read("20") == "18, 20"  # a list, or a date ("OCT 3, 2016")
    assert read("250") == "18,250"  # thousands


def test_a_line_too_short_for_a_usual_gap_splits_by_the_text_size() -> None:
    # "1 X": one gap only, so the line's usual gap between letters is unknown;
    # a blank of about a character's width (18 px of 24 px ink) is a word break,
    # a narrow one (6 px) is not.
    charset = ["", "1", "X", " "]
    for blank, want in ((18, "1 X"), (6, "1X")):
        columns = np.zeros(160, bool)
        columns[16:22] = True  # the "1"
        columns[22 + blank : 22 + blank + 14] = True  # the "X"
        x_step = (22 + blank + 7) // 8
        p = probs_for([(2, 1), (x_step, 2)], 20, charset=charset)
        r = decode(p, charset, RecognizeOptions(), ink=Ink(columns, height=24.0), width=160)
        assert r.text == want
