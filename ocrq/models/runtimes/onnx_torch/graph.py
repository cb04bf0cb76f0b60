"""Build an ``nn.Module`` from an ONNX graph: fold constants, fuse, schedule, free.

:func:`build_module` walks the (topologically sorted) graph once. ``Constant``
nodes and initializers become known values; a node whose inputs are all known
is evaluated at load time (constant folding: the PP-OCR files keep weights in
``Constant`` nodes and reshape biases at run time). Float constants that
survive become buffers of the :class:`OnnxModule`, so ``.to(device)`` and
``.half()`` move them; small integer vectors stay :class:`Ints` (Python ints),
so ``Shape -> Slice -> Concat -> Reshape`` chains stay symbolic under
``torch.export``/``torch.jit.trace`` instead of freezing one input size.

Three fusions cut the op count (Python overhead per op matters on a GPU) and
keep fp16 safe: Conv+BatchNormalization folds into one Conv, the decomposed
hard-swish ``x * Clip(x + 3, 0, 6) / 6`` becomes ``F.hardswish``, and the
decomposed LayerNorm of the SVTR neck (ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/
Div) becomes ``F.layer_norm``, which accumulates in fp32 even for fp16 inputs.
Every intermediate is dropped right after its last use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from ocrq.errors import ModelLoadError
from ocrq.models.runtimes.onnx_torch.ops import (
    _INTERNAL,
    BUILDERS,
    SUPPORTED_OPS,
    Fn,
    Ints,
    Node,
    Value,
    _ints,
)

ENV, BUF, PY = 0, 1, 2  # where a step argument comes from


@dataclass(frozen=True)
class Step:
    op: str
    fn: Fn
    args: tuple[tuple[int, Any], ...]  # (ENV, name) | (BUF, buffer name) | (PY, value)
    outputs: tuple[str, ...]
    free: tuple[str, ...]  # intermediates whose last use is this step


class OnnxModule(torch.nn.Module):
    """Runs the scheduled steps; one tensor in, one tensor out."""

    def __init__(
        self,
        label: str,
        input_name: str,
        output_name: str,
        steps: list[Step],
        buffers: dict[str, torch.Tensor],
        input_dims: tuple[int | None, ...] = (),
    ) -> None:
        super().__init__()
        self.label = label
        self.input_dims = input_dims  # static sizes from the graph; None = dynamic
        self.input_name = input_name
        self.output_name = output_name
        self.steps = steps
        for name, tensor in buffers.items():
            self.register_buffer(name, tensor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env: dict[str, Any] = {self.input_name: x}
        bufs = self._buffers
        for step in self.steps:
            args = [
                env[v] if kind == ENV else bufs[v] if kind == BUF else v for kind, v in step.args
            ]
            out = step.fn(*args)
            if len(step.outputs) == 1:
                env[step.outputs[0]] = out
            else:
                env.update(zip(step.outputs, out, strict=True))
            for name in step.free:
                del env[name]
        return env[self.output_name]

    def half_weights(self) -> None:
        """Store the constant operands of Conv/ConvTranspose/MatMul in fp16.

        For ``torch.autocast``: those ops run in fp16 anyway, and weights that
        already are fp16 are not cast again on every call.
        """
        for step in self.steps:
            if step.op in ("Conv", "ConvTranspose", "MatMul"):
                for kind, name in step.args:
                    if kind == BUF and self._buffers[name].is_floating_point():
                        self._buffers[name] = self._buffers[name].half()

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for step in self.steps:
            counts[step.op] = counts.get(step.op, 0) + 1
        return counts


def load_module(path: Path | str, *, label: str | None = None, fuse: bool = True) -> OnnxModule:
    return build_module(onnx.load(str(path)), label=label or str(path), fuse=fuse)


def build_module(model: onnx.ModelProto, *, label: str = "model", fuse: bool = True) -> OnnxModule:
    """Compile ``model`` into an :class:`OnnxModule` (float32, CPU, eval mode)."""
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
    consts: dict[str, Value] = {t.name: _const(numpy_helper.to_array(t)) for t in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in consts]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise ModelLoadError(
            f"{label}: the torch runtime needs exactly one input and one output "
            f"(got {len(inputs)} and {len(graph.output)})", model=label,
        )
    alias: dict[str, str] = {}
    nodes: list[Node] = []
    for proto in graph.node:
        op = proto.op_type
        if proto.domain not in ("", "ai.onnx") or (op not in BUILDERS and op != "Constant"):
            raise ModelLoadError(
                f"{label}: unsupported ONNX op {op!r} (node {proto.name!r}, domain "
                f"{proto.domain or 'ai.onnx'!r}); the torch runtime supports: "
                f"{', '.join(SUPPORTED_OPS)}", model=label, op=op,
            )
        if op == "Constant":
            consts[proto.output[0]] = _constant_node(proto)
            continue
        ins = [alias.get(i, i) for i in proto.input]
        if op == "Identity":
            alias[proto.output[0]] = ins[0]
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in proto.attribute}
        node = Node(op, proto.name, ins, list(proto.output), attrs, opset, consts)
        if all(not i or i in consts for i in ins):
            values = _kernel(node, label)(*[consts[i] if i else None for i in ins])
            outs = values if len(node.outputs) > 1 else (values,)
            consts.update((name, _normal(v)) for name, v in zip(node.outputs, outs, strict=True))
            continue
        nodes.append(node)
    output = alias.get(graph.output[0].name, graph.output[0].name)
    if output in consts:
        raise ModelLoadError(f"{label}: the graph output is a constant", model=label)
    if fuse:
        nodes = _fuse_conv_bn(nodes, consts)
        nodes = _fuse_layer_norm(nodes, consts)
        nodes = _fuse_hard_swish(nodes, consts)
    nodes = _prune(nodes, output)
    steps, buffers = _schedule(nodes, consts, inputs[0], output, label)
    spec = next(i for i in graph.input if i.name == inputs[0])
    dims = tuple(
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
        for d in spec.type.tensor_type.shape.dim
    )
    return OnnxModule(label, inputs[0], output, steps, buffers, dims).eval()


# --- constants ----------------------------------------------------------------
def _const(arr: np.ndarray) -> Value:
    if arr.dtype.kind in "iu" and arr.ndim == 1:
        return Ints(int(v) for v in arr)
    return torch.from_numpy(np.array(arr))  # a writable copy


def _normal(v: Value) -> Value:
    if isinstance(v, torch.Tensor) and v.dtype in (torch.int32, torch.int64) and v.dim() == 1:
        return Ints(int(x) for x in v.tolist())
    return v


def _constant_node(proto: onnx.NodeProto) -> Value:
    attr = proto.attribute[0]
    value = helper.get_attribute_value(attr)
    if attr.name == "value":
        return _const(numpy_helper.to_array(value))
    if attr.name == "value_float":
        return torch.tensor(value, dtype=torch.float32)
    if attr.name == "value_floats":
        return torch.tensor(list(value), dtype=torch.float32)
    if attr.name == "value_int":
        return torch.tensor(value, dtype=torch.int64)
    if attr.name == "value_ints":
        return Ints(int(v) for v in value)
    raise NotImplementedError(f"Constant with attribute {attr.name!r} is not supported")


def _kernel(node: Node, label: str) -> Fn:
    builder = BUILDERS.get(node.op_type) or _INTERNAL[node.op_type]
    try:
        return builder(node)
    except (NotImplementedError, KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(
            f"{label}: cannot build ONNX node {node.name!r} ({node.op_type}): {exc}",
            model=label, op=node.op_type,
        ) from exc


# --- fusions ------------------------------------------------------------------
def _uses(nodes: list[Node]) -> tuple[dict[str, Node], dict[str, list[Node]]]:
    producer: dict[str, Node] = {}
    consumers: dict[str, list[Node]] = {}
    for n in nodes:
        for o in n.outputs:
            producer[o] = n
        for i in n.inputs:
            if i:
                consumers.setdefault(i, []).append(n)
    return producer, consumers


def _fuse_conv_bn(nodes: list[Node], consts: dict[str, Value]) -> list[Node]:
    """Fold ``BatchNormalization(Conv(x))`` into the Conv's weight and bias."""
    producer, consumers = _uses(nodes)
    dropped: set[int] = set()
    for bn in nodes:
        if bn.op_type != "BatchNormalization" or len(bn.outputs) != 1:
            continue
        conv = producer.get(bn.inputs[0])
        params = [bn.const(i) for i in range(1, 5)]
        if (
            conv is None or conv.op_type != "Conv" or len(consumers[bn.inputs[0]]) != 1
            or not all(isinstance(p, torch.Tensor) for p in params)
            or not isinstance(conv.const(1), torch.Tensor)
            or (conv.has(2) and not isinstance(conv.const(2), torch.Tensor))
        ):
            continue
        w = conv.const(1).double()  # type: ignore[union-attr]
        b = conv.const(2).double() if conv.has(2) else torch.zeros(w.shape[0], dtype=w.dtype)  # type: ignore[union-attr]
        gamma, beta, mean, var = (p.double() for p in params)  # type: ignore[union-attr]
        scale = gamma / torch.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
        wname, bname = f"{bn.outputs[0]}::w", f"{bn.outputs[0]}::b"
        consts[wname] = (w * scale.reshape(-1, *[1] * (w.dim() - 1))).float()
        consts[bname] = ((b - mean) * scale + beta).float()
        conv.inputs = [conv.inputs[0], wname, bname]
        conv.outputs = list(bn.outputs)
        dropped.add(id(bn))
    return [n for n in nodes if id(n) not in dropped]


