"""The recogniser's 0/O confusion settled by the characters around it.

Within a word, a run of letters whose only digit is 0 is a word ("R0N" ->
"RON"), and a run of digits whose only letter is O is a number ("1O5O" ->
"1050"). Words that hold a decimal number ("RM0.00") keep their zeros, and an
O that opens an amount ("RMO.20") becomes one; mixed codes ("M026588") stay
as read.
"""

from __future__ import annotations

import re

_ALNUM_RUN = re.compile(r"[A-Za-z0-9]+")
_DECIMAL = re.compile(r"\d[.,]\d")
# An O that opens an amount ("RMO.20", "$O.50", "O.75") is a zero: after a
# currency sign or code, or at the start of the word, before a decimal part.
_AMOUNT_ZERO = re.compile(
    r"(?:^|(?<=[-+($€£¥])|(?<=RM)|(?<=RP)|(?<=USD)|(?<=SGD)|(?<=EUR)|(?<=GBP)|(?<=MYR))"
    r"[Oo](?=[.,]\d)",
    re.IGNORECASE,
)


def settle_zero_o(text: str) -> str:
    """Settle the recogniser's 0/O confusion from the surrounding characters.

    Within a word, a run of letters whose only digit is 0 is a word ("R0N" ->
    "RON"), and a run of digits whose only letter is O is a number ("1O5O" ->
    "1050"). Words that hold a decimal number ("RM0.00") keep their zeros,
    and an O that opens an amount ("RMO.20") becomes one; mixed codes
    ("M026588") stay as read.
    """
    return " ".join(settle_word(word) for word in text.split(" "))


def settle_word(word: str) -> str:
    word = _AMOUNT_ZERO.sub("0", word)
    numeric = bool(_DECIMAL.search(word))
    return _ALNUM_RUN.sub(lambda m: _zero_or_o(m, numeric=numeric), word)


def _zero_or_o(match: re.Match[str], numeric: bool = False) -> str:
    s = match.group(0)
    letters = sum(c.isalpha() for c in s)
    digits = len(s) - letters
    if (not numeric and letters >= 2 and digits and set(s) - {"0"}
            and all(c == "0" for c in s if c.isdigit())):
        return s.replace("0", "O")
    if digits >= 2 and letters and all(c in "Oo" for c in s if c.isalpha()):
        return s.replace("O", "0").replace("o", "0")
    return s
