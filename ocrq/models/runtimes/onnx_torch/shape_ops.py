"""Op builders for shapes, layout and dtype: the ops that also handle :class:`Ints`.

A shape vector that arrives as :class:`Ints` stays Python ints through these
ops, so ``Shape -> Slice -> Concat -> Reshape`` chains stay symbolic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ocrq.models.runtimes.onnx_torch.node import (
    DTYPES,
    INT_TYPES,
    Fn,
    Ints,
    Node,
    Value,
    as_ints,
    as_tensor,
)


def _cast(n: Node) -> Fn:
    to = int(n.attrs["to"])
    if to not in DTYPES:
        raise NotImplementedError(f"Cast to ONNX type {to} is not supported")
    dtype = DTYPES[to]

    def fn(x: Value) -> Value:
        if isinstance(x, Ints):
            return x if to in INT_TYPES else as_tensor(x).to(dtype)
        if dtype.is_floating_point and x.is_floating_point():
            return x  # keep the module's compute dtype (fp16 stays fp16)
        return x.to(dtype)

    return fn


def _concat(n: Node) -> Fn:
    axis = int(n.attrs["axis"])

    def fn(*xs: Value) -> Value:
        if all(isinstance(x, Ints) for x in xs):
            return Ints(v for x in xs for v in x)
        like = next((x for x in xs if isinstance(x, torch.Tensor)), None)
        return torch.cat([as_tensor(x, like) for x in xs], dim=axis)

    return fn


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


def _shape(n: Node) -> Fn:
    start, end = n.attrs.get("start", 0), n.attrs.get("end")
    return lambda x: Ints(x.shape[start:end])


def _slice(n: Node) -> Fn:
    if n.opset < 10:
        starts, ends = n.attrs["starts"], n.attrs["ends"]
        axes, steps = n.attrs.get("axes"), None
    else:
        starts = as_ints(n.need_const(1, "starts"))
        ends = as_ints(n.need_const(2, "ends"))
        axes = as_ints(n.need_const(3, "axes"))
        steps = as_ints(n.need_const(4, "steps"))
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


def _squeeze(n: Node) -> Fn:
    axes = n.attrs.get("axes") if n.opset < 13 else as_ints(n.need_const(1, "axes"))
    dims = tuple(axes) if axes else None

    def fn(x: Value, *_: Any) -> Value:
        if isinstance(x, Ints):
            # A one-element shape vector squeezed to the scalar it holds: kept as
            # the vector (Unsqueeze below gives it back unchanged), so the
            # Shape -> Slice -> Squeeze -> Unsqueeze -> Concat chain stays Ints.
            # Nothing else is done to a shape vector here: it would be wrong.
            if len(x) != 1 or dims not in (None, (0,)):
                raise NotImplementedError("Squeeze of a shape vector: only one element")
            return x
        return torch.squeeze(x) if dims is None else torch.squeeze(x, dim=dims)

    return fn


def _unsqueeze(n: Node) -> Fn:
    axes = n.attrs.get("axes") if n.opset < 13 else as_ints(n.need_const(1, "axes"))
    dims = sorted(int(a) for a in axes or ())

    def unsqueeze(x: Value, *_: object) -> Value:
        if isinstance(x, Ints):
            # Only the scalar _squeeze kept as a one-element vector comes back: a
            # real shape vector would need a rank the Ints cannot hold.
            if len(x) != 1 or dims != [0]:
                raise NotImplementedError("Unsqueeze of a shape vector: only a scalar")
            return x
        rank = x.dim() + len(dims)
        for d in sorted(d % rank for d in dims):  # ascending: each lands where ONNX says
            x = x.unsqueeze(d)
        return x

    return unsqueeze


def _transpose(n: Node) -> Fn:
    perm = n.attrs.get("perm")
    if perm is None:
        return lambda x: x.permute(*reversed(range(x.dim())))
    return lambda x: x.permute(*perm)


SHAPE_BUILDERS: dict[str, Callable[[Node], Fn]] = {
    "Cast": _cast,
    "Concat": _concat,
    "Reshape": _reshape,
    "Shape": _shape,
    "Slice": _slice,
    "Squeeze": _squeeze,
    "Transpose": _transpose,
    "Unsqueeze": _unsqueeze,
}
