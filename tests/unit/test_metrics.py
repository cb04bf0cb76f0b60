"""Hand-checked examples for the evaluation metrics (ocrq.evaluation.metrics)."""

from __future__ import annotations

import json

import pytest

from ocrq.evaluation.dataset import DatasetError, load_manifest
from ocrq.evaluation.metrics import (
    CorpusScore,
    Counts,
    box_coverage,
    char_counts,
    detection_counts,
    length_bucket,
    recall_by_length,
    score_page,
    word_counts,
)
from ocrq.evaluation.peers import UnknownEngine, build_engine, parse_tsv


def rect(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


# --- words -------------------------------------------------------------------


def test_perfect_match() -> None:
    c = word_counts("TOTAL 12.50\nCASH", "CASH TOTAL 12.50")
    assert (c.matched, c.predicted, c.true) == (3, 3, 3)
    assert c.precision == c.recall == c.f1 == 1.0


def test_missing_word_lowers_recall_only() -> None:
    c = word_counts("TOTAL 12.50", "TOTAL 12.50 CASH")
    assert (c.matched, c.predicted, c.true) == (2, 2, 3)
    assert c.precision == 1.0
    assert c.recall == pytest.approx(2 / 3)
    assert c.f1 == pytest.approx(0.8)  # 2 * 1 * 2/3 / (5/3)


def test_extra_word_lowers_precision_only() -> None:
    c = word_counts("TOTAL 12.50 CASH THANKS", "TOTAL 12.50 CASH")
    assert c.precision == pytest.approx(3 / 4)
    assert c.recall == 1.0
    assert c.f1 == pytest.approx(6 / 7)


def test_duplicates_count_as_a_multiset() -> None:
    # Truth has "1" three times; the prediction has it once plus twice "2".
    c = word_counts("1 2 2", "1 1 1 2")
    assert (c.matched, c.predicted, c.true) == (2, 3, 4)
    # Repeating a word more often than the truth does not earn extra matches.
    assert word_counts("A A A A", "A").matched == 1


def test_case_insensitive() -> None:
    assert word_counts("Receipt: Total", "RECEIPT: TOTAL").f1 == 1.0
    assert char_counts("abc", "ABC").f1 == 1.0


def test_merged_words_are_wrong_words_but_right_chars() -> None:
    # The failure mode of a recogniser that drops spaces.
    assert word_counts("INVOICENUMBER:", "INVOICE NUMBER:").matched == 0
    assert char_counts("INVOICENUMBER:", "INVOICE NUMBER:").f1 == 1.0


def test_chars_ignore_whitespace_and_count_duplicates() -> None:
    c = char_counts("A B\tB\n", "ABBB")
    assert (c.matched, c.predicted, c.true) == (3, 3, 4)


def test_empty_pages() -> None:
    assert word_counts("", "").f1 == 1.0  # nothing to read, nothing read
    assert word_counts("", "A").f1 == 0.0
    assert word_counts("A", "").precision == 0.0


# --- detection ---------------------------------------------------------------


def test_box_half_covered_counts_and_under_half_does_not() -> None:
    truth = [rect(0, 0, 99, 19)]  # 100 x 20 pixels
    [share] = box_coverage(truth, [rect(0, 0, 59, 19)], 200, 100)
    assert share == pytest.approx(0.6)
    assert detection_counts(truth, [rect(0, 0, 59, 19)], 200, 100).recall == 1.0
    [share] = box_coverage(truth, [rect(0, 0, 39, 19)], 200, 100)
    assert share == pytest.approx(0.4)
    assert detection_counts(truth, [rect(0, 0, 39, 19)], 200, 100).recall == 0.0


def test_union_of_two_polygons_covers_one_box() -> None:
    truth = [rect(0, 0, 99, 19)]
    halves = [rect(0, 0, 34, 19), rect(35, 0, 69, 19)]  # 35 % each, 70 % together
    assert all(box_coverage(truth, [h], 200, 100)[0] < 0.5 for h in halves)
    assert box_coverage(truth, halves, 200, 100)[0] == pytest.approx(0.7)
    assert detection_counts(truth, halves, 200, 100).recall == 1.0


def test_overlapping_predictions_count_once() -> None:
    truth = [rect(0, 0, 99, 19)]
    same = [rect(0, 0, 29, 19)] * 3  # 30 %, three times over, is still 30 %
    assert box_coverage(truth, same, 200, 100)[0] == pytest.approx(0.3)


def test_detection_recall_over_several_boxes_and_rotated_polygon() -> None:
    truth = [rect(10, 10, 109, 29), rect(10, 50, 109, 69), rect(150, 80, 189, 95)]
    # A slightly tilted quadrilateral over the first box, nothing near the others
    # except a sliver on the second.
    tilted = [[8, 6], [112, 10], [111, 33], [7, 29]]
    sliver = rect(10, 50, 19, 69)
    c = detection_counts(truth, [tilted, sliver], 200, 100)
    assert (c.matched, c.true) == (1, 3)
    assert c.recall == pytest.approx(1 / 3)


def test_coverage_on_downscaled_grid_for_huge_pages() -> None:
    # 20000 px wide: the mask is downscaled, the covered share stays the same.
    truth = [rect(1000, 1000, 2999, 1399)]
    [share] = box_coverage(truth, [rect(1000, 1000, 1999, 1399)], 20000, 4000)
    assert share == pytest.approx(0.5, abs=0.02)


def test_page_and_corpus_scores_are_micro_averaged() -> None:
    truth_a = [("TOTAL 10", rect(0, 0, 99, 19))]
    truth_b = [("ONE TWO THREE FOUR", rect(0, 30, 99, 49)), ("FIVE", rect(0, 60, 99, 79))]
    page_a = score_page("a", [("total 10", rect(0, 0, 99, 19))], truth_a, 200, 100, 1.0)
    page_b = score_page("b", [("ONE TWO", rect(0, 30, 99, 49))], truth_b, 200, 100, 3.0)
    assert page_a.words.f1 == 1.0
    assert page_b.words.recall == pytest.approx(2 / 5)
    corpus = CorpusScore.of([page_a, page_b])
    assert corpus.words == Counts(4, 4, 7)  # micro: sums, not a mean of page scores
    assert corpus.words.recall == pytest.approx(4 / 7)
    assert corpus.boxes == Counts(2, 0, 3)
    assert corpus.seconds_per_page == pytest.approx(2.0)
    assert json.loads(json.dumps(corpus.to_dict()))["averaging"] == "micro"


# --- detection recall per line length ------------------------------------------


def test_length_buckets_count_non_space_characters() -> None:
    cases = {"1": "1", "": "1", "RM": "2-3", "A B C": "2-3", "TOTAL": "4-7",
             "SST 6.00%": "8-15", "1234567 ": "4-7", "12345678": "8-15",
             "X" * 15: "8-15", "THANK YOU FOR SHOPPING": "16+"}
    assert {text: length_bucket(text) for text in cases} == cases


def test_recall_by_length_buckets_and_missed_lines() -> None:
    truth_a = [("1", rect(0, 0, 9, 19)), ("RM", rect(20, 0, 39, 19)),
               ("TOTAL", rect(50, 0, 99, 19)), ("RM", rect(120, 0, 139, 19))]
    truth_b = [("1", rect(0, 30, 9, 49)), ("THANK YOU FOR SHOPPING", rect(0, 60, 199, 79))]
    # Page a: "1" and "TOTAL" found, both "RM" missed; page b: only the long line.
    page_a = score_page("a", [("1", rect(0, 0, 9, 19)), ("TOTAL", rect(50, 0, 99, 19))],
                        truth_a, 200, 100, 1.0)
    page_b = score_page("b", [("THANK YOU FOR SHOPPING", rect(0, 60, 199, 79))],
                        truth_b, 200, 100, 1.0)
    assert page_a.by_length == {"1": Counts(1, 0, 1), "2-3": Counts(0, 0, 2),
                                "4-7": Counts(1, 0, 1), "8-15": Counts(), "16+": Counts()}
    assert page_a.missed == ("RM", "RM")
    corpus = CorpusScore.of([page_a, page_b])
    assert corpus.by_length["1"] == Counts(1, 0, 2)  # micro: summed over pages
    assert corpus.by_length["16+"] == Counts(1, 0, 1)
    assert corpus.boxes == Counts(3, 0, 6)
    # The most frequent first, then the shortest.
    assert corpus.top_missed() == [("RM", 2), ("1", 1)]
    doc = json.loads(json.dumps(corpus.to_dict()))
    assert doc["detection_recall_by_length"] == [
        {"length": "1", "min": 0, "max": 1, "boxes": 2, "covered": 1, "recall": 0.5},
        {"length": "2-3", "min": 2, "max": 3, "boxes": 2, "covered": 0, "recall": 0.0},
        {"length": "4-7", "min": 4, "max": 7, "boxes": 1, "covered": 1, "recall": 1.0},
        {"length": "8-15", "min": 8, "max": 15, "boxes": 0, "covered": 0, "recall": None},
        {"length": "16+", "min": 16, "max": None, "boxes": 1, "covered": 1, "recall": 1.0},
    ]
    assert doc["missed_lines"] == [{"text": "RM", "count": 2}, {"text": "1", "count": 1}]
    assert doc["missed_distinct"] == 2
    assert page_b.to_dict()["missed"] == ["1"]


def test_recall_by_length_uses_the_coverage_rule() -> None:
    assert recall_by_length(["RM", "TOTAL", "RM"], [True, False, False]) == {
        "1": Counts(), "2-3": Counts(1, 0, 2), "4-7": Counts(0, 0, 1),
        "8-15": Counts(), "16+": Counts()}


# --- dataset and peers glue ---------------------------------------------------


def test_manifest_reader(tmp_path) -> None:
    rows = [
        {"image": "a.png", "lines": [{"text": "HI", "box": [[1, 2], [3, 2], [3, 4], [1, 4]]}]},
        {"image": "b.png", "lines": [], "license": "ignored"},
    ]
    (tmp_path / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    samples = load_manifest(tmp_path)
    assert [s.name for s in samples] == ["a.png", "b.png"]
    assert samples[0].truth() == [("HI", [[1.0, 2.0], [3.0, 2.0], [3.0, 4.0], [1.0, 4.0]])]
    assert len(load_manifest(tmp_path, limit=1)) == 1
    with pytest.raises(DatasetError, match="not a decodable image"):
        (tmp_path / "a.png").write_bytes(b"not a png")
        samples[0].load()


def test_bad_manifest_names_the_line(tmp_path) -> None:
    (tmp_path / "manifest.jsonl").write_text('{"image": "a.png", "lines": []}\n{"image": 1}\n')
    with pytest.raises(DatasetError, match=r"manifest.jsonl:2"):
        load_manifest(tmp_path)
    with pytest.raises(DatasetError, match="no manifest.jsonl"):
        load_manifest(tmp_path / "missing")


def test_unknown_engine_lists_known_ones() -> None:
    with pytest.raises(UnknownEngine, match="known: ocrq, rapidocr, tesseract"):
        build_engine("abbyy")


def test_parse_tesseract_tsv_groups_words_into_lines() -> None:
    header = "\t".join(
        [
            "level",
            "page_num",
            "block_num",
            "par_num",
            "line_num",
            "word_num",
            "left",
            "top",
            "width",
            "height",
            "conf",
            "text",
        ]
    )
    rows = [
        "4\t1\t1\t1\t1\t0\t10\t10\t200\t20\t-1\t",
        "5\t1\t1\t1\t1\t1\t10\t10\t50\t20\t96.1\tTOTAL",
        "5\t1\t1\t1\t1\t2\t70\t12\t40\t18\t95.0\t12.50",
        "5\t1\t1\t1\t2\t1\t10\t40\t30\t20\t90.0\t ",  # empty word: dropped
        "5\t1\t2\t1\t1\t1\t15\t80\t60\t20\t91.0\tCASH",
    ]
    lines = parse_tsv("\n".join([header, *rows]))
    assert lines == [
        ("TOTAL 12.50", [[10.0, 10.0], [110.0, 10.0], [110.0, 30.0], [10.0, 30.0]]),
        ("CASH", [[15.0, 80.0], [75.0, 80.0], [75.0, 100.0], [15.0, 100.0]]),
    ]
