"""Amounts that must add up: a doubtful digit settled by the page's arithmetic.

A receipt's amounts column adds up: items to a subtotal, subtotal and tax and
rounding to a total, cash less total to the change. Each printed line
contributes its rightmost amount, in reading order. A line *checks out* when its
amount is the sum of a run of at least two lines right above it (two of them
not zero), or the difference of the two lines above it (cash less total).

Among the digits recognition doubted (stages/amounts.py ``Doubt``), the set of at
most ``max_swaps`` that makes the most lines check out is taken, when

- the page as read already adds up somewhere (a price list, whose amounts never
  sum, is left alone: a changed digit there would only ever find coincidences);
- more lines check out than as read, and every line that did still does;
- every line it changes takes part in a sum or difference that checks out only
  with the change (two changes cancelling out inside a sum that held prove nothing);
- it changes no line that equals the line next to it as read (SUBTOTAL and TOTAL,
  TOTAL and CASH repeat each other; they confirm each other).

Ties go to fewer changes, then to the more probable runner-ups. No digit the
network did not offer is invented.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from ocrq.stages.amounts import Doubt, amount_spans, amount_value, separators

__all__ = ["AmountOptions", "Doubt", "settle_amounts", "settle_lines"]


@dataclass(frozen=True)
class AmountOptions:
    max_swaps: int = 2  # digits changed on one page at most (a subtotal and its total)
    max_run: int = 12  # lines a sum may span
    max_doubts: int = 12  # the most probable doubts looked at on one page
    # A separator doubt at least this share of the chosen separator's probability
    # takes the page's convention (stages/amounts.py separators).
    separator_ratio: float = 0.15


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
            mine = tuple(d for d in doubts[i] if a <= d[0] < b and d[1].isdigit())
            last[printed[i]] = _Row(i, (a, b), amount_value(text, a, b), mine)
    return [last[k] for k in sorted(last)]


def _relation(values: Sequence[int], k: int, max_run: int) -> set[int]:
    """The lines of the sum or difference line ``k`` checks out as (empty: none)."""
    part: set[int] = set()
    if k < 2:
        return part
    run, nonzero = 0, 0
    for j in range(k - 1, max(-1, k - 1 - max_run), -1):
        run += values[j]
        nonzero += values[j] != 0
        if nonzero >= 2 and run == values[k]:  # two lines at least
            part.update(range(j, k + 1))
            break
    a, b = values[k - 2], values[k - 1]
    if a and b and b - a == values[k]:
        part.update((k - 2, k - 1, k))
    return part


def settle_amounts(texts: Sequence[str], doubts: Sequence[Sequence[Doubt]],
                   printed: Sequence[int], options: AmountOptions | None = None) -> list[str]:
    """``texts`` (in reading order; ``printed[i]``: text i's printed line) with the
    page's decimal separator and the doubtful digits its sums settle."""
    opts = options or AmountOptions()
    texts = separators(texts, doubts, opts.separator_ratio)
    out = list(texts)
    rows = _rows(texts, doubts, printed)
    values = [r.value for r in rows]
    base = {k: p for k in range(len(values)) if (p := _relation(values, k, opts.max_run))}
    if not base:
        return out
    fixed = {k for k in range(1, len(values)) if values[k] == values[k - 1]}
    fixed |= {k - 1 for k in fixed}
    offered = sorted(((k, d) for k, r in enumerate(rows) if k not in fixed for d in r.doubts),
                     key=lambda kd: -kd[1][2])[: opts.max_doubts]
    best: tuple[int, int, float] | None = None  # (lines checking out, -changes, ratio product)
    choice: tuple[tuple[int, Doubt], ...] = ()
    for size in range(1, opts.max_swaps + 1):
        for combo in itertools.combinations(offered, size):
            if len({k for k, _ in combo}) < size:
                continue  # one digit per line
            hits = _trial(rows, values, texts, base, combo, opts.max_run)
            if hits is None:
                continue
            ratio = 1.0
            for _, d in combo:
                ratio *= d[2]
            key = (hits, -size, ratio)
            if best is None or key > best:
                best, choice = key, combo
    for k, (at, digit, _) in choice:
        i = rows[k].text
        out[i] = out[i][:at] + digit + out[i][at + 1 :]
    return out


def _trial(rows: Sequence[_Row], values: Sequence[int], texts: Sequence[str],
           base: dict[int, set[int]], combo: Sequence[tuple[int, Doubt]], max_run: int
           ) -> int | None:
    """How many lines check out with ``combo``'s digits taken; None where that breaks
    a line that checked out, adds none, or leaves a changed line out of every sum."""
    trial = list(values)
    for k, (at, digit, _) in combo:
        text = texts[rows[k].text]
        a, b = rows[k].span
        trial[k] = amount_value(text[:at] + digit + text[at + 1 :], a, b)
    # Only lines within a run's reach below a change can check out differently.
    near = {j for k, _ in combo for j in range(k, min(len(trial), k + max_run + 1))}
    now = {j: p for j in near if (p := _relation(trial, j, max_run))}
    if any(j in base and j not in now for j in near):
        return None
    hits = len(set(base) | set(now))
    # Each change must make a line check out that did not: two changes that only
    # cancel out inside a sum that already held prove nothing.
    new = set().union(*(p for j, p in now.items() if j not in base))
    if hits <= len(base) or any(k not in new for k, _ in combo):
        return None
    return hits


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