def _scalar(v: Value | None, want: float | None = None) -> float | None:
    """The value of a one-element float constant (equal to ``want`` if given), else None."""
    if not isinstance(v, torch.Tensor) or v.numel() != 1:
        return None
    x = float(v.reshape(-1)[0])
    return x if want is None or x == want else None


def _single(producer: dict[str, Node], consumers: dict[str, list[Node]], name: str, op: str,
            users: int = 1) -> Node | None:
    """The ``op`` node producing ``name`` if exactly ``users`` nodes read it, else None."""
    n = producer.get(name)
    ok = n is not None and n.op_type == op and len(consumers.get(name, [])) == users
    return n if ok else None


def _fuse_hard_swish(nodes: list[Node], consts: dict[str, Value]) -> list[Node]:
    """``Div(Mul(x, Clip(Add(x, 3), 0, 6)), 6)`` (how paddle2onnx writes hardswish)."""
    producer, consumers = _uses(nodes)
    dropped: set[int] = set()
    for i, div in enumerate(nodes):
        if div.op_type != "Div" or _scalar(div.const(1), 6.0) is None:
            continue
        mul = _single(producer, consumers, div.inputs[0], "Mul")
        if mul is None:
            continue
        for x_name, clip_name in (mul.inputs, mul.inputs[::-1]):
            clip = _single(producer, consumers, clip_name, "Clip")
            add = _single(producer, consumers, clip.inputs[0], "Add") if clip else None
            if (
                clip is None or add is None or clip.opset < 11
                or _scalar(clip.const(1), 0.0) is None or _scalar(clip.const(2), 6.0) is None
                or add.inputs[0] != x_name or _scalar(add.const(1), 3.0) is None
            ):
                continue
            dropped |= {id(mul), id(clip), id(add)}
            nodes[i] = Node("HardSwish", div.name, [x_name], list(div.outputs), {},
                            div.opset, consts)
            break
    return [n for n in nodes if id(n) not in dropped]


