"""Amounts on a line (stages/amounts.py): runs and values, the doubts decode
records, tax-code letters and the page's decimal separator."""

from __future__ import annotations

import json

import numpy as np

from ocrq.pipeline.messages import BatchResult
from ocrq.stages.amounts import (
    amount_spans,
    amount_value,
    code_letter,
    digit_doubts,
    ends_in_amount,
    separators,
)
from ocrq.stages.lexicon import Glyph
from ocrq.stages.recognize import RecognizeOptions, decode


def values(text: str) -> list[int]:
    return [amount_value(text, a, b) for a, b in amount_spans(text)]


def test_amount_runs_and_their_value() -> None:
    text = "RM13.65 -0.01 1,250.00 6.00% 12/01/2018 16:57:00 5,00"
    assert [text[a:b] for a, b in amount_spans(text)] == ["13.65", "-0.01", "1,250.00", "5,00"]
    assert values(text) == [1365, -1, 125000, 500]
    # Negatives written after the number or in parentheses; leader dots after one.
    assert values("DISCOUNT 1.00-") == [-100]
    assert values("REFUND (2.50)") == [-250]
    assert values("QTY 2 @ 3.00....") == [300]
    assert values("1.00-2.00") == [100, 200]  # a range's dash is no sign


def probs_row(classes: int, top: int, p: float, runner: int, q: float) -> np.ndarray:
    row = np.full(classes, (1.0 - p - q) / (classes - 2), np.float32)
    row[top], row[runner] = p, q
    return row


def test_digit_doubts_name_close_runner_ups_of_amounts_only() -> None:
    glyphs = [Glyph("8", 0.6, (("9", 0.35), ("B", 0.04), ("9", 0.01))), Glyph(".", 0.99),
              Glyph("4", 0.95, (("1", 0.05),)), Glyph("0", 0.99, (("6", 0.2),))]
    # 9 once (the first, most probable, of a kind), B is no digit, 1 is too faint.
    assert digit_doubts("8.40", glyphs, 5, 0.1) == [(5, "9", round(0.35 / 0.6, 4)),
                                                   (8, "6", round(0.2 / 0.99, 4))]
    # A code is no amount: nothing recorded.
    assert digit_doubts("8401", [Glyph(c, 0.5, (("9", 0.4),)) for c in "8401"], 0, 0.1) == []
    # The decimal separator's other form, not another glyph.
    sep = [Glyph("6", 0.99), Glyph("0", 0.99), Glyph(",", 0.56, ((".", 0.37), ("、", 0.1))),
           Glyph("3", 0.99), Glyph("0", 0.99)]
    assert digit_doubts("60,30", sep, 0, 0.1) == [(2, ".", round(0.37 / 0.56, 4))]


def test_decode_records_an_amounts_doubtful_digit_at_its_place_in_the_line() -> None:
    charset = ["", "T", "8", ".", "5", "0", "9", " "]
    seq = [1, 0, 7, 0, 2, 0, 4, 0, 3, 0, 4, 0, 5]  # "T 85.50", the 8 nearly a 9
    rows = [probs_row(len(charset), 2, 0.55, 6, 0.4) if k == 4 else
            probs_row(len(charset), c, 0.97, 2 if c == 1 else 1, 0.01)
            for k, c in enumerate(seq)]
    out = decode(np.stack(rows), charset, RecognizeOptions(languages=()))
    assert out.text == "T 85.50"
    assert out.doubts == ((2, "9", round(0.4 / 0.55, 4)),)
    off = decode(np.stack(rows), charset, RecognizeOptions(languages=(), amount_doubt=1.0))
    assert off.text == "T 85.50" and off.doubts == ()


def test_a_glyph_another_rule_settled_records_no_doubt() -> None:
    # "S.25": numbers.py makes the S the 5 the network offered; that 5 is no
    # reading of the network's own, so its runner-ups (6) are no doubt.
    charset = ["", "S", ".", "2", "5", "6", " "]
    seq = [1, 0, 2, 0, 3, 0, 4]
    rows = [np.full(len(charset), 0.001, np.float32) for _ in seq]
    for row, c in zip(rows, seq, strict=True):
        row[c] = 0.97
    rows[0][1], rows[0][4], rows[0][5] = 0.55, 0.3, 0.12
    out = decode(np.stack(rows), charset, RecognizeOptions(languages=("en",)))
    assert out.text == "5.25"
    assert out.doubts == ()


