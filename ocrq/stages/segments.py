"""Per-line measures over ranges of a line, in numpy: one pass per line instead of
a Python loop per gap between two letters (CTC decoding's word spacing)."""

from __future__ import annotations

import numpy as np


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The indices of the ranges ``[start, start + length)`` one after another, and
    where each range begins among them (for ``np.maximum.reduceat``)."""
    offsets = np.cumsum(lengths) - lengths
    i = np.arange(int(lengths.sum())) - np.repeat(offsets, lengths) + np.repeat(starts, lengths)
    return i, offsets


def blank_runs(columns: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The longest run of blank (False) columns in each ``columns[start:end]`` (slice
    rules: a start past the end or an end past the columns clips), all at once:
    one numpy pass per line instead of a Python loop per gap between letters."""
    n = columns.size
    a = np.minimum(np.maximum(starts, 0), n)
    lengths = np.maximum(np.minimum(np.maximum(ends, 0), n) - a, 0)
    out = np.zeros(len(a), np.int64)
    full = lengths > 0
    if not full.any():
        return out
    # last_ink[i]: the last ink column at or before i (-1: none); a blank run
    # ending at i inside a range that starts at a is i - max(last_ink[i], a - 1) long.
    last_ink = np.maximum.accumulate(np.where(columns, np.arange(n), -1))
    i, offsets = _ranges(a, lengths)
    runs = i - np.maximum(last_ink[i], np.repeat(a, lengths) - 1)
    out[full] = np.maximum.reduceat(runs, offsets[full])
    return out


def space_peaks(space: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """The space class's highest probability strictly between each two neighbouring
    emitted steps (float64; -inf where they are adjacent)."""
    starts, lengths = steps[:-1] + 1, np.maximum(np.diff(steps) - 1, 0)
    out = np.full(len(starts), -np.inf)
    full = lengths > 0
    if full.any():
        i, offsets = _ranges(starts, lengths)
        out[full] = np.maximum.reduceat(space[i], offsets[full])
    return out
