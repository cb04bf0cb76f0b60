"""Amounts that must add up (stages/sums.py), the engine's use and the pipeline's join."""

from __future__ import annotations

from dataclasses import replace

from ocrq.engine import Engine
from ocrq.pipeline.messages import BatchResult
from ocrq.pipeline.work import joined
from ocrq.stages.sums import AmountOptions, settle_amounts, settle_lines

Doubts = list[list[tuple[int, str, float]]]


def settle(texts: list[str], doubts: dict[int, list[tuple[int, str, float]]],
           options: AmountOptions | None = None) -> list[str]:
    """One printed line per text, in reading order."""
    per_line: Doubts = [doubts.get(i, []) for i in range(len(texts))]
    return settle_amounts(texts, per_line, list(range(len(texts))), options)


FADED = ["ITEM A 25.00", "ITEM B 25.00", "ITEM C 42.50", "SUB-TOTAL 82.50", "DISC 0.00",
         "GST 1.50", "TOTAL 84.00", "CASH 94.00", "CHANGE 0.00"]


def test_a_faded_subtotal_and_total_are_settled_by_items_tax_cash_and_change() -> None:
    # As read, 82.50 and 84.00 agree with each other (82.50 + 1.50), but not with the
    # items (92.50) nor with cash and change; 9 was each one's runner-up. Cash's own
    # doubt would make fewer lines check out.
    out = settle(FADED, {3: [(10, "9", 0.71)], 6: [(6, "9", 0.16)], 7: [(5, "8", 0.44)]})
    assert out[3] == "SUB-TOTAL 92.50" and out[6] == "TOTAL 94.00"
    assert [t for i, t in enumerate(out) if i not in (3, 6)] == \
        [t for i, t in enumerate(FADED) if i not in (3, 6)]
    # Sums spanning more lines than max_run are not looked at.
    assert settle(FADED, {3: [(10, "9", 0.71)], 6: [(6, "9", 0.16)]},
                  AmountOptions(max_run=2)) == FADED


def test_nothing_changes_without_a_sum_or_an_offered_digit() -> None:
    texts = ["ITEM A 25.00", "ITEM B 25.00", "ITEM C 42.50", "TOTAL 82.50", "GST 1.50",
             "TOTAL 84.00"]
    assert settle(texts, {}) == texts  # 9 not offered
    assert settle(texts, {3: [(7, "3", 0.5)]}) == texts  # offered, but no sum it makes


def test_a_price_list_that_never_adds_up_is_left_alone() -> None:
    # 8.90 + 6.00 would make 14.90, but nothing on the page added up as read.
    texts = ["Salad 6.00", "Pasta 9.90", "Steak 14.90"]
    assert settle(texts, {1: [(6, "8", 0.5)]}) == texts


def test_the_cash_less_total_is_the_change() -> None:
    texts = ["A 10.00", "B 20.00", "TOTAL 30.00", "CASH 50.00", "CHANGE 30.00"]
    assert settle(texts, {4: [(7, "2", 0.3)]})[4] == "CHANGE 20.00"


def test_no_line_that_checked_out_stops_for_others() -> None:
    # 13.00 = 3.00 + 8.00 + 2.00 checks out. Making 3.00 a 6.00 would make two other
    # lines check out (8.00 = 2.00 + 6.00, 2.00 = 8.00 - 6.00) and break that one.
    texts = ["A 13.00", "B 2.00", "C 3.00", "D 8.00", "E 2.00", "F 13.00"]
    assert settle(texts, {2: [(2, "6", 0.5)]}) == texts


def test_a_sum_needs_two_lines_not_zero() -> None:
    # 3.00 = 0.00 + 3.00 is no sum: 8.00 stays.
    texts = ["A 1.00", "B 2.00", "C 3.00", "D 0.00", "E 8.00"]
    assert settle(texts, {4: [(2, "3", 0.5)]}) == texts
    # One line alone is no sum either (4.00 under 4.00).
    texts = ["A 1.00", "B 2.00", "C 3.00", "D 4.00", "E 9.00"]
    assert settle(texts, {4: [(2, "4", 0.5)]}) == texts


def test_repeated_totals_confirm_each_other() -> None:
    # TOTAL repeats SUBTOTAL: never made 27.60 (= 6.00 + 21.60) on a faint 7.
    texts = ["A 0.50", "B 0.70", "C 1.20", "BREAD 15.60", "MILK 6.00", "SUBTOTAL 21.60",
             "TOTAL 21.60"]
    assert settle(texts, {6: [(7, "7", 0.12)]}) == texts


