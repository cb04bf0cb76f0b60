"""Glyphs the crop shows that greedy CTC decoding left out.

A lone punctuation mark set apart at a line's end ("CASH :") often gets most
of the network's non-blank probability at its step and still loses the
argmax to the blank, the more so as the Chinese dictionary of PP-OCR holds it
twice (":" and the full-width "："), which split that probability between
them. Where the crop's ink profile shows a separate blob of ink that no
emitted character sits on, the most probable punctuation class there (its
NFKC twins counted together) is emitted when it holds enough probability.
Nothing is emitted where the crop shows no ink, and no letter or digit: the
blob may be the far side of a wide glyph already read ("m" read twice).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from ocrq.stages.ctc import Scores

MIN_BLOB = 2  # columns of ink that make a blob (a speck is 1)
# An emitted character within this many CTC steps (8 px at the network's 48-px
# height, about a third of a character) of a blob is taken to be reading it:
# a glyph's ink reaches a step or two either side of the step that emits it.
NEAR = 2


def ink_blobs(columns: np.ndarray) -> list[tuple[int, int]]:
    """Runs of ink columns as [start, end) pairs, at least MIN_BLOB wide."""
    starts, ends = _runs(columns)
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def _runs(columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    padded = np.concatenate([[False], columns, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    starts, ends = edges[::2], edges[1::2]
    wide = ends - starts >= MIN_BLOB
    return starts[wide], ends[wide]


def recover(scores: Scores, steps: np.ndarray, columns: np.ndarray, stride: float,
            charset: Sequence[str], min_prob: float, k: int = 5
            ) -> list[tuple[int, int, float]]:
    """(step, class, probability) of each glyph to add: one per uncovered blob."""
    if not stride or not _uncovered_ink(steps, columns, stride, len(scores.idx)):
        return []
    starts, ends = _runs(columns)
    s0 = (starts / stride).astype(np.int64)
    s1 = ((ends - 1) / stride).astype(np.int64)
    # A blob is covered when an emitted step lies within NEAR steps of it (one
    # vectorised test per line: most blobs are letters already read).
    covered = (np.searchsorted(steps, s0 - NEAR, "left")
               < np.searchsorted(steps, s1 + NEAR, "right"))
    space = len(charset) - 1
    twins = _twins(tuple(charset))
    out = []
    for a, b in zip(s0[~covered].tolist(), s1[~covered].tolist(), strict=True):
        best: tuple[float, int, int] | None = None
        for t in range(a, min(b, len(scores.idx) - 1) + 1):
            totals: dict[str, float] = {}
            first: dict[str, int] = {}
            for c in scores.runners(np.array([t]), 0.01, k)[0]:
                if (c == 0 or c == space or not 0 < c < len(charset)
                        or charset[c].isalnum() or not charset[c].strip()):
                    continue  # letters and digits: a wide glyph's other half
                key = twins.get(c, charset[c])
                totals[key] = totals.get(key, 0.0) + scores.prob(t, c)
                first.setdefault(key, c)
            for key, p in totals.items():
                if best is None or p > best[0]:
                    best = (p, t, first[key])
        if best is not None and best[0] >= min_prob:
            out.append((best[1], best[2], best[0]))
    return out


def _uncovered_ink(steps: np.ndarray, columns: np.ndarray, stride: float, n: int) -> bool:
    """Whether any step more than NEAR steps from every emitted one holds ink: a
    cheap test that passes every line with an uncovered blob (and a few more),
    so that most lines skip the blob search."""
    near = np.zeros(n + 2 * NEAR, bool)
    for d in range(2 * NEAR + 1):  # steps -NEAR..+NEAR, shifted by NEAR
        near[steps + d] = True
    cols = np.flatnonzero(columns)
    if cols.size == 0:
        return False
    at = np.minimum((cols / stride).astype(np.int64), n - 1)
    return bool((~near[at + NEAR]).any())


@lru_cache(maxsize=4)
def _twins(charset: tuple[str, ...]) -> dict[int, str]:
    """Class -> its NFKC form, for the classes that share that form with another."""
    forms: dict[str, list[int]] = {}
    for c, ch in enumerate(charset):
        if ch:
            forms.setdefault(unicodedata.normalize("NFKC", ch), []).append(c)
    return {c: f for f, cs in forms.items() if len(cs) > 1 for c in cs}
