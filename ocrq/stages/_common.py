"""Small helpers shared by the stages (normalisation from a model's input spec)."""

from __future__ import annotations

from typing import Any

import numpy as np


def normalize(images: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """uint8 NHWC (BGR) -> float32 NCHW normalised as the manifest's input spec says."""
    x = images
    if spec.get("color", "BGR") == "RGB":
        x = x[..., ::-1]
    scale = float(spec.get("scale", 1 / 255))
    mean = np.asarray(spec.get("mean", [0.0, 0.0, 0.0]), np.float32)
    std = np.asarray(spec.get("std", [1.0, 1.0, 1.0]), np.float32)
    # (x*scale - mean)/std folded into one multiply-add per element.
    a = (scale / std).astype(np.float32)
    b = (-mean / std).astype(np.float32)
    out = x.astype(np.float32) * a + b
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)
