"""Amounts that must add up: a doubtful digit settled by the page's arithmetic.

Faded receipt print leaves the recogniser torn between look-alike digits (8/9,
5/6, 3/8): "92.50" comes out "82.50" with 9 as a close runner-up. One amount
alone cannot settle that; the page can. A receipt's amounts column adds up:
items to a subtotal, subtotal and tax and rounding to a total, cash less total
to the change.

Each printed line contributes its rightmost amount, in reading order. A line
*checks out* when its amount is the sum of a run of at least two lines right
above it (two of them not zero), or the difference of the two lines above it
(cash less total). Recognition records, for the digits of amount-shaped runs,
the runner-up digits the network nearly chose (``Doubt``). Here the set of at
most ``max_swaps`` offered digits that makes the most lines check out is
taken, when it makes more lines check out than the page as read, every line
that checked out still does, and every line it changes takes part in a sum or
difference that checks out. No digit the network did not offer is invented.

First, a page's amounts share one decimal separator: an amount written with
the other one ("60,30" among ten amounts with a point) takes the page's where
the network offered it as the separator's runner-up.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from ocrq.stages.lexicon import Glyph

# (index in the line's text, the digit offered, its probability / the chosen digit's)
Doubt = tuple[int, str, float]

# An amount with two decimals ("5.25", "-0.01", "1,250.00", "RM13.65"'s 13.65),
# not part of a longer number, a date or a rate ("6.00%").
_AMOUNT = re.compile(r"(?<![\d.,])[-+]?\d+(?:[.,]\d{3})*[.,]\d{2}(?![\d.,%])")


@dataclass(frozen=True)
class AmountOptions:
    min_ratio: float = 0.1  # a runner-up this close to the chosen digit is a real doubt
    max_swaps: int = 2  # digits changed on one page at most (a subtotal and its total)
    max_run: int = 12  # lines a sum may span
    max_doubts: int = 12  # the most probable doubts looked at on one page


def amount_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _AMOUNT.finditer(text)]


def cents(run: str) -> int:
    """The value of an amount run (``amount_spans``) in hundredths."""
    sign = -1 if run.startswith("-") else 1
    digits = "".join(c for c in run if c.isdigit())
    return sign * int(digits)


def digit_doubts(word: str, glyphs: Sequence[Glyph], offset: int, min_ratio: float
                 ) -> list[Doubt]:
    """Doubts on the digits and decimal separators of ``word``'s amounts; ``glyphs``:
    the word's, one per character, as the network chose them; ``offset``: where the
    word starts in its line."""
    out: list[Doubt] = []
    for a, b in amount_spans(word):
        for i in range(a, b):
            g = glyphs[i]
            if g.prob <= 0:
                continue
            # A digit's runner-up digits; the decimal separator's other form.
            want = "0123456789" if word[i].isdigit() else ".," if i == b - 3 else ""
            for alt, p in g.alternatives:
                if alt in want and alt != word[i] and p >= min_ratio * g.prob:
                    out.append((offset + i, alt, round(p / g.prob, 4)))
    return out


def code_letter(glyph: Glyph, min_ratio: float) -> str:
    """A lone glyph ending a line right after an amount is a code column's (a tax
    code: "4.90 S"), a letter: the letter the network offered for a digit there
    ("5" with S at a third of its probability), both cases counted together."""
    if not glyph.char.isdigit():
        return glyph.char
    offered: Counter[str] = Counter()
    for alt, p in glyph.alternatives:
        if alt.isascii() and alt.isalpha():
            offered[alt.upper()] += p
    if offered:
        letter, p = offered.most_common(1)[0]
        if p >= min_ratio * glyph.prob:
            return letter
    return glyph.char


def ends_in_amount(word: str) -> bool:
    spans = amount_spans(word)
    return bool(spans) and spans[-1][1] == len(word)


@dataclass(frozen=True)
class _Row:
    text: int  # which line text holds the amount
    span: tuple[int, int]
    value: int
    doubts: tuple[Doubt, ...]


def _rows(texts: Sequence[str], doubts: Sequence[Sequence[Doubt]],
          printed: Sequence[int]) -> list[_Row]:
    """Each printed line's rightmost amount, in reading order (``texts`` are in it)."""
    last: dict[int, _Row] = {}
    for i, text in enumerate(texts):
        spans = amount_spans(text)
        if spans:
            a, b = spans[-1]
            mine = tuple(d for d in doubts[i] if a <= d[0] < b)
            last[printed[i]] = _Row(i, (a, b), cents(text[a:b]), mine)
    return [last[k] for k in sorted(last)]


