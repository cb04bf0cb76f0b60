"""What CTC decoding reads of a recogniser's output, from either of its two forms.

- Full: (T, C) class probabilities per step, as ONNX Runtime on a CPU returns them.
- Top-k: (T, 2k + 1) per step: the k most probable classes' probabilities (most
  probable first), their class indices (as floats), and the space class's
  probability. A GPU runtime reduces the output to this on the device
  (``OCRQ_CTC_TOPK``): 6,625 classes x 40 steps of float32 is 1 MB a line, and
  copying that off the GPU, not the arithmetic, set the cost of a recognition
  pass (BENCHMARKS.md).

Decoding reads only the argmax, its probability, the space column and the
few most probable runner-ups, so both forms decode to the same text whenever
``k`` covers the runner-ups looked at (the lexicon's ``alternatives`` + 1); two
classes of exactly equal probability may come out in another order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scores:
    idx: np.ndarray  # (T,) the most probable class per step
    best: np.ndarray  # (T,) its probability
    space: np.ndarray  # (T,) the space class's probability
    full: np.ndarray | None = None  # (T, C), the full form
    top_p: np.ndarray | None = None  # (T, k), the top-k form
    top_i: np.ndarray | None = None

    @classmethod
    def of(cls, out: np.ndarray, classes: int) -> Scores:
        """From a line's output; ``classes``: the recogniser's class count (charset)."""
        if out.shape[-1] == classes:
            idx = out.argmax(axis=1)
            return cls(idx, out[np.arange(len(idx)), idx], out[:, classes - 1], full=out)
        k = (out.shape[-1] - 1) // 2
        top_p, top_i = out[:, :k], out[:, k : 2 * k].astype(np.int64)
        return cls(top_i[:, 0], top_p[:, 0], out[:, 2 * k], top_p=top_p, top_i=top_i)

    def path(self) -> np.ndarray:
        """The steps of the best path's glyphs: not blank, not a repeat of the step before."""
        keep = self.idx != 0
        keep[1:] &= self.idx[1:] != self.idx[:-1]
        return np.flatnonzero(keep)

    def runners(self, steps: np.ndarray, min_prob: float, k: int) -> list[list[int]]:
        """Per step: up to ``k`` classes of probability >= ``min_prob``, most probable
        first (the chosen one included)."""
        if self.full is None:
            assert self.top_p is not None and self.top_i is not None
            return [[int(c) for c, p in zip(self.top_i[s], self.top_p[s], strict=True)
                     if p >= min_prob][:k] for s in steps]
        rows = self.full[steps]
        # Runner-ups worth offering hold min_prob each, so a row has few: one
        # comparison finds them, where a partial sort of all 6625 classes per row
        # cost more than the rest of the line's decoding.
        hit_rows, hit_cols = np.nonzero(rows >= min_prob)
        out = []
        for j, row in enumerate(rows):
            cands = hit_cols[hit_rows == j]
            out.append([int(c) for c in cands[np.argsort(-row[cands], kind="stable")][:k]])
        return out

    def prob(self, step: int, cls_: int) -> float:
        """The probability of class ``cls_`` at ``step`` (a class ``runners`` named)."""
        if self.full is not None:
            return float(self.full[step, cls_])
        assert self.top_p is not None and self.top_i is not None
        return float(self.top_p[step][self.top_i[step] == cls_][0])


def pack_top_k(probs: np.ndarray, k: int, block: int = 64) -> np.ndarray:
    """The top-k form of full (..., T, C) probabilities, on the host (what the GPU
    runtime computes on the device); equal probabilities in class order."""
    classes = probs.shape[-1]
    rows = probs.reshape(-1, classes)
    if len(rows) == 0:  # no steps: nothing to select (reshape(0, -1) cannot infer)
        return np.zeros((*probs.shape[:-1], 2 * min(k, classes) + 1), probs.dtype)
    if classes > 4 * k * block:
        part = _top_classes(rows, k, block)
    elif k < classes:
        part = _first_k(rows, k)
    else:
        part = np.broadcast_to(np.arange(classes), rows.shape)
    # ``part`` is in class order: a stable sort keeps equal probabilities so.
    order = np.take_along_axis(
        part, np.argsort(-np.take_along_axis(rows, part, axis=-1), axis=-1, kind="stable"),
        axis=-1)
    top = np.take_along_axis(rows, order, axis=-1)
    packed = np.concatenate([top, order.astype(probs.dtype), rows[:, -1:]], axis=-1)
    return packed.reshape(*probs.shape[:-1], packed.shape[-1])


def _top_classes(rows: np.ndarray, k: int, block: int) -> np.ndarray:
    """:func:`_first_k`, looked for only in the k blocks of ``block`` classes with
    the highest maxima (equal ones in block order): each of the top k lies in one
    of them, else k blocks each held a class ranked above it. A partial selection
    over all 18,710 classes of PP-OCRv6 per step cost the second reading a tenth of
    a page's time; this reads each class once, for its block's maximum."""
    classes = rows.shape[-1]
    peaks = np.maximum.reduceat(rows, np.arange(0, classes, block), axis=-1)
    cands = (_first_k(peaks, k)[:, :, None] * block + np.arange(block)).reshape(len(rows), -1)
    beyond = cands >= classes  # the last block is short
    cands = np.minimum(cands, classes - 1)
    vals = np.take_along_axis(rows, cands, axis=-1)
    vals[beyond] = -np.inf
    return np.take_along_axis(cands, _first_k(vals, k), axis=-1)


def _first_k(vals: np.ndarray, k: int) -> np.ndarray:
    """Per row, the columns of the k greatest values, in column order; of values
    equal to the k-th greatest, the first ones (a partial selection alone picks
    among equal values at will)."""
    kth = -np.partition(-vals, k - 1, axis=-1)[:, k - 1 : k]
    above = vals > kth
    tied = vals == kth
    keep = above | (tied & (np.cumsum(tied, axis=-1) <= k - above.sum(-1, keepdims=True)))
    return np.nonzero(keep)[1].reshape(len(vals), k)
