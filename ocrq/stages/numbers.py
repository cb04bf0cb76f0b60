"""Numbers made well-formed with the glyphs the network offered for them.

The recogniser reads a faint 5 as S and 8 as B inside numbers ("411S0",
"S.25"), and the '@' of a unit price or a tax rate as a 0, 6 or B ("GST06%",
"00.98", "B6%"). A number's own shape is the context that settles these: a
run of digits with one letter in it, an amount with a letter in it, an amount
or a percentage whose integer part starts with a zero. Where the network
offered the glyph that makes the number well-formed, that glyph is taken; no
glyph it did not offer is invented, and mixed codes ("S87", "M026588") are
left as read.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from ocrq.stages.amounts import AMOUNT_DIGITS
from ocrq.stages.lexicon import Glyph

# An amount ("5.25", "1,250.00") or a percentage ("6%", "6.00%") as a whole run.
_AMOUNT = re.compile(f"^{AMOUNT_DIGITS}$")
_RATE = re.compile(r"^\d+(?:[.,]\d+)?%$")
# A number run inside a token: digits with separators, perhaps a trailing %.
_RUN = re.compile(r"[0-9A-Za-z](?:[0-9A-Za-z.,]*[0-9A-Za-z])?%?")
# A glyph (a zero or a letter) right before a rate or an amount that starts
# with a digit, not itself inside a number ("GST06%", "00.98", "B6%").
_AT = re.compile(rf"(?<![0-9.,])([0A-Za-z])(?=\d+(?:[.,]\d+)?%|{AMOUNT_DIGITS}(?!\d))")
NEARLY = 0.1  # a runner-up this close to the chosen glyph is a real doubt
MIN_DIGITS = 3  # a digit run needs more digits than this before a letter in it is one


def settle_number(glyphs: Sequence[Glyph]) -> str:
    """The token ``glyphs`` spell, with look-alike letters in its numbers made
    digits and a misread '@' before a price or a rate restored."""
    chars = [g.char for g in glyphs]
    if any(len(c) != 1 for c in chars):
        return "".join(chars)  # positions in the text must be positions in the glyphs
    for m in _RUN.finditer("".join(chars)):
        a, b = m.span()
        _digits_for_letters(chars, glyphs, a, b)
    _at_sign(chars, glyphs)
    return "".join(chars)


def _offered(glyph: Glyph, want: str) -> str | None:
    """The most probable runner-up of ``glyph`` among the characters ``want``, if
    the network nearly chose it (a tenth of the chosen glyph's probability)."""
    for alt, p in glyph.alternatives:  # most probable first
        if alt in want:
            return alt if p >= NEARLY * glyph.prob else None
    return None


def _digits_for_letters(chars: list[str], glyphs: Sequence[Glyph], a: int, b: int) -> None:
    """Letters in a run that is a number but for them become the digits offered."""
    head = a
    while head < b and chars[head].isalpha():
        head += 1
    if head - a >= 2:
        a = head  # a word or code before the number ("RM31.98", "SR1234")
    letters = [i for i in range(a, b) if chars[i].isalpha()]
    if not letters or len(letters) > 2 or letters[-1] == b - 1:
        return  # a trailing letter is a unit more often ("1.5L", "100G")
    swap = {i: _offered(glyphs[i], "0123456789") for i in letters}
    if letters[0] == a and _AMOUNT.match(_swapped(chars, swap, a + 1, b)):
        # A letter before what is a whole amount without it is a sign or a
        # code ("S0.50": a $), not a digit; the sign if the network offered one.
        sign = next((c for c, _ in glyphs[a].alternatives
                     if unicodedata.category(c) == "Sc"), None)
        chars[a] = sign or chars[a]
        del swap[a]
        a += 1
    if not swap or any(d is None for d in swap.values()):
        return
    cand = _swapped(chars, swap, a, b)
    amount = bool(_AMOUNT.match(cand) or _RATE.match(cand))
    # Without an amount's shape, only one letter among several digits, inside
    # the run (a leading or trailing letter may be a code's prefix: "S87").
    plain = (len(swap) == 1 and sum(c.isdigit() for c in cand) > MIN_DIGITS
             and cand.isdigit() and a < min(swap) < b - 1)
    if amount or plain:
        for i, d in swap.items():
            chars[i] = d or chars[i]


def _swapped(chars: list[str], swap: dict[int, str | None], a: int, b: int) -> str:
    return "".join(swap.get(i) or chars[i] for i in range(a, b))


_TIMES = frozenset({"X", "x", "×", "*"})


def at_quantity(glyphs: Sequence[Glyph], following: str | None) -> str:
    """A count before a multiplication sign written "@2 X RM 6.35" whose '@' was read
    as a zero ("02 X"): the '@' where the network offered it. A count is not written
    with a leading zero, so "02" right before "X" is no number as read."""
    text = "".join(g.char for g in glyphs)
    if (following in _TIMES and re.fullmatch(r"0\d{1,3}", text) is not None
            and _offered(glyphs[0], "@")):
        return "@" + text[1:]
    return text


def _at_sign(chars: list[str], glyphs: Sequence[Glyph]) -> None:
    """A price or rate whose first glyph would be '@' where its integer part starts
    with a zero ("00.98", "GST06%") or with a letter ("B6%"), if '@' was offered."""
    for m in _AT.finditer("".join(chars)):
        i = m.start(1)
        if chars[i].isalpha() and i > 0 and chars[i - 1].isalnum():
            continue  # a letter is an '@' only where a word cannot go on ("GST6%")
        if _offered(glyphs[i], "@"):
            chars[i] = "@"