def _checked(values: Sequence[int], max_run: int) -> tuple[frozenset[int], set[int]]:
    """The lines that check out, and every line taking part in a sum or difference
    that does."""
    hits, part = set(), set()
    for k in range(2, len(values)):
        run, nonzero = 0, 0
        for j in range(k - 1, max(-1, k - 1 - max_run), -1):
            run += values[j]
            nonzero += values[j] != 0
            if k - j >= 2 and nonzero >= 2 and run == values[k]:
                part.update(range(j, k + 1))
                hits.add(k)
                break
        a, b = values[k - 2], values[k - 1]
        if a and b and b - a == values[k]:
            part.update((k - 2, k - 1, k))
            hits.add(k)
    return frozenset(hits), part


def settle_amounts(texts: Sequence[str], doubts: Sequence[Sequence[Doubt]],
                   printed: Sequence[int], options: AmountOptions | None = None) -> list[str]:
    """``texts`` (in reading order; ``printed[i]``: text i's printed line) with the
    doubtful digits the page's sums settle changed."""
    opts = options or AmountOptions()
    texts = _separators(texts, doubts)
    out = list(texts)
    digits = [[d for d in line if d[1].isdigit()] for line in doubts]
    rows = _rows(texts, digits, printed)
    values = [r.value for r in rows]
    base, _ = _checked(values, opts.max_run)
    offered = sorted(((k, d) for k, r in enumerate(rows) for d in r.doubts),
                     key=lambda kd: -kd[1][2])[: opts.max_doubts]
    best: tuple[int, int, float] | None = None  # (lines checking out, -swaps, ratio product)
    choice: tuple[tuple[int, Doubt], ...] = ()
    for size in range(1, opts.max_swaps + 1):
        for combo in itertools.combinations(offered, size):
            if len({k for k, _ in combo}) < size:
                continue  # one digit per line
            trial = list(values)
            for k, d in combo:
                trial[k] = _with(rows[k], texts, d)
            hits, part = _checked(trial, opts.max_run)
            # More lines check out, none that did stops, every change takes part.
            if len(hits) <= len(base) or not base <= hits or any(k not in part for k, _ in combo):
                continue
            ratio = 1.0
            for _, d in combo:
                ratio *= d[2]
            key = (len(hits), -size, ratio)
            if best is None or key > best:
                best, choice = key, combo
    for k, (at, digit, _) in choice:
        i = rows[k].text
        out[i] = out[i][:at] + digit + out[i][at + 1 :]
    return out


def _separators(texts: Sequence[str], doubts: Sequence[Sequence[Doubt]]) -> list[str]:
    """A page's amounts share one decimal separator: an amount written with the
    other one takes the page's where the network offered it ("60,30" among
    ten amounts with a point; a comma's tail is often a speck)."""
    out = list(texts)
    runs = [(i, b - 3) for i, t in enumerate(texts) for _, b in amount_spans(t)]
    seps = Counter(texts[i][at] for i, at in runs).most_common()
    if len(seps) < 2 or seps[0][1] < 3 or seps[0][1] < 3 * seps[1][1]:
        return out  # no clear page convention
    page = seps[0][0]
    for i, at in runs:
        if out[i][at] != page and any(d[0] == at and d[1] == page for d in doubts[i]):
            out[i] = out[i][:at] + page + out[i][at + 1 :]
    return out


def _with(row: _Row, texts: Sequence[str], doubt: Doubt) -> int:
    text = texts[row.text]
    at, digit, _ = doubt
    changed = text[:at] + digit + text[at + 1 :]
    return cents(changed[row.span[0] : row.span[1]])


def settle_lines(texts: Sequence[tuple[str, float]], doubts: Sequence[Sequence[Doubt]],
                 keep: Sequence[int], order: Sequence[int], printed: Sequence[int],
                 options: AmountOptions | None = None) -> list[tuple[str, float]]:
    """(text, confidence) per detected line, the kept ones (``keep``, placed at
    ``order[j]`` on printed line ``printed[j]``) settled by :func:`settle_amounts`."""
    ranked = sorted(range(len(keep)), key=lambda j: order[j])
    lines = [keep[j] for j in ranked]
    settled = settle_amounts([texts[i][0] for i in lines], [doubts[i] for i in lines],
                             [printed[j] for j in ranked], options)
    out = list(texts)
    for i, text in zip(lines, settled, strict=True):
        out[i] = (text, texts[i][1])
    return out
