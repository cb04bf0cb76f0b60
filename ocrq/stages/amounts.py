"""Amounts on a page: their runs, values and the doubts recognition records.

Faded receipt print leaves the recogniser torn between look-alike digits (8/9,
5/6, 3/8): "92.50" comes out "82.50" with 9 a close runner-up. One amount alone
cannot settle that; the page can (stages/sums.py). Recognition records, for the
digits and the decimal separator of amount-shaped runs, the runner-ups the
network nearly chose (``Doubt``); reorder settles them with the whole page:

- the page's sums (stages/sums.py);
- the page's decimal separator (:func:`separators`): an amount written with the
  other one ("60,30" among ten amounts with a point) takes the page's where the
  network offered it.

A lone glyph ending a line right after an amount is a code column's (a tax code,
"4.90 S"): a letter where the network offered one for a digit there
(:func:`code_letter`, applied by recognition itself).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from ocrq.stages.lexicon import Glyph

# (index in the line's text, the digit or separator offered, its probability / the chosen one's)
Doubt = tuple[int, str, float]

# An amount's digits with two decimals ("5.25", "1,250.00"): the one pattern the
# settling rules share (stages/currency.py, stages/numbers.py).
AMOUNT_DIGITS = r"\d+(?:[.,]\d{3})*[.,]\d{2}"
# An amount in a text ("-0.01", "RM13.65"'s 13.65), not part of a longer number, a
# date or a rate ("6.00%"); leader dots may follow.
_AMOUNT = re.compile(rf"(?<![\d.,])[-+]?{AMOUNT_DIGITS}(?![\d,%]|\.\d)")
# Letters whose two cases look alike: a lowercase runner-up is the capital too.
_CASE_ALIKE = set("COSUVWXZ")


def amount_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _AMOUNT.finditer(text)]


def amount_value(text: str, a: int, b: int) -> int:
    """The amount ``text[a:b]`` (a span of :func:`amount_spans`) in hundredths,
    negative with a leading or trailing minus or in parentheses ("1.00-", "(1.00)")."""
    digits = int("".join(c for c in text[a:b] if c.isdigit()))
    after = text[b : b + 1]
    trailing = after == "-" and not text[b + 1 : b + 2].isdigit()  # "1.00-2.00": a range
    negative = (text[a] == "-" or trailing
                or (a > 0 and text[a - 1] == "(" and after == ")"))
    return -digits if negative else digits


def ends_in_amount(word: str) -> bool:
    spans = amount_spans(word)
    return bool(spans) and spans[-1][1] == len(word)


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
            seen = set()
            for alt, p in g.alternatives:  # most probable first: the first of a kind counts
                if alt in want and alt != word[i] and alt not in seen and p >= min_ratio * g.prob:
                    seen.add(alt)
                    out.append((offset + i, alt, round(p / g.prob, 4)))
    return out


def code_letter(glyph: Glyph, min_ratio: float) -> str:
    """The capital letter a lone glyph after an amount at a line's end stands for,
    where the network offered it for a digit at ``min_ratio`` of the digit's
    probability ("5" with S and s at a third of it); else the glyph as read.

    A lowercase runner-up counts only for a letter whose cases look alike (s, c, o,
    ...): "l" is not an "L". 0 and 1 stay digits: numeric tax codes use them, and
    their letters (O, I, l) are what those digits look like anyway.
    """
    if not glyph.char.isdigit() or glyph.char in "01":
        return glyph.char
    offered: Counter[str] = Counter()
    for alt, p in glyph.alternatives:
        if alt.isascii() and (alt.isupper() or alt.upper() in _CASE_ALIKE):
            offered[alt.upper()] += p
    if offered:
        letter, p = offered.most_common(1)[0]
        if p >= min_ratio * glyph.prob:
            return letter
    return glyph.char


def separators(texts: Sequence[str], doubts: Sequence[Sequence[Doubt]], min_ratio: float
               ) -> list[str]:
    """``texts`` with each amount written in the page's minority decimal separator
    changed to the page's, where the network offered that at ``min_ratio``.

    A convention needs at least five amounts and four times as many as the other
    form; a comma-decimal page settles the other way.
    """
    out = list(texts)
    runs = [(i, b - 3) for i, t in enumerate(texts) for _, b in amount_spans(t)]
    seps = Counter(texts[i][at] for i, at in runs).most_common()
    if len(seps) < 2 or seps[0][1] < 5 or seps[0][1] < 4 * seps[1][1]:
        return out  # no clear page convention
    page = seps[0][0]
    for i, at in runs:
        if out[i][at] != page and any(d[0] == at and d[1] == page and d[2] >= min_ratio
                                      for d in doubts[i]):
            out[i] = out[i][:at] + page + out[i][at + 1 :]
    return out