def test_a_discount_written_after_its_number_is_taken_off() -> None:
    # 6.50 = 7.50 - 1.00 checks out; read as +1.00, 8.50 would (a faint 8).
    texts = ["ITEM A 2.50", "ITEM B 1.20", "ITEM C 3.80", "SUBTOTAL 7.50", "DISCOUNT 1.00-",
             "TOTAL 6.50"]
    assert settle(texts, {5: [(6, "8", 0.2)]}) == texts
    # And it counts: a faded total settled with it.
    texts[5] = "TOTAL 8.50"
    assert settle(texts, {5: [(6, "6", 0.3)]})[5] == "TOTAL 6.50"


def test_the_more_probable_runner_up_wins_a_tie() -> None:
    # Either 47.00 -> 57.00 or 91.00 -> 81.00 makes E the sum of C and D.
    texts = ["A 12.00", "B 22.00", "C 34.00", "D 47.00", "E 91.00"]
    assert settle(texts, {3: [(2, "5", 0.6)], 4: [(2, "8", 0.3)]})[3:] == ["D 57.00", "E 91.00"]
    assert settle(texts, {3: [(2, "5", 0.2)], 4: [(2, "8", 0.3)]})[3:] == ["D 47.00", "E 81.00"]


def test_the_rightmost_amount_of_a_printed_line_is_its_value() -> None:
    # Unit price and amount on one printed line, in one text or in two fragments:
    # 10.00 = 6.00 + 4.00 checks out (3.00 + 2.00 would not), so the change is settled.
    texts = ["1 @ 3.00 6.00", "2 @ 2.00", "4.00", "TOTAL 10.00", "CASH 20.00", "CHANGE 18.00"]
    printed = [0, 1, 1, 2, 3, 4]
    doubts: Doubts = [[] for _ in texts]
    doubts[5] = [(8, "0", 0.3)]  # change = 20.00 - 10.00
    assert settle_amounts(texts, doubts, printed)[5] == "CHANGE 10.00"


def test_settle_lines_works_in_reading_order_and_keeps_confidences() -> None:
    # Detected order differs from reading order; line 2 was dropped (not kept).
    texts = [("TOTAL 4.00", 0.9), ("A 1.00", 0.8), ("noise 7.77", 0.1), ("B 2.00", 0.95),
             ("X 5.00", 0.9), ("Y 6.00", 0.9), ("Z 11.00", 0.9)]
    doubts: Doubts = [[(6, "3", 0.4)], [], [(6, "1", 0.9)], [], [], [], []]
    keep = [0, 1, 3, 4, 5, 6]
    order = printed = [5, 3, 4, 0, 1, 2]
    out = settle_lines(texts, doubts, keep, order, printed)
    assert out[0] == ("TOTAL 3.00", 0.9) and out[1:] == texts[1:]


def box(y: float) -> list[list[float]]:
    return [[10.0, y], [200.0, y], [200.0, y + 20], [10.0, y + 20]]


def test_the_engine_settles_amounts_in_reading_order_and_can_be_switched_off(
        engine: Engine) -> None:
    polygons = [box(20.0 * i) for i in range(len(FADED))][::-1]  # detected bottom-up
    texts = [(t, 0.9) for t in FADED][::-1]
    doubts: Doubts = [[] for _ in FADED]
    doubts[3], doubts[6] = [(10, "9", 0.71)], [(6, "9", 0.16)]
    doubts = doubts[::-1]
    page = engine.step_reorder("p", 300, 300, 0, polygons, texts, {}, {}, doubts=doubts)
    assert [ln.text for ln in page.lines][3::3] == ["SUB-TOTAL 92.50", "TOTAL 94.00"]
    off = Engine(engine.registry, replace(engine.options, amounts=None))
    page = off.step_reorder("p", 300, 300, 0, polygons, texts, {}, {}, doubts=doubts)
    assert [ln.text for ln in page.lines] == FADED
    # No doubts (an older producer), or not one per line: nothing settled, no error.
    for odd in (None, doubts[:-1]):
        page = engine.step_reorder("p", 300, 300, 0, polygons, texts, {}, {}, doubts=odd)
        assert [ln.text for ln in page.lines] == FADED


def test_the_pipeline_joins_every_batchs_doubts_or_none() -> None:
    a = BatchResult(0, [("TOTAL 84.00", 0.9), ("x", 0.9)], {}, 1.0, doubts=[[(6, "9", 0.2)], []])
    b = BatchResult(1, [("CASH 94.00", 0.9)], {}, 1.0, doubts=[[]])
    texts, doubts = joined([a, b])
    assert texts == [("TOTAL 84.00", 0.9), ("x", 0.9), ("CASH 94.00", 0.9)]
    assert doubts == [[(6, "9", 0.2)], [], []]
    old = replace(b, doubts=[])  # a batch from a producer that predates doubts
    assert joined([a, old]) == (texts, None)
    assert joined([a, b], amounts=False) == (texts, None)  # the plan turned them off
