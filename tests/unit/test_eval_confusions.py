"""Hand-built pages for the confusion counts of ``ocrq eval`` (ocrq.evaluation.confusions)."""

from __future__ import annotations

import json
from collections import Counter

from ocrq.evaluation.align import Step, align
from ocrq.evaluation.confusions import Confusions, page_confusions
from ocrq.evaluation.metrics import score_page


def rect(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def confusions(truth, predicted, covered=None) -> Confusions:
    covered = [True] * len(truth) if covered is None else covered
    return page_confusions(truth, predicted, covered, 400, 200)


# --- character alignment -------------------------------------------------------


def test_align_names_every_edit() -> None:
    assert align("RM", "RH") == [Step(0, 0), Step(1, 1)]
    assert align("TOTAL", "TOTL") == [Step(0, 0), Step(1, 1), Step(2, 2), Step(3, None),
                                      Step(4, 3)]
    assert align("86.00", "86. 00")[3] == Step(None, 3)
    assert align("", "AB") == [Step(None, 0), Step(None, 1)]
    assert align("AB", "") == [Step(0, None), Step(1, None)]


def test_align_free_ends_skip_read_text_around_the_truth() -> None:
    steps = align("DATE:", "DATE: OCT 3", free_end=True)
    assert steps == [Step(i, i) for i in range(5)]
    steps = align("OCT 3", "DATE: OCT 3", free_start=True)
    assert steps == [Step(i, i + 6) for i in range(5)]
    # Without the free end, the extra text is six insertions.
    assert sum(s.truth is None for s in align("DATE:", "DATE: OCT 3")) == 6


# --- pairing and counting ------------------------------------------------------


def test_rm_read_as_rh_twice_counts_m_to_h_twice() -> None:
    truth = [("RM", rect(10, 10, 40, 30)), ("RM", rect(10, 60, 40, 80)),
             ("TOTAL", rect(100, 10, 200, 30))]
    predicted = [("rh", rect(9, 9, 41, 31)), ("RH", rect(9, 59, 41, 81)),
                 ("TOTAL", rect(99, 9, 201, 31))]
    c = confusions(truth, predicted)
    assert c.substitutions == Counter({("M", "H"): 2})  # case-insensitive
    assert c.words == Counter({("RM", "RH"): 2})
    assert not c.deletions and not c.insertions
    assert (c.lines, c.chars, c.edits) == (3, 9, 2)


def test_deletions_insertions_and_word_spaces() -> None:
    truth = [("NETT TOTAL", rect(10, 10, 200, 30)), ("86.00", rect(10, 60, 100, 80))]
    predicted = [("NET TOTAL", rect(10, 10, 200, 30)), ("86. 00", rect(10, 60, 100, 80))]
    c = confusions(truth, predicted)
    assert c.deletions == Counter({"T": 1})
    assert c.insertions == Counter({" ": 1})
    assert c.words == Counter({("NETT", "NET"): 1, ("86.00", "86. 00"): 1})


def test_one_prediction_over_two_segments_is_split_between_them() -> None:
    # SROIE splits printed lines into segments; the engine reads the whole line.
    truth = [("TOTAL", rect(10, 10, 100, 30)), ("12.50", rect(250, 10, 340, 30))]
    predicted = [("TOTAL 12.5O", rect(8, 8, 342, 32))]
    c = confusions(truth, predicted)
    assert c.substitutions == Counter({("0", "O"): 1})
    assert not c.deletions and not c.insertions
    assert c.words == Counter({("12.50", "12.5O"): 1})
    # Read as one word: the space joining two segments belongs to neither.
    assert confusions(truth, [("TOTAL12.50", rect(8, 8, 342, 32))]).edits == 0


def test_one_segment_read_in_two_fragments() -> None:
    truth = [("THANK YOU", rect(10, 10, 200, 30))]
    predicted = [("Y0U", rect(120, 10, 200, 30)), ("THANK", rect(10, 10, 100, 30))]
    c = confusions(truth, predicted)
    assert c.substitutions == Counter({("O", "0"): 1})
    assert c.edits == 1


def test_text_read_past_the_ground_truth_box_is_not_an_insertion() -> None:
    # The ground truth annotates "TOTAL" only; the engine also read "RM" beyond it.
    truth = [("TOTAL", rect(10, 10, 100, 30))]
    assert confusions(truth, [("TOTAL RM", rect(10, 10, 160, 30))]).edits == 0
    # Within the box, an extra character is an insertion.
    c = confusions(truth, [("TOTAL.", rect(10, 10, 102, 30))])
    assert c.insertions == Counter({".": 1})


def test_read_chars_between_segments_are_insertions() -> None:
    truth = [("CASH", rect(10, 10, 80, 30)), ("20.00", rect(250, 10, 340, 30))]
    c = confusions(truth, [("CASH - 20.00", rect(10, 10, 340, 30))])
    assert c.insertions == Counter({"-": 1, " ": 1})
    assert not c.substitutions and not c.deletions


def test_a_segment_annotated_twice_is_compared_twice_not_concatenated() -> None:
    truth = [("ABC", rect(10, 10, 100, 30)), ("ABC", rect(10, 10, 100, 30))]
    c = confusions(truth, [("ABD", rect(10, 10, 100, 30))])
    assert c.substitutions == Counter({("C", "D"): 2})
    assert not c.deletions and not c.insertions and c.lines == 2


def test_only_detected_lines_count_and_neighbours_do_not_pair() -> None:
    truth = [("RM", rect(10, 10, 40, 30)), ("TOTAL", rect(10, 40, 100, 60))]
    # The second prediction touches the first line's box by two pixels only.
    predicted = [("RH", rect(10, 10, 40, 30)), ("TOTAI", rect(10, 28, 100, 60))]
    c = confusions(truth, predicted, covered=[False, True])
    assert c.substitutions == Counter({("L", "I"): 1})
    assert (c.lines, c.chars) == (1, 5)
    assert confusions(truth, [], covered=[False, False]) == Confusions()


def test_page_and_corpus_json_carry_every_count() -> None:
    truth = [("RM", rect(10, 10, 40, 30)), ("RM", rect(10, 60, 40, 80))]
    page = score_page("a", [("RH", rect(10, 10, 40, 30)), ("RN", rect(10, 60, 40, 80))],
                      truth, 400, 200, 0.1)
    total = page.confusions + page.confusions
    doc = json.loads(json.dumps(total.to_dict()))
    assert doc["substitutions"] == [{"truth": "M", "read": "H", "count": 2},
                                    {"truth": "M", "read": "N", "count": 2}]
    assert doc["words"][0] == {"truth": "RM", "read": "RH", "count": 2}
    assert (doc["lines"], doc["chars"], doc["edits"]) == (4, 8, 4)
    assert doc["deletions"] == [] and doc["insertions"] == []
