"""Host normalisation (runtimes/inputs.py) is exactly the manifest's arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from ocrq.models.runtimes.inputs import affine, normalize, rgb

SPECS = [
    {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "scale": 1 / 255},  # det/rec/dir
    {"color": "RGB", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
     "scale": 1 / 255},  # page orientation
]


@pytest.mark.parametrize("spec", SPECS)
def test_per_plane_normalisation_is_bit_identical_to_the_formula(spec: dict) -> None:
    every = np.arange(256, dtype=np.uint8)
    images = np.stack([np.stack([np.roll(every, k) for k in range(3)], axis=-1)] * 2)
    images = np.concatenate([images.reshape(2, 16, 16, 3),
                             np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3),
                                                               dtype=np.uint8)])
    x = images[..., ::-1] if rgb(spec) else images
    a, b = affine(spec)
    want = np.ascontiguousarray((x.astype(np.float32) * a + b).transpose(0, 3, 1, 2))
    got = normalize(images, spec)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    assert np.array_equal(got, want)  # bit for bit: the text must not move
