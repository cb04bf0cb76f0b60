"""Op builders for arithmetic, activations and reductions.

Binary arithmetic on two :class:`Ints` stays in Python ints, so shape
computations (``Shape -> Mul -> Reshape``) stay symbolic while exporting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ocrq.models.runtimes.onnx_torch.node import (
    Fn,
    Ints,
    Node,
    Value,
    as_floats,
    as_ints,
    as_tensor,
)


def _binary(op: Callable[[Any, Any], Any], py: Callable[[int, int], int]) -> Callable[[Node], Fn]:
    def build(n: Node) -> Fn:
        def fn(a: Value, b: Value) -> Value:
            # Shape arithmetic on two Ints stays symbolic (Python ints).
            if isinstance(a, Ints) and isinstance(b, Ints) and (
                len(a) == 1 or len(b) == 1 or len(a) == len(b)
            ):
                size = max(len(a), len(b))
                return Ints(py(a[i % len(a)], b[i % len(b)]) for i in range(size))
            return op(as_tensor(a, b), as_tensor(b, a))

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


def _clip(n: Node) -> Fn:
    if n.opset < 11:
        lo, hi = n.attrs.get("min"), n.attrs.get("max")
    else:
        lo_v, hi_v = n.need_const(1, "min"), n.need_const(2, "max")
        lo = None if lo_v is None else as_floats(lo_v)[0]  # type: ignore[index]
        hi = None if hi_v is None else as_floats(hi_v)[0]  # type: ignore[index]
    return lambda x, *_: torch.clamp(x, lo, hi)


def _hard_sigmoid(n: Node) -> Fn:
    alpha = float(n.attrs.get("alpha", 0.2))
    beta = float(n.attrs.get("beta", 0.5))
    return lambda x: torch.clamp(x * alpha + beta, 0.0, 1.0)


def _reduce_mean(n: Node) -> Fn:
    axes = as_ints(n.need_const(1, "axes")) if n.opset >= 18 else n.attrs.get("axes")
    keep = bool(n.attrs.get("keepdims", 1))
    if not axes:
        if n.attrs.get("noop_with_empty_axes", 0):
            return lambda x, *_: x
        return lambda x, *_: x.mean(dim=tuple(range(x.dim())), keepdim=keep)
    dims = tuple(axes)
    return lambda x, *_: x.mean(dim=dims, keepdim=keep)


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


MATH_BUILDERS: dict[str, Callable[[Node], Fn]] = {
    "Add": _binary(torch.add, lambda a, b: a + b),
    "Clip": _clip,
    "Div": _binary(_div, lambda a, b: int(a / b)),
    "Erf": _direct(torch.erf),  # the exact GELU of PP-OCRv6's recogniser
    "HardSigmoid": _hard_sigmoid,
    "HardSwish": _direct(F.hardswish),
    "Identity": _direct(lambda x: x),
    "MatMul": _direct(torch.matmul),
    "Mul": _binary(torch.mul, lambda a, b: a * b),
    "Pow": _pow,
    "ReduceMean": _reduce_mean,
    "Relu": _direct(torch.relu),
    "Sigmoid": _direct(torch.sigmoid),
    "Softmax": _softmax,
    "Sqrt": _direct(torch.sqrt),
    "Sub": _binary(torch.sub, lambda a, b: a - b),
}
