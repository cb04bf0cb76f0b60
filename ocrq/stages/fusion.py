"""Two recognisers' readings of one doubtful word, settled.

Where the first recogniser (PP-OCRv4) is unsure of a glyph of a word, a second
network (PP-OCRv6 small: another architecture, other training data) reads the
same stretch of the line crop: a window from halfway into the gap before the
word to halfway into the gap after it (:func:`windows`). Their errors are not
the same ("QTY" read "ATY", "CAMPANY", "RETUNABLE" by one; "NARNE", "ITEH",
"TOTAI" by the other), so where the two disagree the word goes to the reading
the two networks together find more probable, weighed with the lexicon (a
product of experts with a word prior: the noisy-channel choice stages/lexicon.py
makes among one network's runner-ups):

    score(word) = ln P1(word) + ln P2(word) + ln(10) * zipf(word)

``P1``/``P2`` are each network's CTC probability of the word's characters on the
window (every alignment summed: :func:`log_likelihood`), so a reading is judged
by both networks even where one of them would never have emitted it.

What is never taken from the second reading (:func:`settle`): a word a settling
rule of the first made (a currency, a quantity's '@', a lexicon correction: those
used the line's context), a reading of more than one word, glyphs outside ASCII
for an ASCII word, a digit for a sign ("02" for "@2"), and the digits of an
amount: those become doubts for the page's sums to settle (stages/sums.py), as the
first network's own runner-up digits do.
"""

from __future__ import annotations

import difflib
import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from ocrq.stages.amounts import Doubt, amount_spans
from ocrq.stages.ctc import Scores, pack_top_k
from ocrq.stages.lexicon import Lexicon
from ocrq.stages.zero_o import settle_word

FLOOR = 1e-7  # a class a top-k output does not list, or a character a network lacks
LN10 = math.log(10)


def is_threshold(value: object) -> bool:
    """A second-reading threshold: a number (not a bool) from 0 (off) to 1 (every
    word); NaN is none. Settings, plans and messages all check theirs with this."""
    return not isinstance(value, bool) and isinstance(value, int | float) and 0 <= value <= 1


@dataclass(frozen=True)
class Reading:
    """One network's output for a stretch of a line, with its dictionary (0 = blank)."""

    scores: Scores
    charset: Sequence[str]


class WordSpan(NamedTuple):
    """Where one decoded word came from: its first and last CTC step (-1: not known;
    recognize._words always knows them), its least probable glyph's probability,
    and whether a settling rule made it (or its glyphs did not map one to one)."""

    first: int
    last: int
    weakest: float
    settled: bool


