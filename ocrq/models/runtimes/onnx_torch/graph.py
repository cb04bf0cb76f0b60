"""Build an ``nn.Module`` from an ONNX graph: fold constants, fuse, schedule, free.

:func:`build_module` walks the (topologically sorted) graph once. ``Constant``
nodes and initializers become known values; a node whose inputs are all known
is evaluated at load time (constant folding: the PP-OCR files keep weights in
``Constant`` nodes and reshape biases at run time). Float constants that
survive become buffers of the :class:`OnnxModule`, so ``.to(device)`` and
``.half()`` move them; small integer vectors stay :class:`Ints` (Python ints),
so ``Shape -> Slice -> Concat -> Reshape`` chains stay symbolic under
``torch.export``/``torch.jit.trace`` instead of freezing one input size.

The fusions (:mod:`.fusion`) cut the op count and keep fp16 safe; the
scheduling (:mod:`.module`) drops every intermediate right after its last use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from ocrq.errors import ModelLoadError
from ocrq.models.runtimes.onnx_torch.fusion import fuse_all, prune
from ocrq.models.runtimes.onnx_torch.module import OnnxModule, schedule
from ocrq.models.runtimes.onnx_torch.node import Ints, Node, Value
from ocrq.models.runtimes.onnx_torch.ops import BUILDERS, SUPPORTED_OPS, build_kernel


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
            values = build_kernel(node, label)(*[consts[i] if i else None for i in ins])
            outs = values if len(node.outputs) > 1 else (values,)
            consts.update((name, _normal(v)) for name, v in zip(node.outputs, outs, strict=True))
            continue
        nodes.append(node)
    output = alias.get(graph.output[0].name, graph.output[0].name)
    if output in consts:
        raise ModelLoadError(f"{label}: the graph output is a constant", model=label)
    if fuse:
        nodes = fuse_all(nodes, consts)
    nodes = prune(nodes, output)
    steps, buffers = schedule(nodes, consts, inputs[0], output, label)
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