def _fuse_layer_norm(nodes: list[Node], consts: dict[str, Value]) -> list[Node]:
    """``(x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps)`` over the last axis -> LayerNorm."""
    producer, consumers = _uses(nodes)

    def only(name: str, op: str, users: int = 1) -> Node | None:
        return _single(producer, consumers, name, op, users)

    def last_axis_mean(n: Node | None) -> bool:
        if n is None or not n.attrs.get("keepdims", 1):
            return False
        axes = _ints(n.const(1)) if n.opset >= 18 else n.attrs.get("axes")
        return list(axes or []) == [-1]

    dropped: set[int] = set()
    for i, div in enumerate(nodes):
        if div.op_type != "Div":
            continue
        sqrt = only(div.inputs[1], "Sqrt")
        add = only(sqrt.inputs[0], "Add") if sqrt else None
        if add is None:
            continue
        var_name, eps = (add.inputs[0], _scalar(add.const(1))) if add.const(1) is not None else (
            add.inputs[1], _scalar(add.const(0)))
        var = only(var_name, "ReduceMean")
        pow_ = only(var.inputs[0], "Pow") if var else None
        sub = only(div.inputs[0], "Sub", users=2)
        if eps is None or pow_ is None or sub is None or pow_.inputs[0] != sub.outputs[0]:
            continue
        mean = only(sub.inputs[1], "ReduceMean")
        if (
            _scalar(pow_.const(1), 2.0) is None or mean is None or mean.inputs[0] != sub.inputs[0]
            or not last_axis_mean(mean) or not last_axis_mean(var)
        ):
            continue
        dropped |= {id(n) for n in (sqrt, add, var, pow_, sub, mean)}
        nodes[i] = Node("ocrq.LayerNorm", div.name, [sub.inputs[0]], list(div.outputs),
                        {"epsilon": eps}, div.opset, consts)
    return [n for n in nodes if id(n) not in dropped]


