"""Amounts that must add up (stages/amounts.py), decode's doubts and the engine's use."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ocrq.engine import Engine
from ocrq.stages.amounts import (
    amount_spans,
    cents,
    code_letter,
    digit_doubts,
    ends_in_amount,
    settle_amounts,
    settle_lines,
)
from ocrq.stages.lexicon import Glyph
from ocrq.stages.recognize import RecognizeOptions, decode


def page(*lines: str) -> tuple[list[str], list[int]]:
    return list(lines), list(range(len(lines)))


def test_amount_runs_and_their_value() -> None:
    text = "RM13.65 -0.01 1,250.00 6.00% 12/01/2018 16:57:00 5,00"
    runs = [text[a:b] for a, b in amount_spans(text)]
    assert runs == ["13.65", "-0.01", "1,250.00", "5,00"]
    assert [cents(r) for r in runs] == [1365, -1, 125000, 500]


def test_a_faded_subtotal_and_total_are_settled_by_items_tax_cash_and_change() -> None:
    # As read: 82.50 and 84.00 agree with each other (82.50 + 1.50), but not with the
    # items (92.50) nor with cash and change; 9 was each one's runner-up.
    texts, printed = page("ITEM A 25.00", "ITEM B 25.00", "ITEM C 42.50", "SUB-TOTAL 82.50",
                          "DISC 0.00", "GST 1.50", "TOTAL 84.00", "CASH 94.00", "CHANGE 0.00")
    doubts = [[] for _ in texts]
    doubts[3] = [(10, "9", 0.71)]
    doubts[6] = [(6, "9", 0.16)]
    doubts[7] = [(5, "8", 0.44)]  # cash's own doubt: taking it checks out less
    out = settle_amounts(texts, doubts, printed)
    assert out[3] == "SUB-TOTAL 92.50" and out[6] == "TOTAL 94.00"
    assert out[7] == "CASH 94.00"
    assert [t for i, t in enumerate(out) if i not in (3, 6)] == \
        [t for i, t in enumerate(texts) if i not in (3, 6)]


def test_nothing_changes_without_a_sum_or_an_offered_digit() -> None:
    texts, printed = page("ITEM A 25.00", "ITEM B 25.00", "ITEM C 42.50", "TOTAL 82.50")
    assert settle_amounts(texts, [[] for _ in texts], printed) == texts  # 9 not offered
    # Offered, but no sum it would make: left as read.
    doubts: list[list[tuple[int, str, float]]] = [[] for _ in texts]
    doubts[3] = [(7, "3", 0.5)]
    assert settle_amounts(texts, doubts, printed) == texts


def test_a_sum_that_checks_out_is_not_broken_for_another() -> None:
    # 10 + 20 = 30 checks out; making 30 a 50 would make "50 = 20 + 30"... of nothing
    # above it, and would stop 30 from checking out: never taken.
    texts, printed = page("A 10.00", "B 20.00", "TOTAL 30.00", "CASH 50.00", "CHANGE 20.00")
    doubts: list[list[tuple[int, str, float]]] = [[] for _ in texts]
    doubts[2] = [(6, "5", 0.9)]
    assert settle_amounts(texts, doubts, printed) == texts


def test_the_rightmost_amount_of_a_printed_line_is_its_value() -> None:
    # Unit price and amount on one printed line (two detected fragments): the amount counts.
    texts = ["1 @ 3.00", "6.00", "2 @ 2.00", "4.00", "TOTAL", "16.00"]
    printed = [0, 0, 1, 1, 2, 2]
    doubts: list[list[tuple[int, str, float]]] = [[] for _ in texts]
    doubts[5] = [(1, "0", 0.3)]  # "10.00" = 6.00 + 4.00
    assert settle_amounts(texts, doubts, printed)[5] == "10.00"


def test_settle_lines_works_in_reading_order_and_keeps_confidences() -> None:
    # Detected order differs from reading order; line 2 was dropped (not kept).
    texts = [("TOTAL 4.00", 0.9), ("A 1.00", 0.8), ("noise 7.77", 0.1), ("B 2.00", 0.95)]
    doubts = [[(6, "3", 0.4)], [], [], []]
    keep, order, printed = [0, 1, 3], [2, 0, 1], [2, 0, 1]
    out = settle_lines(texts, doubts, keep, order, printed)
    assert out == [("TOTAL 3.00", 0.9), ("A 1.00", 0.8), ("noise 7.77", 0.1), ("B 2.00", 0.95)]


def test_digit_doubts_name_close_runner_up_digits_of_amounts_only() -> None:
    word = "8.40"
    glyphs = [Glyph("8", 0.6, (("9", 0.35), ("B", 0.04))), Glyph(".", 0.99),
              Glyph("4", 0.95, (("1", 0.05),)), Glyph("0", 0.99, (("6", 0.2),))]
    assert digit_doubts(word, glyphs, 5, 0.1) == [(5, "9", round(0.35 / 0.6, 4)),
                                                  (8, "6", round(0.2 / 0.99, 4))]
    # A code is no amount: nothing recorded.
    assert digit_doubts("8401", [Glyph(c, 0.5, (("9", 0.4),)) for c in "8401"], 0, 0.1) == []


def probs_row(classes: int, top: int, p: float, runner: int, q: float) -> np.ndarray:
    row = np.full(classes, (1.0 - p - q) / (classes - 2), np.float32)
    row[top], row[runner] = p, q
    return row


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


def test_an_amount_takes_the_pages_decimal_separator_where_it_was_offered() -> None:
    # Six amounts with a point, two with a comma: the point is the page's.
    texts, printed = page("A 1.50", "B 2.25", "C 60,30", "D 3.00", "E 4,10", "F 5.00",
                          "G 6.00", "H 7.00")
    doubts: list[list[tuple[int, str, float]]] = [[] for _ in texts]
    doubts[2] = [(4, ".", 0.65)]  # offered: the page's point
    out = settle_amounts(texts, doubts, printed)
    assert out[2] == "C 60.30"
    assert out[:2] + out[3:] == texts[:2] + texts[3:]  # E 4,10: the point was not offered
    # No clear convention (two of each): left as read.
    texts, printed = page("A 1.50", "B 2,25", "C 60,30", "D 3.00")
    doubts = [[] for _ in texts]
    doubts[2] = [(4, ".", 0.65)]
    assert settle_amounts(texts, doubts, printed) == texts
    # A comma-decimal page settles the other way.
    texts, printed = page("A 1.250,50", "B 2,25", "C 60.30", "D 3,00")
    doubts = [[] for _ in texts]
    doubts[2] = [(4, ",", 0.3)]
    assert settle_amounts(texts, doubts, printed)[2] == "C 60,30"


def test_digit_doubts_name_the_decimal_separators_other_form() -> None:
    glyphs = [Glyph("6", 0.99), Glyph("0", 0.99), Glyph(",", 0.56, ((".", 0.37), ("、", 0.1))),
              Glyph("3", 0.99), Glyph("0", 0.99)]
    assert digit_doubts("60,30", glyphs, 0, 0.1) == [(2, ".", round(0.37 / 0.56, 4))]


def test_a_lone_digit_after_an_amount_at_a_lines_end_is_a_code_letter() -> None:
    five = Glyph("5", 0.64, (("s", 0.25), ("S", 0.07), ("6", 0.01)))
    assert code_letter(five, 0.1) == "S"  # both cases of S together
    assert code_letter(Glyph("5", 0.93, (("S", 0.05),)), 0.1) == "5"  # too faint a doubt
    assert code_letter(Glyph("S", 0.9, (("5", 0.09),)), 0.1) == "S"
    assert ends_in_amount("RM18.80") and not ends_in_amount("18.80%")
    assert not ends_in_amount("ITEM(S)")


def test_decode_reads_a_tax_code_after_an_amount_as_a_letter() -> None:
    charset = ["", "4", ".", "9", "0", "5", "S", " "]
    seq = [1, 0, 2, 0, 3, 0, 4, 7, 0, 5]  # "4.90 5": the 5 nearly an S
    rows = [probs_row(len(charset), 5, 0.6, 6, 0.35) if k == 9 else
            probs_row(len(charset), c, 0.97, 1 if c != 1 else 3, 0.01)
            for k, c in enumerate(seq)]
    assert decode(np.stack(rows), charset, RecognizeOptions(languages=())).text == "4.90 S"
    # Not after an amount ("ITEMS 5" style): the digit stays.
    seq = [3, 0, 3, 7, 0, 5]
    rows = [probs_row(len(charset), 5, 0.6, 6, 0.35) if k == 5 else
            probs_row(len(charset), c, 0.97, 1, 0.01) for k, c in enumerate(seq)]
    assert decode(np.stack(rows), charset, RecognizeOptions(languages=())).text == "99 5"


def test_the_engine_settles_amounts_in_reading_order_and_can_be_switched_off(
        engine: Engine) -> None:
    def box(y: float) -> list[list[float]]:
        return [[10.0, y], [200.0, y], [200.0, y + 20], [10.0, y + 20]]

    # Detected out of reading order: the total first.
    polygons = [box(80), box(0), box(40)]
    texts = [("TOTAL 4.00", 0.9), ("A 1.00", 0.9), ("B 2.00", 0.9)]
    doubts = [[(6, "3", 0.4)], [], []]
    page = engine.step_reorder("p", 300, 120, 0, polygons, texts, {}, {}, doubts=doubts)
    assert [ln.text for ln in page.lines] == ["A 1.00", "B 2.00", "TOTAL 3.00"]
    off = Engine(engine.registry, replace(engine.options, amounts=None))
    page = off.step_reorder("p", 300, 120, 0, polygons, texts, {}, {}, doubts=doubts)
    assert [ln.text for ln in page.lines] == ["A 1.00", "B 2.00", "TOTAL 4.00"]
    # Without doubts (a producer that predates them) nothing is settled either.
    page = engine.step_reorder("p", 300, 120, 0, polygons, texts, {}, {})
    assert [ln.text for ln in page.lines][-1] == "TOTAL 4.00"
