"""Op builders: one function per supported ONNX op, each turning a node into ``fn(*inputs)``.

A builder sees the node's attributes, its opset and the inputs already known
to be constant (axes, slice bounds, scales, exponents are baked in as Python
values). The returned ``fn`` receives every input at run time (tensors, or
:class:`Ints` for shape vectors) and must work eagerly, under
``torch.jit.trace`` and under ``torch.export``: no data-dependent Python
branching on tensor values, shapes handled as (Sym)ints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import onnx
import torch
import torch.nn.functional as F


class Ints(tuple):  # type: ignore[type-arg]
    """A rank-1 integer vector kept as Python ints (or SymInts while exporting)."""


Value = torch.Tensor | Ints
Fn = Callable[..., Any]

_DTYPES: dict[int, torch.dtype] = {
    onnx.TensorProto.FLOAT: torch.float32,
    onnx.TensorProto.FLOAT16: torch.float16,
    onnx.TensorProto.DOUBLE: torch.float64,
    onnx.TensorProto.INT32: torch.int32,
    onnx.TensorProto.INT64: torch.int64,
    onnx.TensorProto.INT8: torch.int8,
    onnx.TensorProto.UINT8: torch.uint8,
    onnx.TensorProto.BOOL: torch.bool,
}
_INT_TYPES = {onnx.TensorProto.INT32, onnx.TensorProto.INT64}


@dataclass
class Node:
    """One ONNX node as the builders see it: attributes, opset, known constants."""

    op_type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any]
    opset: int
    consts: dict[str, Value] = field(repr=False, default_factory=dict)

    def const(self, i: int) -> Value | None:
        """The constant value of input ``i``; None when absent or computed at run time."""
        if i >= len(self.inputs) or not self.inputs[i]:
            return None
        return self.consts.get(self.inputs[i])

    def has(self, i: int) -> bool:
        return i < len(self.inputs) and bool(self.inputs[i])

    def need_const(self, i: int, what: str) -> Value | None:
        if not self.has(i):
            return None
        value = self.const(i)
        if value is None:
            raise NotImplementedError(f"{self.op_type} with a run-time {what} is not supported")
        return value


# --- helpers ----------------------------------------------------------------
def _ints(v: Value | None) -> list[int] | None:
    if v is None:
        return None
    if isinstance(v, Ints):
        return [int(x) for x in v]
    return [int(x) for x in v.reshape(-1).tolist()]


def _floats(v: Value | None) -> list[float] | None:
    if v is None:
        return None
    if isinstance(v, Ints):
        return [float(x) for x in v]
    return [float(x) for x in v.reshape(-1).tolist()]


def _tensor(v: Value, like: Value | None = None) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        return v
    device = like.device if isinstance(like, torch.Tensor) else None
    return torch.tensor(list(v), dtype=torch.int64, device=device)


def _split_pads(pads: list[int] | None, nd: int) -> tuple[list[int], list[int]]:
    pads = pads or [0] * (2 * nd)
    return pads[:nd], pads[nd:]


def _torch_pad(begin: list[int], end: list[int]) -> list[int]:
    # F.pad lists the last dimension first: (w_begin, w_end, h_begin, h_end, ...)
    out: list[int] = []
    for b, e in zip(reversed(begin), reversed(end), strict=True):
        out += [b, e]
    return out


def _check_auto_pad(n: Node) -> None:
    auto_pad = n.attrs.get("auto_pad", b"NOTSET")
    if auto_pad not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
        raise NotImplementedError(f"{n.op_type} auto_pad={auto_pad!r} is not supported")


# --- op builders: each returns fn(*inputs) for one node ---------------------
def _binary(op: Callable[[Any, Any], Any], py: Callable[[int, int], int]) -> Callable[[Node], Fn]:
    def build(n: Node) -> Fn:
        def fn(a: Value, b: Value) -> Value:
            # Shape arithmetic on two Ints stays symbolic (Python ints).
            if isinstance(a, Ints) and isinstance(b, Ints) and (
                len(a) == 1 or len(b) == 1 or len(a) == len(b)
            ):
                size = max(len(a), len(b))
                return Ints(py(a[i % len(a)], b[i % len(b)]) for i in range(size))
            return op(_tensor(a, b), _tensor(b, a))

        return fn

    return build


def _div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if not a.is_floating_point() and not b.is_floating_point():
        return torch.div(a, b, rounding_mode="trunc")  # ONNX integer Div truncates
    return a / b


def _direct(op: Fn) -> Callable[[Node], Fn]:
    """Ops without attributes whose ONNX inputs map 1:1 onto a torch function."""
    return lambda n: op


def _pow(n: Node) -> Fn:
    exponent = n.const(1)
    if exponent is not None and isinstance(exponent, torch.Tensor) and exponent.numel() == 1:
        e = float(exponent.reshape(-1)[0])
        return lambda x, _e: torch.pow(x, e)
    return lambda x, y: torch.pow(x, y)


def _conv(n: Node) -> Fn:
    _check_auto_pad(n)
    w = n.const(1)
    nd = len(n.attrs["kernel_shape"]) if "kernel_shape" in n.attrs else w.dim() - 2  # type: ignore[union-attr]
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    strides = n.attrs.get("strides", [1] * nd)
    dilations = n.attrs.get("dilations", [1] * nd)
    group = n.attrs.get("group", 1)
    begin, end = _split_pads(n.attrs.get("pads"), nd)
    pre = None if begin == end else _torch_pad(begin, end)
    padding = begin if pre is None else [0] * nd

    def fn(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        if pre is not None:
            x = F.pad(x, pre)
        return conv(x, w, b, strides, padding, dilations, group)

    return fn


def _conv_transpose(n: Node) -> Fn:
    _check_auto_pad(n)
    if "output_shape" in n.attrs:
        raise NotImplementedError("ConvTranspose with output_shape is not supported")
    nd = len(n.attrs["kernel_shape"])
    conv = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[nd]
    begin, end = _split_pads(n.attrs.get("pads"), nd)
    if begin != end:
        raise NotImplementedError("ConvTranspose with asymmetric pads is not supported")
    strides = n.attrs.get("strides", [1] * nd)
    dilations = n.attrs.get("dilations", [1] * nd)
    out_pad = n.attrs.get("output_padding", [0] * nd)
    group = n.attrs.get("group", 1)

    def fn(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        return conv(x, w, b, strides, begin, out_pad, group, dilations)

    return fn


def _pool(n: Node) -> Fn:
    _check_auto_pad(n)
    kernel = n.attrs["kernel_shape"]
    nd = len(kernel)
    strides = n.attrs.get("strides", [1] * nd)
    ceil = bool(n.attrs.get("ceil_mode", 0))
    begin, end = _split_pads(n.attrs.get("pads"), nd)
    if n.op_type == "MaxPool":
        if len(n.outputs) > 1:
            raise NotImplementedError("MaxPool with an Indices output is not supported")
        pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[nd]
        dilations = n.attrs.get("dilations", [1] * nd)
        pre = None if begin == end else _torch_pad(begin, end)
        padding = begin if pre is None else [0] * nd

        def max_fn(x: torch.Tensor) -> torch.Tensor:
            if pre is not None:
                x = F.pad(x, pre, value=float("-inf"))
            return pool(x, kernel, strides, padding, dilations, ceil_mode=ceil)

        return max_fn
    if begin != end:
        raise NotImplementedError("AveragePool with asymmetric pads is not supported")
    avg = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[nd]
    include = bool(n.attrs.get("count_include_pad", 0))
    return lambda x: avg(x, kernel, strides, begin, ceil, include)


def _global_avg(n: Node) -> Fn:
    return lambda x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


def _batch_norm(n: Node) -> Fn:
    if len(n.outputs) > 1 or n.attrs.get("training_mode", 0):
        raise NotImplementedError("BatchNormalization in training mode is not supported")
    eps = float(n.attrs.get("epsilon", 1e-5))
    return lambda x, s, b, m, v: F.batch_norm(x, m, v, s, b, False, 0.0, eps)


def _layer_norm(n: Node) -> Fn:  # produced by the LayerNorm fusion, not an ONNX op here
    eps = float(n.attrs["epsilon"])
    return lambda x: F.layer_norm(x, (x.shape[-1],), eps=eps)


def _cast(n: Node) -> Fn:
    to = int(n.attrs["to"])
    if to not in _DTYPES:
        raise NotImplementedError(f"Cast to ONNX type {to} is not supported")
    dtype = _DTYPES[to]

    def fn(x: Value) -> Value:
        if isinstance(x, Ints):
            return x if to in _INT_TYPES else _tensor(x).to(dtype)
        if dtype.is_floating_point and x.is_floating_point():
            return x  # keep the module's compute dtype (fp16 stays fp16)
        return x.to(dtype)

    return fn


def _clip(n: Node) -> Fn:
    if n.opset < 11:
        lo, hi = n.attrs.get("min"), n.attrs.get("max")
    else:
        lo_v, hi_v = n.need_const(1, "min"), n.need_const(2, "max")
        lo = None if lo_v is None else _floats(lo_v)[0]  # type: ignore[index]
        hi = None if hi_v is None else _floats(hi_v)[0]  # type: ignore[index]
    return lambda x, *_: torch.clamp(x, lo, hi)


def _concat(n: Node) -> Fn:
    axis = int(n.attrs["axis"])

    def fn(*xs: Value) -> Value:
        if all(isinstance(x, Ints) for x in xs):
            return Ints(v for x in xs for v in x)
        like = next((x for x in xs if isinstance(x, torch.Tensor)), None)
        return torch.cat([_tensor(x, like) for x in xs], dim=axis)

    return fn


def _hard_sigmoid(n: Node) -> Fn:
    alpha = float(n.attrs.get("alpha", 0.2))
    beta = float(n.attrs.get("beta", 0.5))
    return lambda x: torch.clamp(x * alpha + beta, 0.0, 1.0)


def _reduce_mean(n: Node) -> Fn:
    axes = _ints(n.need_const(1, "axes")) if n.opset >= 18 else n.attrs.get("axes")
    keep = bool(n.attrs.get("keepdims", 1))
    if not axes:
        if n.attrs.get("noop_with_empty_axes", 0):
            return lambda x, *_: x
        return lambda x, *_: x.mean(dim=tuple(range(x.dim())), keepdim=keep)
    dims = tuple(axes)
    return lambda x, *_: x.mean(dim=dims, keepdim=keep)


def _reshape(n: Node) -> Fn:
    allowzero = bool(n.attrs.get("allowzero", 0))

    def fn(x: torch.Tensor, shape: Value) -> torch.Tensor:
        dims = list(shape) if isinstance(shape, Ints) else shape.tolist()
        if not allowzero:
            # Only constant 0s mean "copy this dimension"; dims that came from
            # Shape are already the real sizes (and may be symbolic).
            dims = [x.shape[i] if type(d) is int and d == 0 else d for i, d in enumerate(dims)]
        return x.reshape(dims)

    return fn


def _resize(n: Node) -> Fn:
    mode = n.attrs.get("mode", b"nearest")
    ctm = n.attrs.get("coordinate_transformation_mode", b"half_pixel")
    nearest = n.attrs.get("nearest_mode", b"round_prefer_floor")
    if n.opset < 11:
        ctm, nearest = b"asymmetric", b"floor"  # the opset-10 definition
    if (mode, ctm, nearest) != (b"nearest", b"asymmetric", b"floor"):
        raise NotImplementedError(
            f"Resize mode={mode!r} coordinate_transformation_mode={ctm!r} "
            f"nearest_mode={nearest!r} is not supported (only nearest/asymmetric/floor)"
        )
    scales = _floats(n.need_const(1 if n.opset < 11 else 2, "scales")) or None
    sizes = _ints(n.need_const(3, "sizes")) if n.opset >= 11 else None
    if scales:
        if scales[:2] != [1.0, 1.0]:
            raise NotImplementedError("Resize of the batch or channel axis is not supported")
        # torch "nearest" is floor(dst / scale): ONNX asymmetric + floor exactly.
        return lambda x, *_: F.interpolate(x, scale_factor=scales[2:], mode="nearest")
    if sizes:
        return lambda x, *_: F.interpolate(x, size=sizes[2:], mode="nearest")
    raise NotImplementedError("Resize without scales or sizes is not supported")


def _shape(n: Node) -> Fn:
    start, end = n.attrs.get("start", 0), n.attrs.get("end")
    return lambda x: Ints(x.shape[start:end])


def _slice(n: Node) -> Fn:
    if n.opset < 10:
        starts, ends = n.attrs["starts"], n.attrs["ends"]
        axes, steps = n.attrs.get("axes"), None
    else:
        starts = _ints(n.need_const(1, "starts"))
        ends = _ints(n.need_const(2, "ends"))
        axes = _ints(n.need_const(3, "axes"))
        steps = _ints(n.need_const(4, "steps"))
    axes = axes or list(range(len(starts)))  # type: ignore[arg-type]
    steps = steps or [1] * len(axes)
    if any(s <= 0 for s in steps):
        raise NotImplementedError("Slice with non-positive steps is not supported")

    def fn(x: Value, *_: Any) -> Value:
        if isinstance(x, Ints):
            if axes != [0]:
                raise NotImplementedError("Slice of a shape vector along axis != 0")
            return Ints(x[slice(starts[0], ends[0], steps[0])])  # type: ignore[index]
        index: list[slice] = [slice(None)] * x.dim()
        for a, s, e, st in zip(axes, starts, ends, steps, strict=True):  # type: ignore[arg-type]
            index[a] = slice(s, e, st)
        return x[tuple(index)]

    return fn


def _softmax(n: Node) -> Fn:
    if n.opset >= 13:
        axis = int(n.attrs.get("axis", -1))
        return lambda x: torch.softmax(x, dim=axis)
    axis = int(n.attrs.get("axis", 1))

    def legacy(x: torch.Tensor) -> torch.Tensor:
        # Before opset 13, Softmax normalises over all axes from ``axis`` on.
        a = axis % x.dim()
        if a == x.dim() - 1:
            return torch.softmax(x, dim=-1)
        return torch.softmax(x.flatten(a), dim=-1).reshape(x.shape)

    return legacy


def _squeeze(n: Node) -> Fn:
    axes = n.attrs.get("axes") if n.opset < 13 else _ints(n.need_const(1, "axes"))
    if not axes:
        return lambda x, *_: torch.squeeze(x)
    dims = tuple(axes)
    return lambda x, *_: torch.squeeze(x, dim=dims)


def _transpose(n: Node) -> Fn:
    perm = n.attrs.get("perm")
    if perm is None:
        return lambda x: x.permute(*reversed(range(x.dim())))
    return lambda x: x.permute(*perm)


BUILDERS: dict[str, Callable[[Node], Fn]] = {
    "Add": _binary(torch.add, lambda a, b: a + b),
    "AveragePool": _pool,
    "BatchNormalization": _batch_norm,
    "Cast": _cast,
    "Clip": _clip,
    "Concat": _concat,
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "Div": _binary(_div, lambda a, b: int(a / b)),
    "GlobalAveragePool": _global_avg,
    "HardSigmoid": _hard_sigmoid,
    "HardSwish": _direct(F.hardswish),
    "Identity": _direct(lambda x: x),
    "MatMul": _direct(torch.matmul),
    "MaxPool": _pool,
    "Mul": _binary(torch.mul, lambda a, b: a * b),
    "Pow": _pow,
    "ReduceMean": _reduce_mean,
    "Relu": _direct(torch.relu),
    "Reshape": _reshape,
    "Resize": _resize,
    "Shape": _shape,
    "Sigmoid": _direct(torch.sigmoid),
    "Slice": _slice,
    "Softmax": _softmax,
    "Sqrt": _direct(torch.sqrt),
    "Squeeze": _squeeze,
    "Sub": _binary(torch.sub, lambda a, b: a - b),
    "Transpose": _transpose,
}
SUPPORTED_OPS = tuple(sorted(BUILDERS))
_INTERNAL = {"ocrq.LayerNorm": _layer_norm}
