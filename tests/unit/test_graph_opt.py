"""The ONNX graph rewrites keep every model's output (to float rounding)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ocrq.models.repository import ModelRepository
from ocrq.models.runtimes.graph_opt import optimize
from ocrq.models.runtimes.onnxruntime import OnnxRuntime

SHAPES = {"std": (1, 3, 320, 256), "str": (3, 3, 48, 192), "dir": (2, 3, 48, 192),
          "rot": (2, 3, 224, 224)}
EXPECT = {"std": {"hardswish": 24, "affine": 50, "affine_forward": 20},
          "str": {"hardswish": 28, "affine": 50, "affine_forward": 20},
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


def _affine_after_relu(graph_nodes: list, inits: dict, tag: str, scale: float, shift: float
                       ) -> str:
    """Relu(x) * scale + shift (a learnable affine after an activation)."""
    inits[f"{tag}_s"], inits[f"{tag}_t"] = np.float32(scale), np.float32(shift)
    graph_nodes += [helper.make_node("Relu", ["x"], [f"{tag}_r"]),
                    helper.make_node("Mul", [f"{tag}_r", f"{tag}_s"], [f"{tag}_m"]),
                    helper.make_node("Add", [f"{tag}_m", f"{tag}_t"], [f"{tag}_a"])]
    return f"{tag}_a"


def test_an_affine_after_an_activation_moves_into_the_next_convolution():
    rng = np.random.default_rng(5)
    nodes: list = []
    inits: dict = {"w1": rng.normal(size=(3, 4, 1, 1)), "b1": rng.normal(size=3),
                   "w3": rng.normal(size=(4, 1, 3, 3)), "b3": rng.normal(size=4)}
    # Read by a 1x1 convolution: folded into its weights.
    a = _affine_after_relu(nodes, inits, "p", 1.7, -0.4)
    nodes.append(helper.make_node("Conv", [a, "w1", "b1"], ["y1"], kernel_shape=[1, 1]))
    # Read by a padded 3x3 depthwise convolution: one depthwise 1x1 convolution.
    b = _affine_after_relu(nodes, inits, "d", 0.6, 0.9)
    nodes.append(helper.make_node("Conv", [b, "w3", "b3"], ["y2"], kernel_shape=[3, 3],
                                  pads=[1, 1, 1, 1], group=4))
    # Read by something else: left alone.
    c = _affine_after_relu(nodes, inits, "o", 2.0, 1.0)
    nodes.append(helper.make_node("Sigmoid", [c], ["y3"]))
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y1", "y2", "y3")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 5, 7])], io,
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    plain = model.SerializeToString()
    fast, stats = optimize(plain)
    assert stats["affine_forward"] == 2
    ops = [n.op_type for n in onnx.load_from_string(fast).graph.node]
    assert ops.count("Mul") == 1 and ops.count("Add") == 1  # only the Sigmoid's affine
    assert ops.count("Conv") == 3  # the depthwise 1x1 one is new
    x = rng.uniform(-1, 1, (2, 4, 5, 7)).astype(np.float32)
    want = ort.InferenceSession(plain, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got = ort.InferenceSession(fast, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for w, g in zip(want, got, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_an_affine_before_a_1d_convolution_or_a_computed_bias_reads_the_same():
    # A Conv1d reader: left alone (the depthwise form is 2-D). A 1x1 reader whose
    # bias the graph computes: not folded into (its bias is no constant).
    rng = np.random.default_rng(6)
    nodes: list = []
    inits: dict = {"w1d": rng.normal(size=(3, 4, 1)), "w1": rng.normal(size=(3, 4, 1, 1)),
                   "one": np.float32(1.0)}
    nodes.append(helper.make_node("Reshape", ["x", "shape3"], ["x3"]))
    inits["shape3"] = np.asarray([2, 4, 35], np.int64)
    nodes += [helper.make_node("Relu", ["x3"], ["r3"]),
              helper.make_node("Mul", ["r3", "s3"], ["m3"]),
              helper.make_node("Add", ["m3", "t3"], ["a3"]),
              helper.make_node("Conv", ["a3", "w1d"], ["y1"], kernel_shape=[1])]
    inits["s3"], inits["t3"] = np.float32(1.5), np.float32(0.25)
    a = _affine_after_relu(nodes, inits, "b", 0.8, -0.3)
    nodes += [helper.make_node("Add", ["bias_in", "one"], ["bias"]),
              helper.make_node("Conv", [a, "w1", "bias"], ["y2"], kernel_shape=[1, 1])]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y1", "y2")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 5, 7]),
                     helper.make_tensor_value_info("bias_in", TensorProto.FLOAT, [3])], io,
        [numpy_helper.from_array(np.asarray(v, v.dtype if isinstance(v, np.ndarray)
                                            and v.dtype == np.int64 else np.float32), k)
         for k, v in inits.items()])
    plain = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    fast, stats = optimize(plain.SerializeToString())
    assert stats["affine_forward"] == 1  # the computed bias's: the depthwise form
    feed = {"x": rng.uniform(-1, 1, (2, 4, 5, 7)).astype(np.float32),
            "bias_in": np.asarray([5.0, -2.0, 0.5], np.float32)}
    want = ort.InferenceSession(plain.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, feed)
    got = ort.InferenceSession(fast, providers=["CPUExecutionProvider"]).run(None, feed)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_a_node_named_like_another_convolutions_output_folds_apart():
    # Conv "ac" (a node name) reads the unnamed convolution whose output is "ac": the
    # folded weights of the two must not share a name (ONNX Runtime keeps the last).
    rng = np.random.default_rng(7)
    nodes, inits = [], {}
    for p, x, out, name in (("a", "x", "y1", ""), ("b", "y1", "y2", "ac")):
        inits |= {f"{p}W": rng.normal(size=(4, 4, 1, 1)), f"{p}B": rng.normal(size=4),
                  f"{p}s": rng.normal(size=(4, 1, 1)), f"{p}t": rng.normal(size=(4, 1, 1))}
        nodes += [helper.make_node("Conv", [x, f"{p}W", f"{p}B"], [f"{p}c"], name=name),
                  helper.make_node("Mul", [f"{p}c", f"{p}s"], [f"{p}m"]),
                  helper.make_node("Add", [f"{p}m", f"{p}t"], [out])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3, 3])],
        [helper.make_tensor_value_info("y2", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    plain = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    fast, stats = optimize(plain.SerializeToString())
    assert stats["affine"] == 4
    names = [t.name for t in onnx.load_from_string(fast).graph.initializer]
    assert len(names) == len(set(names)) == 4
    x = rng.uniform(-1, 1, (1, 4, 3, 3)).astype(np.float32)
    want = ort.InferenceSession(plain.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = ort.InferenceSession(fast, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


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
