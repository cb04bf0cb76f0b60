"""Op-level tests of the ONNX -> torch executor: tiny graphs vs ONNX Runtime.

Each graph is built with ``onnx.helper`` (constants as ``Constant`` nodes, like
the PP-OCR files, unless a test says otherwise) and run on both sides.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from ocrq.errors import ModelLoadError
from ocrq.models.runtimes.onnx_torch import Ints, build_module
from ocrq.models.runtimes.onnx_torch.node import Node
from ocrq.models.runtimes.onnx_torch.ops import BUILDERS

RNG = np.random.default_rng(0)


def rand(*shape: int, lo: float = -2.0, hi: float = 2.0) -> np.ndarray:
    return RNG.uniform(lo, hi, shape).astype(np.float32)


def const(name: str, value: np.ndarray | list | float) -> onnx.NodeProto:
    arr = np.asarray(value)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(arr, name))


def graph(
    nodes: list[onnx.NodeProto],
    *,
    rank: int = 4,
    opset: int = 12,
    initializers: list[onnx.TensorProto] | None = None,
    out: str = "y",
) -> onnx.ModelProto:
    dims = ["n", 3, "h", "w"] if rank == 4 else [f"d{i}" for i in range(rank)]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info(out, TensorProto.FLOAT, None)
    g = helper.make_graph(nodes, "t", [x], [y], initializer=initializers or [])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def ort_run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def check(model: onnx.ModelProto, *inputs: np.ndarray, atol: float = 1e-5) -> torch.nn.Module:
    module = build_module(model, label="test-graph")
    for x in inputs:  # several shapes through one module: nothing is frozen to the first
        ref = ort_run(model, x)
        with torch.inference_mode():
            got = module(torch.from_numpy(x)).numpy()
        assert got.shape == ref.shape
        np.testing.assert_allclose(got.astype(np.float32), ref, atol=atol, rtol=1e-5)
    return module


def unary(op: str, **attrs: object) -> list[onnx.NodeProto]:
    return [helper.make_node(op, ["x"], ["y"], **attrs)]


X4 = (rand(2, 3, 8, 12), rand(1, 3, 6, 10))


@pytest.mark.parametrize(
    ("nodes", "opset"),
    [
        (unary("Relu"), 12),
        (unary("Sigmoid"), 12),
        (unary("HardSigmoid", alpha=0.2, beta=0.5), 12),
        (unary("HardSigmoid", alpha=0.1666667014, beta=0.5), 12),
        (unary("HardSwish"), 14),
        (unary("Identity"), 12),
        (unary("GlobalAveragePool"), 12),
        (unary("Transpose", perm=[0, 2, 3, 1]), 12),
        (unary("Transpose"), 12),
        (unary("Softmax", axis=3), 12),
        (unary("Softmax", axis=1), 11),  # legacy: normalises over axes 1..3 together
        (unary("Softmax", axis=1), 13),  # opset 13: over axis 1 only
        (unary("ReduceMean", axes=[-1]), 12),
        (unary("ReduceMean", axes=[1, 2], keepdims=0), 12),
        (unary("MaxPool", kernel_shape=[2, 2], strides=[2, 2]), 12),
        (unary("MaxPool", kernel_shape=[3, 3], strides=[1, 1], pads=[0, 0, 1, 1]), 12),
        (unary("AveragePool", kernel_shape=[3, 2], strides=[3, 2], pads=[0, 0, 0, 0]), 12),
        (unary("AveragePool", kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1), 12),
        (unary("AveragePool", kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=0), 12),
        (unary("Clip", min=-0.5, max=0.7), 6),
        ([const("lo", 0.0), const("hi", 6.0),
          helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], 12),
        ([const("lo", -1.0), helper.make_node("Clip", ["x", "lo"], ["y"])], 12),
        ([helper.make_node("Concat", ["x", "x"], ["y"], axis=1)], 12),
    ],
    ids=lambda v: v[0].op_type if isinstance(v, list) and len(v) == 1 else None,
)
def test_simple_ops(nodes: list[onnx.NodeProto], opset: int) -> None:
    check(graph(nodes, opset=opset), *X4)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("other", [np.float32(0.75), rand(1, 3, 1, 1) + 3.0])
def test_binary_ops_broadcast_both_orders(op: str, other: np.ndarray) -> None:
    nodes = [const("c", other), helper.make_node(op, ["x", "c"], ["a"]),
             helper.make_node(op, ["c", "a"], ["y"])]
    check(graph(nodes), *X4, atol=1e-4)


@pytest.mark.parametrize("exponent", [2.0, 3.0, 0.5])
def test_pow_and_sqrt(exponent: float) -> None:
    nodes = [const("e", np.float32(exponent)), helper.make_node("Pow", ["x", "e"], ["p"]),
             helper.make_node("Sqrt", ["p"], ["y"])]
    check(graph(nodes), rand(2, 3, 4, 5, lo=0.1, hi=3.0), atol=1e-5)


@pytest.mark.parametrize(
    ("w_shape", "attrs", "bias"),
    [
        ((8, 3, 3, 3), {"pads": [1, 1, 1, 1]}, True),
        ((8, 3, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}, False),
        ((6, 1, 5, 5), {"pads": [2, 2, 2, 2], "group": 3}, True),  # depthwise-like
        ((4, 3, 1, 3), {"pads": [0, 1, 0, 1], "strides": [2, 1]}, True),
        ((4, 3, 3, 3), {"pads": [0, 0, 1, 1]}, True),  # asymmetric pads
        ((4, 3, 3, 3), {"dilations": [2, 2], "pads": [2, 2, 2, 2]}, False),
    ],
)
def test_conv(w_shape: tuple[int, ...], attrs: dict, bias: bool) -> None:
    ins = ["x", "w", "b"] if bias else ["x", "w"]
    nodes = [const("w", rand(*w_shape, lo=-0.5, hi=0.5)), const("b", rand(w_shape[0])),
             helper.make_node("Conv", ins, ["y"], kernel_shape=list(w_shape[2:]), **attrs)]
    check(graph(nodes), *X4, atol=1e-4)


@pytest.mark.parametrize(
    "attrs",
    [{"strides": [2, 2]}, {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}],
)
def test_conv_transpose(attrs: dict) -> None:
    nodes = [const("w", rand(3, 4, 2, 2, lo=-0.5, hi=0.5)), const("b", rand(4)),
             helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], kernel_shape=[2, 2],
                              **attrs)]
    check(graph(nodes), *X4, atol=1e-4)


def bn_consts(c: int) -> list[onnx.NodeProto]:
    return [const("s", rand(c, lo=0.5, hi=1.5)), const("bb", rand(c)), const("m", rand(c)),
            const("v", rand(c, lo=0.2, hi=2.0))]


def test_batch_norm_alone_and_folded_into_conv() -> None:
    alone = graph([*bn_consts(3), helper.make_node(
        "BatchNormalization", ["x", "s", "bb", "m", "v"], ["y"], epsilon=1e-5)])
    module = check(alone, *X4)
    assert module.op_counts() == {"BatchNormalization": 1}
    fused = graph([const("w", rand(3, 3, 3, 3, lo=-0.5, hi=0.5)), *bn_consts(3),
                   helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1] * 4),
                   helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["y"])])
    module = check(fused, *X4, atol=1e-4)
    assert module.op_counts() == {"Conv": 1}  # BN folded into the conv weights


def test_decomposed_hard_swish_is_fused() -> None:
    nodes = [const("three", np.float32(3)), const("zero", np.float32(0)),
             const("six", np.float32(6)), helper.make_node("Add", ["x", "three"], ["a"]),
             helper.make_node("Clip", ["a", "zero", "six"], ["c"]),
             helper.make_node("Mul", ["x", "c"], ["m"]),
             helper.make_node("Div", ["m", "six"], ["y"])]
    module = check(graph(nodes), rand(2, 3, 4, 5, lo=-5, hi=5))
    assert module.op_counts() == {"HardSwish": 1}


def test_decomposed_layer_norm_is_fused() -> None:
    nodes = [const("two", np.float32(2)), const("eps", np.float32(1e-6)),
             helper.make_node("ReduceMean", ["x"], ["m"], axes=[-1]),
             helper.make_node("Sub", ["x", "m"], ["d"]),
             helper.make_node("Pow", ["d", "two"], ["p"]),
             helper.make_node("ReduceMean", ["p"], ["v"], axes=[-1]),
             helper.make_node("Add", ["v", "eps"], ["ve"]),
             helper.make_node("Sqrt", ["ve"], ["s"]),
             helper.make_node("Div", ["d", "s"], ["y"])]
    module = check(graph(nodes, rank=3), rand(2, 7, 16, lo=-3, hi=5), rand(3, 5, 16))
    assert module.op_counts() == {"ocrq.LayerNorm": 1}
    # The unfused path (same graph, fusion off) must agree too.
    with torch.inference_mode():
        x = torch.from_numpy(rand(2, 7, 16))
        plain = build_module(graph(nodes, rank=3), fuse=False)
        assert "ReduceMean" in plain.op_counts()
        torch.testing.assert_close(plain(x), module(x), atol=1e-5, rtol=1e-5)


def test_matmul_with_constant_weight() -> None:
    nodes = [const("w", rand(16, 5)), helper.make_node("MatMul", ["x", "w"], ["y"])]
    check(graph(nodes, rank=3), rand(2, 7, 16), rand(1, 3, 16), atol=1e-4)


def test_shape_slice_cast_concat_reshape_chain() -> None:
    # The recogniser's flatten: Reshape(x, Concat(Shape(x)[0:2], [-1])) with int casts.
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Cast", ["s"], ["s32"], to=TensorProto.INT32),
             const("st", np.array([0], np.int64)), const("en", np.array([2], np.int64)),
             const("ax", np.array([0], np.int64)),
             helper.make_node("Slice", ["s32", "st", "en", "ax"], ["nc"]),
             helper.make_node("Cast", ["nc"], ["nc64"], to=TensorProto.INT64),
             const("minus1", np.array([-1], np.int64)),
             helper.make_node("Concat", ["nc64", "minus1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["y"])]
    module = check(graph(nodes), *X4)
    assert module.op_counts()["Reshape"] == 1


def test_reshape_zero_copies_dimension_and_shape_start_end() -> None:
    nodes = [const("shape", np.array([0, 0, -1], np.int64)),
             helper.make_node("Reshape", ["x", "shape"], ["y"])]
    check(graph(nodes), *X4)
    nodes = [helper.make_node("Shape", ["x"], ["s"], start=1, end=3),
             const("one", np.array([1], np.int64)), const("minus1", np.array([-1], np.int64)),
             helper.make_node("Concat", ["one", "s", "minus1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["y"])]
    check(graph(nodes, opset=15), rand(2, 3, 8, 12))


@pytest.mark.parametrize("scales", [[1, 1, 2, 2], [1, 1, 8, 8], [1, 1, 2, 4]])
def test_resize_nearest_asymmetric_floor(scales: list[float]) -> None:
    nodes = [const("roi", np.array([], np.float32)), const("sc", np.array(scales, np.float32)),
             helper.make_node("Resize", ["x", "roi", "sc"], ["y"], mode="nearest",
                              coordinate_transformation_mode="asymmetric", nearest_mode="floor")]
    check(graph(nodes), *X4)


def test_resize_sizes_input() -> None:
    nodes = [const("roi", np.array([], np.float32)),
             const("sz", np.array([2, 3, 16, 36], np.int64)),
             helper.make_node("Resize", ["x", "roi", "", "sz"], ["y"], mode="nearest",
                              coordinate_transformation_mode="asymmetric", nearest_mode="floor")]
    check(graph(nodes, opset=13), X4[0])  # scales became optional in opset 13


def test_slice_steps_and_squeeze() -> None:
    nodes = [const("st", np.array([1, 0], np.int64)), const("en", np.array([2, 100], np.int64)),
             const("ax", np.array([1, 3], np.int64)), const("sp", np.array([1, 2], np.int64)),
             helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["s"]),
             helper.make_node("Squeeze", ["s"], ["y"], axes=[1])]
    check(graph(nodes, opset=12), *X4)
    nodes = [const("st", np.array([0], np.int64)), const("en", np.array([1], np.int64)),
             const("ax", np.array([2], np.int64)),
             helper.make_node("Slice", ["x", "st", "en", "ax"], ["s"]),
             const("sq", np.array([2], np.int64)),
             helper.make_node("Squeeze", ["s", "sq"], ["y"])]
    check(graph(nodes, opset=13), *X4)


def test_initializers_work_like_constant_nodes() -> None:
    w = numpy_helper.from_array(rand(4, 3, 3, 3, lo=-0.5, hi=0.5), "w")
    model = graph([helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3])],
                  initializers=[w])
    model.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 3, 3, 3]))
    check(model, *X4, atol=1e-4)


def test_constant_subgraphs_are_folded_at_load() -> None:
    # Bias reshaped at run time (as in the direction classifier) becomes one buffer.
    nodes = [const("b", rand(3)), const("shape", np.array([1, 3, 1, 1], np.int64)),
             helper.make_node("Reshape", ["b", "shape"], ["b4"]),
             helper.make_node("Add", ["x", "b4"], ["y"])]
    module = check(graph(nodes), *X4)
    assert module.op_counts() == {"Add": 1}
    assert [tuple(b.shape) for b in module.buffers()] == [(1, 3, 1, 1)]


def test_every_intermediate_is_freed_and_output_kept() -> None:
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Sigmoid", ["a"], ["b"]),
             helper.make_node("Add", ["a", "b"], ["c"]), helper.make_node("Mul", ["c", "c"], ["y"])]
    module = build_module(graph(nodes))
    freed = [name for step in module.steps for name in step.free]
    assert sorted(freed) == ["a", "b", "c", "x"]
    assert module.steps[2].free == ("a", "b")  # both read for the last time by Add


def test_unknown_op_is_a_clear_error_naming_op_and_model() -> None:
    with pytest.raises(ModelLoadError) as err:
        build_module(graph(unary("Tanh")), label="model 'zz' version 3")
    msg = str(err.value)
    assert "'Tanh'" in msg and "model 'zz' version 3" in msg and "Conv" in msg
    assert err.value.details["op"] == "Tanh"


def test_unsupported_resize_mode_is_a_clear_error() -> None:
    nodes = [const("roi", np.array([], np.float32)),
             const("sc", np.array([1, 1, 2, 2], np.float32)),
             helper.make_node("Resize", ["x", "roi", "sc"], ["y"], mode="linear")]
    with pytest.raises(ModelLoadError, match="Resize.*linear"):
        build_module(graph(nodes), label="m")


def test_ints_shape_arithmetic_stays_python() -> None:
    nodes = [helper.make_node("Shape", ["x"], ["s"]), const("two", np.array([2], np.int64)),
             helper.make_node("Mul", ["s", "two"], ["s2"]),
             helper.make_node("Div", ["s2", "two"], ["shape"]),
             helper.make_node("Reshape", ["x", "shape"], ["y"])]
    module = check(graph(nodes), *X4)

    mul = BUILDERS["Mul"](Node("Mul", "m", ["a", "b"], ["c"], {}, 12))
    assert mul(Ints((2, 3)), Ints((2,))) == (4, 6) and isinstance(mul(Ints((1,)), Ints((1,))), Ints)
    assert module.op_counts()["Mul"] == 1


def _shape_graph() -> onnx.ModelProto:
    return graph([const("w", rand(4, 3, 3, 3, lo=-0.5, hi=0.5)),
                  helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1] * 4),
                  helper.make_node("Shape", ["c"], ["s"]),
                  const("st", np.array([0], np.int64)), const("en", np.array([2], np.int64)),
                  helper.make_node("Slice", ["s", "st", "en"], ["nc"]),
                  const("minus1", np.array([-1], np.int64)),
                  helper.make_node("Concat", ["nc", "minus1"], ["shape"], axis=0),
                  helper.make_node("Reshape", ["c", "shape"], ["r"]),
                  helper.make_node("Softmax", ["r"], ["y"], axis=2)])


def test_jit_trace_keeps_batch_and_width_dynamic() -> None:
    module = build_module(_shape_graph())
    a, b = torch.rand(2, 3, 8, 16), torch.rand(5, 3, 8, 40)
    with torch.inference_mode(), pytest.warns(Warning):  # trace is deprecated in torch 2.x
        traced = torch.jit.trace(module, a)
    with torch.inference_mode():
        torch.testing.assert_close(traced(b), module(b))


def test_torch_export_with_dynamic_batch_and_width() -> None:
    module = build_module(_shape_graph())
    dims = {0: torch.export.Dim("batch", min=1, max=256), 3: torch.export.Dim("width", max=4096)}
    exported = torch.export.export(module, (torch.rand(2, 3, 8, 16),), dynamic_shapes={"x": dims})
    b = torch.rand(7, 3, 8, 40)
    with torch.inference_mode():
        torch.testing.assert_close(exported.module()(b), module(b))


def test_dynamo_captures_one_graph_without_breaks() -> None:
    """torch.compile (what Settings.torch_compile turns on) sees the whole executor."""
    module = build_module(_shape_graph())
    compiled = torch.compile(module, dynamic=True, backend="eager", fullgraph=True)
    with torch.inference_mode():
        for shape in [(2, 3, 8, 16), (5, 3, 8, 40)]:
            x = torch.rand(*shape)
            torch.testing.assert_close(compiled(x), module(x))
