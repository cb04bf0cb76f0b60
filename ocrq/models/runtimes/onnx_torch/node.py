"""What every op builder works with: the :class:`Node`, the value types and shared helpers.

A builder sees the node's attributes, its opset and the inputs already known
to be constant (axes, slice bounds, scales, exponents are baked in as Python
values). The ``fn`` it returns receives every input at run time (tensors, or
:class:`Ints` for shape vectors) and must work eagerly, under
``torch.jit.trace`` and under ``torch.export``: no data-dependent Python
branching on tensor values, shapes handled as (Sym)ints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import onnx
import torch


class Ints(tuple):  # type: ignore[type-arg]
    """A rank-1 integer vector kept as Python ints (or SymInts while exporting)."""


Value = torch.Tensor | Ints
Fn = Callable[..., Any]

DTYPES: dict[int, torch.dtype] = {
    onnx.TensorProto.FLOAT: torch.float32,
    onnx.TensorProto.FLOAT16: torch.float16,
    onnx.TensorProto.DOUBLE: torch.float64,
    onnx.TensorProto.INT32: torch.int32,
    onnx.TensorProto.INT64: torch.int64,
    onnx.TensorProto.INT8: torch.int8,
    onnx.TensorProto.UINT8: torch.uint8,
    onnx.TensorProto.BOOL: torch.bool,
}
INT_TYPES = {onnx.TensorProto.INT32, onnx.TensorProto.INT64}


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


def as_ints(v: Value | None) -> list[int] | None:
    if v is None:
        return None
    if isinstance(v, Ints):
        return [int(x) for x in v]
    return [int(x) for x in v.reshape(-1).tolist()]


def as_floats(v: Value | None) -> list[float] | None:
    if v is None:
        return None
    if isinstance(v, Ints):
        return [float(x) for x in v]
    return [float(x) for x in v.reshape(-1).tolist()]


def as_tensor(v: Value, like: Value | None = None) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        return v
    device = like.device if isinstance(like, torch.Tensor) else None
    return torch.tensor(list(v), dtype=torch.int64, device=device)


def split_pads(pads: list[int] | None, nd: int) -> tuple[list[int], list[int]]:
    pads = pads or [0] * (2 * nd)
    return pads[:nd], pads[nd:]


def torch_pad(begin: list[int], end: list[int]) -> list[int]:
    # F.pad lists the last dimension first: (w_begin, w_end, h_begin, h_end, ...)
    out: list[int] = []
    for b, e in zip(reversed(begin), reversed(end), strict=True):
        out += [b, e]
    return out


def check_auto_pad(n: Node, same: bool = False) -> str:
    """The node's auto_pad as text; SAME_UPPER/SAME_LOWER only where ``same`` (the
    op pads by the input's size itself)."""
    auto_pad = n.attrs.get("auto_pad", b"NOTSET")
    text = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if text not in ("NOTSET", "VALID") and not (same and text in ("SAME_UPPER", "SAME_LOWER")):
        raise NotImplementedError(f"{n.op_type} auto_pad={auto_pad!r} is not supported")
    return text


def same_pads(size: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
              dilations: Sequence[int], upper: bool) -> list[int]:
    """F.pad's list for ONNX's auto_pad SAME_*: the output is ceil(size / stride)
    long; the odd pixel goes at the end (UPPER) or the beginning (LOWER)."""
    begin, end = [], []
    for i, k, s, d in zip(size, kernel, strides, dilations, strict=True):
        total = max(0, (-(-i // s) - 1) * s + (k - 1) * d + 1 - i)
        low = total // 2 if upper else total - total // 2
        begin.append(low)
        end.append(total - low)
    return torch_pad(begin, end)
