"""Line crops in forward passes: width buckets, bounded batches, rounds.

Each crop is padded to a width bucket that depends on that crop alone, and
crops of one bucket run together, so a crop's output never depends on which
other crops share its pass (stages/recognize.py relies on that).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np

from ocrq.models.runtimes.inputs import stream_images
from ocrq.models.states import LoadedModel


class PassOptions(Protocol):
    bucket: int
    min_width: int
    max_batch_pixels: int
    round_batches: int


def chunks(resized: Sequence[np.ndarray], opts: PassOptions, height: int
            ) -> list[tuple[int, list[int]]]:
    """(padded width, crop indices) per forward pass: crops of one width bucket
    together, each pass's input bounded."""
    buckets: dict[int, list[int]] = defaultdict(list)
    for i, crop in enumerate(resized):
        width = max(opts.min_width, math.ceil(crop.shape[1] / opts.bucket) * opts.bucket)
        buckets[width].append(i)
    planned: list[tuple[int, list[int]]] = []
    for width, idxs in sorted(buckets.items()):
        per_batch = max(1, opts.max_batch_pixels // (height * width))
        planned += [(width, idxs[s : s + per_batch]) for s in range(0, len(idxs), per_batch)]
    return planned


def forward(model: LoadedModel, resized: Sequence[np.ndarray],
             planned: list[tuple[int, list[int]]], opts: PassOptions, height: int
             ) -> Iterator[tuple[int, int, np.ndarray]]:
    """(crop index, padded width, the network's output for it), pass by pass, for
    the passes :func:`chunks` planned, in the order the passes finish (a CPU's
    copies run the next passes while the caller decodes: runtimes/sharded.py)."""
    todo = list(planned)
    # Passes go to the runtime a round at a time: a sharded runtime spreads a
    # round's batches over its copies; the round bounds the memory held at once.
    budget = opts.round_batches * opts.max_batch_pixels
    while todo:
        round_, pixels = [], 0
        while todo and (not round_ or pixels + height * todo[0][0] * len(todo[0][1])
                        <= budget):
            round_.append(todo.pop(0))
            pixels += height * round_[-1][0] * len(round_[-1][1])
        batches = []
        for width, chunk in round_:
            batch = np.zeros((len(chunk), height, width, 3), np.uint8)
            # Pad with what normalises to 0 is what PaddleOCR does (zeros after
            # normalisation); we pad in pixel space with mid-grey (127.5 ~ 0).
            batch[:] = 128
            for j, i in enumerate(chunk):
                batch[j, :, : resized[i].shape[1]] = resized[i]
            batches.append(batch)
        seen = 0
        for k, first, probs in stream_images(model.runtime, batches, model.manifest.input):
            width, chunk = round_[k]
            if first + len(probs) > len(chunk):
                raise RuntimeError(f"{model.manifest.name}: a pass returned rows past its batch "
                                   f"({first} + {len(probs)} of {len(chunk)})")
            seen += len(probs)
            for j, out in enumerate(probs):
                yield chunk[first + j], width, out
        crops = sum(len(chunk) for _, chunk in round_)
        if seen != crops:  # a crop without its output
            raise RuntimeError(f"{model.manifest.name}: the passes returned {seen} rows for "
                               f"{crops} crops")
