"""Soft word breaks inside common words taken back ("INC LUSIVE" -> "INCLUSIVE"),
and any break inside a time of day ("12:12: 57" -> "12:12:57").

The ink-gap rule of stages/spacing.py splits beside the narrow I and L of
monospaced receipt fonts, and the network's space class rises a little there
too. A break that only those put (not a space the network emitted) is *soft*;
the lexicon may take it back.
"""

from __future__ import annotations

import re
import unicodedata

from ocrq.stages.lexicon import Lexicon

# Longest run of soft-broken tokens regrouped (the search is quadratic in it).
MAX_REJOIN = 8


def rejoin(tokens: list[list[int]], soft: list[bool], chars: list[str],
            lexicon: Lexicon) -> list[list[int]]:
    """Take back soft breaks that cut a common word in pieces.

    Along each run of tokens joined by soft breaks, the tokens are grouped so
    that as few of their letter runs as possible are not words of the lexicon
    (a break is taken back only between two letters, and a group of several
    tokens must read as an attested word across its joins); ties keep the breaks
    the geometry put. "INC LUSIVE" (one non-word) becomes "INCLUSIVE" (none);
    "SUB TOTAL" (two words) stays as read, and so does a name the lexicon does
    not know ("MA LURI").
    """
    out: list[list[int]] = []
    i = 0
    while i < len(tokens):
        j = i
        while j + 1 < len(tokens) and soft[j] and tokens[j] and tokens[j + 1]:
            j += 1
        run = ["".join(chars[k] for k in t) for t in tokens[i : j + 1]]
        for a, b in _groups(run, lexicon):
            out.append([k for t in tokens[i + a : i + b] for k in t])
        i = j + 1
    return out


def _groups(run: list[str], lexicon: Lexicon) -> list[tuple[int, int]]:
    """The best grouping of ``run``'s tokens as (start, end) ranges (see rejoin)."""
    n = len(run)
    if n == 1 or n > MAX_REJOIN:
        return [(a, a + 1) for a in range(n)]
    # best[e]: (non-words, joins, groups) of the best grouping of run[:e]
    best: list[tuple[int, int, list[tuple[int, int]]] | None] = [(0, 0, [])] + [None] * n
    for e in range(1, n + 1):
        for a in range(e - 1, -1, -1):
            if a < e - 1 and not (run[a][-1].isalpha() and run[a + 1][0].isalpha()):
                break  # groups grow leftwards only across letter-to-letter breaks
            text = "".join(run[a:e])
            if a < e - 1 and not _attested(_joined_core(run[a:e]), lexicon):
                continue
            prev = best[a]
            assert prev is not None
            cand = (prev[0] + _non_words(text, lexicon), prev[1] + (e - 1 - a),
                    [*prev[2], (a, e)])
            if best[e] is None or cand[:2] < best[e][:2]:  # type: ignore[index]
                best[e] = cand
    final = best[n]
    assert final is not None
    return final[2]


def _joined_core(parts: list[str]) -> str:
    """The letters across a group's joins: the first part's last letter run, the
    middle parts, the last part's first letter run. Empty (no join) where a run
    belongs to a code or a number ("36G", "I0010", "S.25"), or where a part is
    a one-letter word ("A RM"): those are not pieces of a word."""
    head = _HEAD.search(parts[0])
    tail = _TAIL.match(parts[-1])
    if head is None or tail is None:
        return ""
    if any(len(p) == 1 and p.isalpha() and p.upper() in "AI" for p in parts):
        return ""
    return head.group(1) + "".join(parts[1:-1]) + tail.group(1)


# A part's letter run at a join, not glued to a digit (a code such as "36G" or
# "I0010", or an amount misread "S.25").
_HEAD = re.compile(r"(?:^|[^\w])([^\W\d_]+)$")
_TAIL = re.compile(r"^([^\W\d_]+)(?![\d]|[.,]\d)")


def _non_words(text: str, lexicon: Lexicon) -> int:
    return sum(not lexicon.common(r) for r in re.findall(r"[^\W\d_]+", text))


def _attested(word: str, lexicon: Lexicon) -> bool:
    """A word a group may join into: a common one, or a rarer one of more than
    three letters ("RETURNABL E" -> "RETURNABLE"): joining never adds a
    non-word, as the grouping still counts them (``Lexicon.common``)."""
    return lexicon.common(word) or (len(word) > 3 and lexicon.zipf(word) >= 1.5)


# A time of day as one token: "7:05", "12:12:57", "02:49PM".
_TIME = re.compile(r"^(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?(?:[AaPp][Mm])?$")


def join_times(tokens: list[list[int]], chars: list[str]) -> list[list[int]]:
    """Breaks beside a time's colon taken back: the wide blank around a colon in
    receipt fonts puts one there ("03: 17:50"), and a time is never written with
    a space inside. Only where the tokens joined read as a whole time."""
    out: list[list[int]] = []
    for t in tokens:
        if out and out[-1] and t:
            # NFKC: the recogniser often picks the full-width colon for a Latin one.
            left = unicodedata.normalize("NFKC", "".join(chars[k] for k in out[-1]))
            right = unicodedata.normalize("NFKC", "".join(chars[k] for k in t))
            if (left.endswith(":") or right.startswith(":")) and _TIME.match(left + right):
                out[-1] = out[-1] + t
                continue
        out.append(t)
    return out
