"""Numbers made well-formed among the recogniser's runner-ups (stages/numbers.py),
and decode's use of it."""

from __future__ import annotations

import numpy as np

from ocrq.stages.lexicon import Glyph
from ocrq.stages.numbers import at_quantity, settle_number
from ocrq.stages.recognize import RecognizeOptions, decode


def settle(text: str, alts: dict[int, list[tuple[str, float]]], prob: float = 0.6) -> str:
    return settle_number([Glyph(c, prob if i in alts else 0.98, tuple(alts.get(i, ())))
                          for i, c in enumerate(text)])


def test_a_letter_inside_a_number_becomes_the_digit_the_network_offered() -> None:
    assert settle("411S0", {3: [("5", 0.3)]}) == "41150"  # a postcode
    assert settle("2B11,", {1: [("8", 0.2)]}) == "2811,"  # separators at the ends stay
    assert settle("S.25", {0: [("5", 0.4)]}) == "5.25"  # an amount
    assert settle("0.S8", {2: [("9", 0.2)]}) == "0.98"
    assert settle("(519S37-X)", {4: [("5", 0.3)]}) == "(519537-X)"


def test_codes_units_and_weak_doubts_stay_as_read() -> None:
    assert settle("S87", {0: [("5", 0.3)]}) == "S87"  # a code's letter prefix
    assert settle("1.5L", {3: [("1", 0.3)]}) == "1.5L"  # a unit after a number
    assert settle("RM31.98", {1: [("4", 0.3)]}) == "RM31.98"  # two letters: a code
    assert settle("A1B", {1: [("8", 0.3)]}) == "A1B"  # too few digits to be a number
    # A digit the network hardly considered is no doubt at all.
    assert settle("411S0", {3: [("5", 0.01)]}, prob=0.97) == "411S0"
    assert settle("411S0", {}) == "411S0"


def test_a_sign_before_a_whole_amount_is_a_sign() -> None:
    assert settle("S0.50", {0: [("5", 0.3), ("$", 0.05)]}) == "$0.50"
    assert settle("S0.50", {0: [("5", 0.3)]}) == "S0.50"  # not "50.50"


def test_a_misread_at_sign_before_a_price_or_a_rate() -> None:
    assert settle("GST06%", {3: [("O", 0.2), ("@", 0.07)]}) == "GST@6%"
    assert settle("00.98", {0: [("6", 0.1), ("@", 0.1)]}) == "@0.98"
    assert settle("B6%", {0: [("@", 0.3)]}) == "@6%"
    # A well-formed number keeps its first digit; a letter inside a word stays.
    assert settle("0.98", {0: [("@", 0.3)]}) == "0.98"
    assert settle("60%", {0: [("@", 0.3)]}) == "60%"
    assert settle("GST6%", {2: [("@", 0.3)]}) == "GST6%"
    assert settle("06%", {0: [("O", 0.3)]}) == "06%"  # '@' not offered


def probs_row(classes: int, top: int, p: float, runner: int, q: float) -> np.ndarray:
    row = np.full(classes, (1.0 - p - q) / (classes - 2), np.float32)
    row[top], row[runner] = p, q
    return row


def test_decode_settles_a_number_with_the_networks_runner_up() -> None:
    charset = ["", "4", "1", "S", "0", "5", " "]
    seq = [(1, 6), (0, 0), (2, 6), (0, 0), (2, 6), (0, 0), (3, 5), (0, 0), (4, 6)]
    rows = [probs_row(len(charset), c, 0.95, r or 1, 0.01) if c != 3 else
            probs_row(len(charset), 3, 0.6, 5, 0.35) for c, r in seq]
    out = decode(np.stack(rows), charset, RecognizeOptions(languages=("en",)))
    assert out.text == "41150"
    off = decode(np.stack(rows), charset, RecognizeOptions(languages=("en",), numbers=False))
    assert off.text == "411S0"


def test_glyphs_of_several_characters_leave_the_token_as_read() -> None:
    glyphs = [Glyph("12", 0.9), Glyph("3", 0.9), Glyph("S", 0.5, (("5", 0.4),)),
              Glyph("6", 0.9), Glyph("7", 0.9)]
    assert settle_number(glyphs) == "123S67"  # no position mix-up, no IndexError


def test_a_counts_at_sign_read_as_a_zero_before_a_multiplication_sign() -> None:
    zero = [Glyph("0", 0.34, (("@", 0.13), ("C", 0.07))), Glyph("2", 0.9)]
    assert at_quantity(zero, "X") == "@2"
    assert at_quantity(zero, "x") == "@2"
    # Not before a multiplication sign, not offered, or no leading zero: as read.
    assert at_quantity(zero, "RM") == "02"
    assert at_quantity(zero, None) == "02"
    assert at_quantity([Glyph("0", 0.9, (("@", 0.05),)), Glyph("2", 0.9)], "X") == "02"
    assert at_quantity([Glyph("1", 0.4, (("@", 0.3),)), Glyph("2", 0.9)], "X") == "12"


def test_decode_restores_a_counts_at_sign() -> None:
    charset = ["", "0", "2", "X", "@", " "]
    seq = [1, 0, 2, 5, 0, 3]  # "02 X": the 0 nearly an @
    rows = [probs_row(len(charset), 1, 0.5, 4, 0.3) if k == 0 else
            probs_row(len(charset), c, 0.97, 1 if c != 1 else 2, 0.01)
            for k, c in enumerate(seq)]
    assert decode(np.stack(rows), charset, RecognizeOptions(languages=())).text == "@2 X"
    off = RecognizeOptions(languages=(), numbers=False)
    assert decode(np.stack(rows), charset, off).text == "02 X"
