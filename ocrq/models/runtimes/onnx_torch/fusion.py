"""Graph fusions that cut the op count and keep fp16 safe, and dead-node pruning.

Python overhead per op matters on a GPU: Conv+BatchNormalization folds into
one Conv, the decomposed hard-swish ``x * Clip(x + 3, 0, 6) / 6`` becomes
``F.hardswish``, and the decomposed LayerNorm of the SVTR neck (ReduceMean/
Sub/Pow/ReduceMean/Add/Sqrt/Div) becomes ``F.layer_norm``, which accumulates
in fp32 even for fp16 inputs.
"""

from __future__ import annotations

import torch

from ocrq.models.runtimes.onnx_torch.node import Node, Value, as_ints


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
        axes = as_ints(n.const(1)) if n.opset >= 18 else n.attrs.get("axes")
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


def prune(nodes: list[Node], output: str) -> list[Node]:
    needed = {output}
    kept: list[Node] = []
    for n in reversed(nodes):
        if any(o in needed for o in n.outputs):
            kept.append(n)
            needed.update(i for i in n.inputs if i)
    return kept[::-1]


def fuse_all(nodes: list[Node], consts: dict[str, Value]) -> list[Node]:
    """Conv+BatchNormalization folding, then the LayerNorm and hard-swish fusions."""
    nodes = _fuse_conv_bn(nodes, consts)
    nodes = _fuse_layer_norm(nodes, consts)
    return _fuse_hard_swish(nodes, consts)
