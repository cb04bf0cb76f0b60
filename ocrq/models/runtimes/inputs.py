"""Pixels into a network: uint8 NHWC images -> the float32 NCHW batch a model reads.

Stages hand a runtime *pixels* (:func:`run_images`). A runtime that has its own
``run_images`` (torch on CUDA, the tensor server's client) ships the uint8
pixels, a quarter of the bytes, and normalises on the device; every other
runtime gets the batch normalised here, on the host. Both do the same
arithmetic (one multiply, then one add, in float32), so the text is the same.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

Spec = Mapping[str, Any]  # a model manifest's "input" section


def affine(spec: Spec) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (a, b) with normalised = pixel * a + b, as float32."""
    scale = float(spec.get("scale", 1 / 255))
    mean = np.asarray(spec.get("mean", [0.0, 0.0, 0.0]), np.float32)
    std = np.asarray(spec.get("std", [1.0, 1.0, 1.0]), np.float32)
    # (x*scale - mean)/std folded into one multiply-add per element.
    return (scale / std).astype(np.float32), (-mean / std).astype(np.float32)


def rgb(spec: Spec) -> bool:
    """The network reads RGB (images arrive BGR, as OpenCV decodes them)."""
    return spec.get("color", "BGR") == "RGB"


def normalize(images: np.ndarray, spec: Spec) -> np.ndarray:
    """uint8 NHWC (BGR) -> float32 NCHW normalised as the manifest's input spec says."""
    x = images[..., ::-1] if rgb(spec) else images
    a, b = affine(spec)
    n, h, w, c = x.shape
    out = np.empty((n, c, h, w), np.float32)
    # One multiply-add per channel plane, written straight into NCHW: the same
    # float32 arithmetic as (x * a + b) then a transpose, without the three
    # full-size temporaries (about 8x cheaper: 15 ms of host work per page).
    for ch in range(c):
        plane = out[:, ch]
        np.multiply(x[..., ch], a[ch], out=plane, dtype=np.float32)
        plane += b[ch]
    return out


def run_images(runtime: object, images: np.ndarray, spec: Spec) -> np.ndarray:
    """One forward pass on uint8 NHWC ``images``."""
    own = getattr(runtime, "run_images", None)
    if own is not None:
        return np.asarray(own(images, spec))
    return np.asarray(runtime.run(normalize(images, spec)))  # type: ignore[attr-defined]


def run_many_images(runtime: object, batches: Sequence[np.ndarray], spec: Spec
                    ) -> list[np.ndarray]:
    """Forward passes on several uint8 NHWC batches (a sharded runtime spreads them)."""
    own = getattr(runtime, "run_many_images", None)
    if own is not None:
        return list(own(batches, spec))
    if getattr(runtime, "run_images", None) is not None:
        return [run_images(runtime, b, spec) for b in batches]
    many = getattr(runtime, "run_many", None)
    normalised = [normalize(b, spec) for b in batches]
    if many is not None:
        return list(many(normalised))
    return [np.asarray(runtime.run(b)) for b in normalised]  # type: ignore[attr-defined]


def stream_images(runtime: object, batches: Sequence[np.ndarray], spec: Spec
                  ) -> Iterator[tuple[int, int, np.ndarray]]:
    """(batch index, first row, output for those rows) per uint8 NHWC batch or
    piece of one: as each pass finishes on a runtime that streams
    (runtimes/sharded.py: the caller's thread works on one output while the next
    runs), else whole batches in order once all have run."""
    stream = getattr(runtime, "stream", None)
    if stream is not None and getattr(runtime, "run_many_images", None) is None \
            and getattr(runtime, "run_images", None) is None:
        yield from stream(batches, functools.partial(normalize, spec=spec))
        return
    for k, out in enumerate(run_many_images(runtime, batches, spec)):
        yield k, 0, out
