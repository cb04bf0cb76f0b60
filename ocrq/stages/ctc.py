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


def pack_top_k(probs: np.ndarray, k: int) -> np.ndarray:
    """The top-k form of full (..., T, C) probabilities, on the host (what the GPU
    runtime computes on the device; ties in the order of the full form)."""
    if k < probs.shape[-1]:
        # A partial selection (a full sort of 18,710 classes per step cost the second
        # reading more than its settling), then the k sorted; in class order first,
        # so that equal probabilities keep the full form's order.
        part = np.sort(np.argpartition(-probs, k, axis=-1)[..., :k], axis=-1)
    else:
        part = np.broadcast_to(np.arange(probs.shape[-1]), probs.shape)
    order = np.take_along_axis(
        part, np.argsort(-np.take_along_axis(probs, part, axis=-1), axis=-1, kind="stable"),
        axis=-1)
    top = np.take_along_axis(probs, order, axis=-1)
    return np.concatenate([top, order.astype(probs.dtype), probs[..., -1:]], axis=-1)
