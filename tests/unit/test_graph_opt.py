"""The ONNX graph rewrites keep every model's output (to float rounding)."""

from __future__ import annotations

import numpy as np
import pytest

from ocrq.models.repository import ModelRepository
from ocrq.models.runtimes.onnxruntime import OnnxRuntime

SHAPES = {"std": (1, 3, 320, 256), "str": (3, 3, 48, 192), "dir": (2, 3, 48, 192),
          "rot": (2, 3, 224, 224)}
EXPECT = {"std": {"hardswish": 24, "affine": 50}, "str": {"hardswish": 28, "affine": 50},
          "dir": {"hardswish": 18}, "rot": {}}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_rewrite_keeps_outputs(model_root, name):
    path = ModelRepository(model_root).manifest(name).weights_path
    plain = OnnxRuntime(path, threads=1, rewrite=False)
    fast = OnnxRuntime(path, threads=1, rewrite=True)
    for kind, at_least in EXPECT[name].items():
        assert fast.rewrites[kind] >= at_least, fast.rewrites
    x = np.random.default_rng(0).uniform(-1, 1, SHAPES[name]).astype(np.float32)
    a, b = plain.run(x), fast.run(x)
    assert a.shape == b.shape
    assert np.abs(a - b).max() < 1e-4
    assert (a.reshape(len(a), -1).argmax(1) == b.reshape(len(b), -1).argmax(1)).all()


def test_garbage_is_not_a_model(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(Exception):  # noqa: B017 - onnx/ORT raise their own error types
        OnnxRuntime(bad, rewrite=True)


def test_sessions_with_threads_do_not_spin(model_root):
    # A spinning idle intra-op thread (the detector's, 2+ threads) took the core the
    # recognition sessions and the Python stages between passes run on.
    path = ModelRepository(model_root).manifest("dir").weights_path
    opts = OnnxRuntime(path, threads=2)._session.get_session_options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.intra_op_num_threads == 2
