"""A short code beside an amount read as a currency symbol, when the network
offered the glyphs for it.

The recogniser confuses M with H and N in receipt fonts, so "RM13.65" comes out
"RH13.65" and a column header "AMT(RM)" as "AMT(RN)". Where a two- or three-
letter run sits where a currency goes (glued to an amount, right before an
amount, in parentheses, alone on its line, or ending a line of words) and is not a currency already,
one of its letters is swapped for a runner-up glyph the network gave when that
makes a currency code or letter symbol of any CLDR locale
(stages/currencies.py). No glyph the network did not offer is invented, and
nothing changes away from an amount's place.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ocrq.stages.amounts import AMOUNT_DIGITS
from ocrq.stages.currencies import CURRENCIES
from ocrq.stages.lexicon import Glyph

_AMOUNT = rf"[-+]?{AMOUNT_DIGITS}"
AMOUNT = re.compile(f"^{_AMOUNT}$")
# A letter run in a currency's place inside one token: before an amount
# ("RH13.65"), or in parentheses ("(RN)", "TAX(RH)").
_GLUED = re.compile(f"(?<![A-Za-z])([A-Za-z]{{2,3}})(?={_AMOUNT}$)")
_PAREN = re.compile(r"\(([A-Za-z]{2,3})\)")
_WHOLE = re.compile(r"^([A-Za-z]{2,3})[:.]?$")


def places(text: str, next_word: str | None, alone: bool, label: bool = False
           ) -> list[tuple[int, int]]:
    """Spans of ``text`` (one token) in a currency's place that are no currency yet.

    ``next_word``: the line's next token (None at the end); ``alone``: the
    token is the whole line; ``label``: the token ends a line after other
    words and is no common word itself ("CHANGE RH", "ROUNDING RN": the
    amount stands in a box of its own to the right).
    """
    spans = [m.span(1) for m in _GLUED.finditer(text)]
    spans += [m.span(1) for m in _PAREN.finditer(text)]
    whole = _WHOLE.match(text)
    if whole and (alone or label or (next_word is not None and AMOUNT.match(next_word))):
        spans.append(whole.span(1))
    return [(a, b) for a, b in spans if text[a:b].upper() not in CURRENCIES]


def settle_currency(glyphs: Sequence[Glyph]) -> str:
    """The run ``glyphs`` spell (one span from :func:`places`), made a currency by
    one runner-up glyph where the network offered one."""
    text = "".join(g.char for g in glyphs)
    best: tuple[float, int, str] | None = None
    for i, glyph in enumerate(glyphs):
        for alt, p in glyph.alternatives:
            cand = text[:i] + alt + text[i + 1 :]
            if alt.isalpha() and cand.upper() in CURRENCIES and (best is None or p > best[0]):
                best = (p, i, alt)
    if best is None:
        return text
    _, i, alt = best
    alt = alt.upper() if text[i].isupper() else alt.lower()
    return text[:i] + alt + text[i + 1 :]
