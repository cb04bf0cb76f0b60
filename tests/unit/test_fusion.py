"""The second recogniser's reading settled with the first's (stages/fusion.py)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from ocrq.stages.ctc import Scores, pack_top_k
from ocrq.stages.fusion import (
    Reading,
    WordSpan,
    apply,
    compact,
    greedy,
    log_likelihood,
    settle,
    windows,
)
from ocrq.stages.lexicon import get_lexicon

# blank, the letters, the space last (PP-OCR's CTC layout)
CHARSET = ["", "A", "B", "C", "0", "2", "@", ".", "5", "É", " "]


def _probs(rows: list[dict[str, float]], charset: list[str] = CHARSET) -> np.ndarray:
    """Per step {char: probability}; what is left goes to the blank."""
    out = np.zeros((len(rows), len(charset)), np.float32)
    for t, row in enumerate(rows):
        for ch, p in row.items():
            out[t, charset.index(ch)] = p
        out[t, 0] = 1.0 - sum(row.values())
    return out


def _reading(rows: list[dict[str, float]], charset: list[str] = CHARSET) -> Reading:
    probs = _probs(rows, charset)
    return Reading(Scores.of(probs, len(charset)), charset)


def _brute(probs: np.ndarray, label: list[int]) -> float:
    """P(label) summed over every path of the CTC output (exhaustive, tiny inputs)."""
    total = 0.0
    for path in itertools.product(range(probs.shape[1]), repeat=len(probs)):
        collapsed = [k for i, k in enumerate(path) if k != 0 and (i == 0 or k != path[i - 1])]
        if collapsed == label:
            total += math.prod(float(probs[t, k]) for t, k in enumerate(path))
    return total


@pytest.mark.parametrize("text", ["A", "AB", "AA", "BAB"])
def test_log_likelihood_sums_every_alignment(text: str) -> None:
    charset = ["", "A", "B", " "]
    rng = np.random.default_rng(len(text))
    probs = rng.dirichlet(np.ones(4), size=5).astype(np.float64)
    got = log_likelihood(Reading(Scores.of(probs, 4), charset), text)
    want = _brute(probs, [charset.index(c) for c in text])
    assert got == pytest.approx(math.log(want), abs=1e-5)


def test_log_likelihood_edges() -> None:
    charset = ["", "A", "a", "B", " "]
    one = Reading(Scores.of(np.array([[0.2, 0.5, 0.2, 0.05, 0.05]]), 5), charset)
    # One step: "A" is that step's A or a (case folded), nothing else fits.
    assert log_likelihood(one, "A") == pytest.approx(math.log(0.7 + 1e-7))
    assert log_likelihood(one, "AB") == -1e9 and log_likelihood(one, "") == -1e9
    two = Reading(Scores.of(np.array([[0.1, 0.9, 0, 0, 0], [0.1, 0.9, 0, 0, 0]]), 5), charset)
    # "AA" needs a blank between its two A's: three steps at least.
    assert log_likelihood(two, "AA") < -15
    assert log_likelihood(two, "A") == pytest.approx(math.log(0.9 * 0.9 + 0.1 * 0.9 * 2),
                                                      abs=1e-5)


def test_log_likelihood_reads_the_top_k_form_alike() -> None:
    probs = _probs([{"A": 0.9}, {}, {"B": 0.6, "C": 0.3}, {"B": 0.7}])
    full = Reading(Scores.of(probs, len(CHARSET)), CHARSET)
    top = Reading(Scores.of(pack_top_k(probs, 4), len(CHARSET)), CHARSET)
    small = Reading(compact(probs, len(CHARSET), k=4), CHARSET)
    for text in ("AB", "AC", "ABB"):
        want = log_likelihood(full, text)
        assert log_likelihood(top, text) == pytest.approx(want, abs=1e-4)
        assert log_likelihood(small, text) == pytest.approx(want, abs=1e-4)
    assert log_likelihood(full, "AB") > log_likelihood(full, "AC")
    assert log_likelihood(full, "AAAAAAA") == -1e9  # longer than the steps
    # Case and spaces do not count: the decoders place spaces, the metric ignores case.
    assert log_likelihood(full, "a b") == pytest.approx(log_likelihood(full, "AB"))


def test_greedy_reads_the_best_path() -> None:
    assert greedy(_reading([{"A": 0.9}, {"A": 0.9}, {}, {"A": 0.8}, {"B": 0.6}])) == "AAB"


def test_windows_reach_into_the_gaps_and_skip_sure_or_settled_words() -> None:
    spans = [WordSpan(2, 5, 0.99, False), WordSpan(10, 13, 0.4, False),
             WordSpan(20, 22, 0.5, True), WordSpan(30, 33, 0.7, False),
             WordSpan(-1, -1, 0.1, False), WordSpan(40, 41, 0.6, False)]
    # Word 1: halfway between 5 and 10 -> 8, halfway between 13 and 20 -> 17.
    # Word 2 is settled; word 4's steps are unknown (not read, no barrier either).
    got = windows(spans, 50, below=0.8, context=0)
    # The last word: halfway into the 6 steps past it that stand for its right gap.
    assert got == [(1, 2, 8, 17), (3, 4, 26, 37), (5, 6, 37, 45)]
    assert windows(spans, 50, below=0.3, context=0) == []
    # A word either side joins; overlapping stretches merge into one.
    assert windows(spans, 50, below=0.8, context=1) == [(0, 6, 0, 45)]


LEX = get_lexicon(("en",))


def test_settle_takes_the_word_both_networks_prefer() -> None:
    # The first network read "CAB" with the middle glyph unsure (A 0.5 vs B 0.45);
    # the second read "CBB" with conviction: the product prefers "CBB".
    first = _reading([{"C": 0.9}, {}, {"A": 0.5, "B": 0.45}, {}, {"B": 0.9}])
    second = _reading([{"C": 0.9}, {"B": 0.9, "A": 0.04}, {}, {"B": 0.9}, {}])
    picks, doubts = settle(["CAB"], [False], "CBB", first, second, None, 0)
    assert picks == {0: "CBB"} and doubts == []
    # With the first network sure of its A, the second's B does not win.
    sure = _reading([{"C": 0.9}, {}, {"A": 0.98, "B": 0.01}, {}, {"B": 0.9}])
    assert settle(["CAB"], [False], "CBB", sure, second, None, 0) == ({}, [])
    # A word a settling rule made is left as it is, and so is a reading in glyphs
    # outside ASCII for an ASCII word.
    assert settle(["CAB"], [True], "CBB", first, second, None, 0) == ({}, [])
    # ... and so is a reading in glyphs outside ASCII for an ASCII word, however
    # probable both networks find it.
    accent_1 = _reading([{"C": 0.9}, {}, {"A": 0.3, "É": 0.6}, {}, {"B": 0.9}])
    accent_2 = _reading([{"C": 0.9}, {"É": 0.95}, {}, {"B": 0.9}, {}])
    assert settle(["CAB"], [False], "CÉB", accent_1, accent_2, None, 0) == ({}, [])
    assert settle(["CÉB"], [False], "CAB", accent_1, second, None, 0)[0] == {0: "CAB"}


def test_settle_never_puts_a_digit_for_a_sign() -> None:
    # "@2" (a count's '@') read "02" by the second network: the first's settling
    # rules judge that with the line's context; the second reading cannot.
    first = _reading([{"@": 0.4, "0": 0.35}, {}, {"2": 0.9}])
    second = _reading([{"0": 0.99}, {}, {"2": 0.99}])
    assert settle(["@2", "A"], [False, False], "02 A", first, second, None, 0) == ({}, [])


def test_settle_gives_amount_digits_to_the_sums() -> None:
    first = _reading([{"5": 0.9}, {".": 0.9}, {"2": 0.5, "5": 0.4}, {"5": 0.9}])
    second = _reading([{"5": 0.9}, {".": 0.9}, {"5": 0.95}, {"5": 0.9}])
    picks, doubts = settle(["A", "5.25"], [False, False], "A 5.55", first, second, None, 10)
    # Word 1 starts 2 characters into the stretch, which starts at 10: the doubt on
    # its third character is at 14. The text is not changed here.
    assert picks == {} and doubts == [(14, "5", 1.0)]
    # The decimal separator the second network read is a doubt as well.
    assert settle(["5,25"], [False], "5.25", first, second, None, 0)[1] == [(1, ".", 1.0)]


def test_settle_weighs_the_lexicon() -> None:
    # Both networks are torn evenly between the two readings: the common word wins.
    alphabet = ["", "A", "C", "H", "I", "M", "N", "O", "R", "S", "U", " "]
    rows = [{"C": 0.9}, {"A": 0.9}, {"S": 0.9}, {"M": 0.45, "H": 0.45}]
    first = _reading(rows, alphabet)
    second = _reading(rows, alphabet)
    assert settle(["CASM"], [False], "CASH", first, second, LEX, 0) == ({0: "CASH"}, [])
    assert settle(["CASH"], [False], "CASM", first, second, LEX, 0) == ({}, [])
    assert settle(["CASM"], [False], "CASH", first, second, None, 0) == ({}, [])  # a tie


def test_the_lexicon_does_not_overrule_two_sure_networks() -> None:
    # The first network is sure of its D (0.97) and unsure only of the N; the second
    # reads O. "SON" is a far more common word than "SDN", yet the D was no doubt.
    alphabet = ["", "D", "N", "O", "S", " "]
    first = _reading([{"S": 0.95}, {"D": 0.97, "O": 0.001}, {"N": 0.7}], alphabet)
    second = _reading([{"S": 0.95}, {"O": 0.9, "D": 0.002}, {"N": 0.9}], alphabet)
    assert settle(["SDN"], [False], "SON", first, second, LEX, 0, below=0.8) == ({}, [])
    # Where the D was itself in doubt, the lexicon may tip the balance.
    torn = _reading([{"S": 0.95}, {"D": 0.5, "O": 0.3}, {"N": 0.7}], alphabet)
    assert settle(["SDN"], [False], "SON", torn, second, LEX, 0, below=0.8)[0] == {0: "SON"}


def test_apply_keeps_the_doubts_in_step() -> None:
    text = "TOTAI 12.50 CASM 20.00"
    doubts = [(7, "3", 0.5), (18, "6", 0.4), (2, "X", 0.1)]
    out, kept = apply(text, doubts, {0: "TOTAL", 2: "CASH"}, [(17, "9", 1.0), (7, "3", 1.0)])
    assert out == "TOTAL 12.50 CASH 20.00"
    # Same-length words: the doubts stay where they were; one inside a replaced word
    # goes; a doubt read twice is kept once, with the higher ratio.
    assert kept == [(7, "3", 1.0), (18, "6", 0.4), (17, "9", 1.0)]
    longer, moved = apply("AB 1.00", [(4, "7", 0.5)], {0: "ABC"}, [])
    assert longer == "ABC 1.00" and moved == [(5, "7", 0.5)]
