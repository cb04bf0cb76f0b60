"""Character alignment of a ground-truth string with the text read there.

A plain Levenshtein alignment (substitution, deletion and insertion all cost 1)
with a backtrace, so every edit names its characters. ``free_start`` /
``free_end`` let the read text carry characters before / after the truth at no
cost (a predicted line that runs past the ground-truth segment it is compared
with). Strings here are one page's line segments: tens of characters, so the
quadratic table is small.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """One aligned position: indexes into truth and read; None on the side that has none."""

    truth: int | None  # None: an insertion (a read character the truth lacks)
    read: int | None  # None: a deletion (a truth character not read)


def _table(truth: str, read: str, free_start: bool) -> list[list[int]]:
    m = len(read)
    cost = [[0 if free_start else j for j in range(m + 1)]]
    for i, t in enumerate(truth, start=1):
        up = cost[-1]
        row = [i] + [0] * m
        for j in range(1, m + 1):
            row[j] = min(up[j - 1] + (t != read[j - 1]), up[j] + 1, row[j - 1] + 1)
        cost.append(row)
    return cost


def align(truth: str, read: str, *, free_start: bool = False, free_end: bool = False
          ) -> list[Step]:
    """Cheapest alignment of ``truth`` with ``read``, in order.

    Ties prefer a match or substitution, then a deletion, then an insertion.
    Read characters skipped for free at either end are left out of the result.
    """
    cost = _table(truth, read, free_start)
    i, j = len(truth), len(read)
    if free_end:
        last = cost[i]
        j = min(range(len(read) + 1), key=lambda k: (last[k], k))
    steps: list[Step] = []
    while i > 0 or j > 0:
        if i == 0 and free_start:
            break
        here = cost[i][j]
        if i and j and here == cost[i - 1][j - 1] + (truth[i - 1] != read[j - 1]):
            i, j = i - 1, j - 1
            steps.append(Step(i, j))
        elif i and here == cost[i - 1][j] + 1:
            i -= 1
            steps.append(Step(i, None))
        else:
            j -= 1
            steps.append(Step(None, j))
    steps.reverse()
    return steps