def test_a_lone_digit_after_an_amount_at_a_lines_end_is_a_code_letter() -> None:
    five = Glyph("5", 0.64, (("s", 0.25), ("S", 0.07), ("6", 0.01)))
    assert code_letter(five, 0.2) == "S"  # both cases of S together
    assert code_letter(Glyph("5", 0.9, (("S", 0.15),)), 0.2) == "5"  # too faint a doubt
    assert code_letter(Glyph("S", 0.9, (("5", 0.09),)), 0.2) == "S"
    # 1 and 0 stay digits (numeric codes); a lowercase l is no capital L.
    assert code_letter(Glyph("1", 0.5, (("I", 0.4),)), 0.2) == "1"
    assert code_letter(Glyph("0", 0.5, (("O", 0.4),)), 0.2) == "0"
    assert code_letter(Glyph("7", 0.5, (("l", 0.3), ("T", 0.05))), 0.2) == "7"
    assert code_letter(Glyph("2", 0.5, (("z", 0.3),)), 0.2) == "Z"  # z looks like Z
    assert ends_in_amount("RM18.80") and not ends_in_amount("18.80%")
    assert not ends_in_amount("ITEM(S)")


def code_rows(seq: list[int], doubt_at: int) -> np.ndarray:
    charset_size = 8
    return np.stack([probs_row(charset_size, 5, 0.6, 6, 0.35) if k == doubt_at else
                     probs_row(charset_size, c, 0.97, 1 if c != 1 else 3, 0.01)
                     for k, c in enumerate(seq)])


def test_decode_reads_a_tax_code_after_an_amount_as_a_letter() -> None:
    charset = ["", "4", ".", "9", "0", "5", "S", " "]
    seq = [1, 0, 2, 0, 3, 0, 4, 7, 0, 5]  # "4.90 5": the 5 nearly an S
    assert decode(code_rows(seq, 9), charset, RecognizeOptions(languages=())).text == "4.90 S"
    off = RecognizeOptions(languages=(), code_letters=1.0)
    assert decode(code_rows(seq, 9), charset, off).text == "4.90 5"
    # Not after an amount ("99 5"), or not at the line's end ("4.90 5 4"): a digit.
    seq = [3, 0, 3, 7, 0, 5]
    assert decode(code_rows(seq, 5), charset, RecognizeOptions(languages=())).text == "99 5"
    seq = [1, 0, 2, 0, 3, 0, 4, 7, 0, 5, 7, 0, 1]
    assert decode(code_rows(seq, 9), charset,
                  RecognizeOptions(languages=())).text == "4.90 5 4"


def test_an_amount_takes_the_pages_decimal_separator_where_it_was_offered() -> None:
    # Six amounts with a point, one with a comma: the point is the page's.
    texts = ["A 1.50", "B 2.25", "C 60,30", "D 3.00", "F 5.00", "G 6.00", "H 7.00"]
    doubts: list[list[tuple[int, str, float]]] = [[] for _ in texts]
    doubts[2] = [(4, ".", 0.65)]
    out = separators(texts, doubts, 0.15)
    assert out[2] == "C 60.30" and out[:2] + out[3:] == texts[:2] + texts[3:]
    doubts[2] = [(4, ".", 0.12)]  # too faint a doubt
    assert separators(texts, doubts, 0.15) == texts
    # No clear convention: five points against two commas (needs four times as many).
    texts = ["A 1.50", "B 2.25", "C 60,30", "D 3.00", "E 4,10", "F 5.00", "G 6.00"]
    doubts = [[] for _ in texts]
    doubts[2] = [(4, ".", 0.65)]
    assert separators(texts, doubts, 0.15) == texts
    # A comma-decimal page settles the other way.
    texts = ["A 1.250,50", "B 2,25", "C 60.30", "D 3,00", "E 4,00", "F 5,00"]
    doubts = [[] for _ in texts]
    doubts[2] = [(4, ",", 0.3)]
    assert separators(texts, doubts, 0.15)[2] == "C 60,30"


def test_doubts_travel_in_a_batch_result_and_odd_ones_cost_only_the_settling() -> None:
    res = BatchResult(2, [("82.50", 0.9), ("x", 0.9)], {"str": 1}, 4.0,
                      doubts=[[(0, "9", 0.71)], []])
    wire = json.loads(json.dumps(res.to_message()))
    assert BatchResult.from_message(wire) == res
    for odd in ([[[0, "9"]]], [[[0, "9", 0.7, "x"]]], None, [[["a", "9", 0.7]]]):
        back = BatchResult.from_message({**wire, "doubts": odd})
        assert back.doubts == [] and back.texts == res.texts
    del wire["doubts"]  # a producer that predates them
    assert BatchResult.from_message(wire).doubts == []