def windows(spans: Sequence[WordSpan], steps: int, below: float, context: int = 0
            ) -> list[tuple[int, int, int, int]]:
    """(first word, end word, first step, end step) of the stretches the second
    network reads: each word with a glyph below ``below`` (not made by a settling
    rule, steps known) with ``context`` words either side, stretches that overlap
    or touch merged. A stretch reaches halfway into the gaps beside it, so it shows none of
    the words outside it."""
    known = [w for w, s in enumerate(spans) if s.first >= 0]
    doubtful = [w for w in known if not spans[w].settled and spans[w].weakest < below]
    ranges: list[list[int]] = []
    for w in doubtful:
        at = known.index(w)
        w0, w1 = known[max(0, at - context)], known[min(len(known) - 1, at + context)]
        if ranges and w0 <= ranges[-1][1] + 1:
            ranges[-1][1] = max(ranges[-1][1], w1)
        else:
            ranges.append([w0, w1])
    out = []
    for w0, w1 in ranges:
        prev = max((spans[w].last for w in known if w < w0), default=spans[w0].first - 6)
        nxt = min((spans[w].first for w in known if w > w1), default=spans[w1].last + 6)
        out.append((w0, w1 + 1, max(0, (prev + spans[w0].first + 1) // 2),
                    min(steps, (spans[w1].last + nxt) // 2 + 1)))
    return out


def settle(mine: Sequence[str], settled: Sequence[bool], read: str, first: Reading,
           second: Reading, lexicon: Lexicon | None, offset: int, below: float = 1.0
           ) -> tuple[dict[int, str], list[Doubt]]:
    """The words to change among ``mine`` (the first network's reading of a
    stretch; ``settled``: made by a settling rule) where the second read ``read``
    (greedy) on the same stretch: {index in ``mine``: word}; doubts for the
    digits of amounts, at ``offset`` (where ``mine`` starts in its line). The
    lexicon's prior decides only where the glyphs that change were below ``below``
    to the first network: a doubt on one glyph is no licence to rewrite another it
    was sure of for a more common word ("SDN" -> "SON")."""
    other = read.split()
    picks: dict[int, str] = {}
    doubts: list[Doubt] = []
    if not other:
        return picks, doubts
    sure = _glyph_probs(first, mine)
    out = list(mine)
    matcher = difflib.SequenceMatcher(None, [w.upper() for w in mine],
                                      [w.upper() for w in other], autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op != "replace" or a1 - a0 != b1 - b0:
            continue  # an insertion or a split: spacing is the first decoder's
        for i, j in zip(range(a0, a1), range(b0, b1), strict=True):
            theirs = settle_word(other[j])
            if settled[i] or mine[i].upper() == theirs.upper() or (
                    mine[i].isascii() and not theirs.isascii()):
                continue
            if amount_spans(mine[i]) or amount_spans(theirs):
                doubts += _digit_doubts(mine[i], theirs, offset + word_offset(mine, i))
            elif _digits_alike(mine[i], theirs) and _prefers(
                    out, i, theirs, first, second, lexicon,
                    _only_doubtful(mine[i], theirs, sure[i], below)):
                out[i] = picks[i] = theirs
    return picks, doubts


def apply(text: str, doubts: Sequence[Doubt], picks: dict[int, str], extra: Sequence[Doubt]
          ) -> tuple[str, list[Doubt]]:
    """``text`` with word ``w`` replaced by ``picks[w]``; ``doubts`` and ``extra`` (new
    doubts on ``text``) kept in step with the changed text."""
    words = text.split()
    out = [picks.get(w, word) for w, word in enumerate(words)]
    # One doubt per glyph and digit, the more probable kept (the second network read
    # its digit outright: ratio 1).
    merged: dict[tuple[int, str], float] = {}
    for at, ch, ratio in [*doubts, *extra]:
        merged[at, ch] = max(ratio, merged.get((at, ch), 0.0))
    return " ".join(out), _shifted([(at, ch, r) for (at, ch), r in merged.items()], words, out)


def _glyph_probs(first: Reading, mine: Sequence[str]) -> list[list[float] | None]:
    """Per word of ``mine``, the first network's probability of each of its glyphs
    on the stretch (its best path); None where the path does not spell the words
    (a glyph recovered off the argmax, NFKC expansions): no glyph is known sure."""
    at = first.scores.path()
    glyphs = [(unicodedata.normalize("NFKC", first.charset[k]) if k < len(first.charset)
               else "", float(p))
              for k, p in zip(first.scores.idx[at], first.scores.best[at], strict=True)]
    glyphs = [(g, p) for g, p in glyphs if g.strip()]
    if "".join(g for g, _ in glyphs) != "".join(mine) or any(len(g) != 1 for g, _ in glyphs):
        return [None] * len(mine)
    out: list[list[float] | None] = []
    at = 0
    for word in mine:
        out.append([p for _, p in glyphs[at : at + len(word)]])
        at += len(word)
    return out


def _only_doubtful(mine: str, theirs: str, probs: list[float] | None, below: float) -> bool:
    """Whether every glyph of ``mine`` the second reading replaces or drops was one
    the first network gave less than ``below`` (glyphs it adds are not judged)."""
    if probs is None:
        return True
    ops = difflib.SequenceMatcher(None, mine, theirs, autojunk=False).get_opcodes()
    return all(p < below for op, a0, a1, _, _ in ops if op in ("replace", "delete")
               for p in probs[a0:a1])


def _prefers(words: list[str], i: int, theirs: str, first: Reading, second: Reading,
             lexicon: Lexicon | None, doubtful: bool) -> bool:
    """Whether the two networks together (and the lexicon) prefer the stretch with
    word ``i`` read ``theirs``. The lexicon tips the balance only where the glyphs
    that change were doubtful to the first network (``doubtful``): it breaks a
    near-tie, it does not overrule two networks each sure of its own glyph."""
    # The word prior weighs words against words: a '!' read "Il" is no word to gain.
    worded = lexicon is not None and _core(words[i]).isalpha() and _core(theirs).isalpha()
    candidate = [*words[:i], theirs, *words[i + 1 :]]

    def networks(stretch: list[str]) -> float:
        line = "".join(stretch)
        return log_likelihood(first, line) + log_likelihood(second, line)

    def prior(word: str) -> float:
        return LN10 * lexicon.zipf(_core(word)) if worded and lexicon is not None else 0.0

    gain = networks(candidate) - networks(words)
    return gain + prior(theirs) - prior(words[i]) > 0 and (gain > 0 or doubtful)


def word_offset(words: Sequence[str], i: int) -> int:
    """Where word ``i`` starts in ``" ".join(words)``."""
    return sum(len(w) + 1 for w in words[:i])


def compact(probs: np.ndarray, classes: int, k: int = 8) -> Scores:
    """The top-k form of one line's full output (stages/ctc.py), kept for a line
    that waits for the second network: a full one is ~2.6 MB a line."""
    if probs.shape[-1] != classes:
        return Scores.of(probs, classes)  # already the top-k form
    return Scores.of(pack_top_k(probs, k), classes)


def greedy(reading: Reading) -> str:
    """Best-path CTC text (repeats merged, blanks dropped), NFKC-folded."""
    chars = reading.charset
    return unicodedata.normalize("NFKC", "".join(
        chars[k] if k < len(chars) else "" for k in reading.scores.idx[reading.scores.path()]))


def log_likelihood(reading: Reading, text: str) -> float:
    """ln P(text | the network's per-step outputs), summed over every CTC alignment
    (case and NFKC twins merged; spaces left out: the two networks place them
    differently and the decoders decide them anyway)."""
    label = [c for c in text.upper() if not c.isspace()]
    steps = len(reading.scores.idx)
    if not label or len(label) > steps:
        return -1e9
    classes = _classes(tuple(reading.charset))
    uniq = sorted(set(label))
    emit = np.empty((steps, len(uniq) + 1), np.float64)
    emit[:, 0] = _prob(reading.scores, [0])
    for n, ch in enumerate(uniq, start=1):
        emit[:, n] = _prob(reading.scores, classes.get(ch, []))
    ext = np.zeros(2 * len(label) + 1, np.int64)  # blank, c1, blank, c2, ..., blank
    ext[1::2] = [uniq.index(c) + 1 for c in label]
    skip = np.zeros(len(ext), bool)  # c_{k-1} -> c_k directly when they differ
    skip[3::2] = ext[3::2] != ext[1:-2:2]
    probs = emit[:, ext]
    alpha = np.zeros(len(ext))
    alpha[:2] = probs[0, :2]
    log_scale = 0.0
    for t in range(1, steps):
        # The scaled forward recursion: alpha renormalised each step, its log kept.
        total = alpha.sum()
        if total <= 0:
            return -1e9
        alpha /= total
        log_scale += math.log(total)
        nxt = alpha.copy()
        nxt[1:] += alpha[:-1]
        nxt[2:] += np.where(skip[2:], alpha[:-2], 0.0)
        alpha = nxt * probs[t]
    end = alpha[-1] + alpha[-2]
    return math.log(end) + log_scale if end > 0 else -1e9


def _prob(scores: Scores, classes: Sequence[int]) -> np.ndarray:
    """Per step, the summed probability of ``classes`` (a floor when none is known)."""
    if not classes:
        return np.full(len(scores.idx), FLOOR)
    if scores.full is not None:
        return scores.full[:, classes].sum(axis=1).astype(np.float64) + FLOOR
    assert scores.top_p is not None and scores.top_i is not None
    hit = np.isin(scores.top_i, classes)
    return np.where(hit, scores.top_p, 0.0).sum(axis=1).astype(np.float64) + FLOOR


@lru_cache(maxsize=4)
def _classes(charset: tuple[str, ...]) -> dict[str, list[int]]:
    """Upper-cased NFKC character -> the classes that write it (blank excluded)."""
    out: dict[str, list[int]] = {}
    for k, ch in enumerate(charset):
        folded = unicodedata.normalize("NFKC", ch).upper() if k else ""
        if len(folded) == 1 and not folded.isspace():
            out.setdefault(folded, []).append(k)
    return out


def _core(word: str) -> str:
    return word.strip(".,:;!?()[]{}\"'*#-")


def _digits_alike(mine: str, theirs: str) -> bool:
    """False where the second reading puts a digit for a sign of the first ("@2 X"
    read "02 X", "6%" read "67"): a count's '@' and a rate's '%' are what the
    first reading's settling rules judge with the page's context
    (stages/numbers.py), which the second reading did not pass."""
    ops = difflib.SequenceMatcher(None, mine, theirs, autojunk=False).get_opcodes()
    return not any(op == "replace" and any(not c.isalnum() for c in mine[a0:a1])
                   and any(c.isdigit() for c in theirs[b0:b1])
                   for op, a0, a1, b0, b1 in ops)


def _digit_doubts(mine: str, theirs: str, offset: int) -> list[Doubt]:
    """The second network's other digits and decimal separators of an amount of the
    same shape, as doubts (a runner-up as probable as the chosen glyph: sums.py
    weighs them by that)."""
    if len(mine) != len(theirs) or amount_spans(mine) != amount_spans(theirs):
        return []
    return [(offset + k, theirs[k], 1.0) for a0, a1 in amount_spans(mine)
            for k in range(a0, a1) if mine[k] != theirs[k]
            and ((mine[k].isdigit() and theirs[k].isdigit()) or {mine[k], theirs[k]} == {".", ","})]


def _shifted(doubts: list[Doubt], before: Sequence[str], after: Sequence[str]) -> list[Doubt]:
    """``doubts`` (indices into the line ``before``) moved to the line ``after`` (the
    same words, some replaced); a doubt inside a replaced word is dropped."""
    out = []
    for at, ch, ratio in doubts:
        pos, shift = 0, 0
        for old, new in zip(before, after, strict=True):
            if at < pos + len(old):
                if old == new:
                    out.append((at + shift, ch, ratio))
                break
            pos += len(old) + 1
            shift += len(new) - len(old)
    return out