def _prune(nodes: list[Node], output: str) -> list[Node]:
    needed = {output}
    kept: list[Node] = []
    for n in reversed(nodes):
        if any(o in needed for o in n.outputs):
            kept.append(n)
            needed.update(i for i in n.inputs if i)
    return kept[::-1]


# --- scheduling -----------------------------------------------------------------
def _schedule(
    nodes: list[Node], consts: dict[str, Value], input_name: str, output: str, label: str
) -> tuple[list[Step], dict[str, torch.Tensor]]:
    buffers: dict[str, torch.Tensor] = {}
    buffer_of: dict[str, str] = {}
    last_use: dict[str, int] = {}
    arg_lists: list[list[tuple[int, Any]]] = []
    for k, n in enumerate(nodes):
        args: list[tuple[int, Any]] = []
        for name in n.inputs:
            if not name:
                args.append((PY, None))
            elif name in consts and isinstance(consts[name], torch.Tensor):
                if name not in buffer_of:
                    buffer_of[name] = f"c{len(buffers)}"
                    buffers[buffer_of[name]] = consts[name]  # type: ignore[assignment]
                args.append((BUF, buffer_of[name]))
            elif name in consts:
                args.append((PY, consts[name]))
            else:
                args.append((ENV, name))
                last_use[name] = k
        while args and args[-1] == (PY, None):
            args.pop()  # trailing optional inputs: let the kernel's defaults apply
        arg_lists.append(args)
    steps = []
    for k, (n, args) in enumerate(zip(nodes, arg_lists, strict=True)):
        # Free what this step reads for the last time, and outputs nobody reads.
        free = {v for kind, v in args if kind == ENV and last_use[v] == k}
        free |= {o for o in n.outputs if o not in last_use}
        free.discard(output)
        steps.append(Step(n.op_type, _kernel(n, label), tuple(args), tuple(n.outputs),
                          tuple(sorted(free))))
    if input_name not in last_use and nodes:
        raise ModelLoadError(f"{label}: the graph input is never used", model=label)
    return steps, buffers
