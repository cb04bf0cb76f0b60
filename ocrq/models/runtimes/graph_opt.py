"""Exact-algebra rewrites of the PP-OCR ONNX graphs before ONNX Runtime sees them.

The Paddle-to-ONNX export spells two things out in elementary ops that ONNX
Runtime does not fuse (profiling shows ~35% of CPU time in Add/Mul/Div/Clip
plus the layout reorders around them):

* hard-swish as ``Div(Mul(x, Clip(Add(x, 3), 0, 6)), 6)`` — four passes over
  the tensor; rewritten as ``Mul(x, HardSigmoid(x))`` (alpha 1/6, beta 1/2),
* per-layer scale/bias ("learnable affine") as ``Add(Mul(Conv(x), s), t)``
  — folded into the convolution's weights and bias; where an activation
  stands between the convolution and the affine (PP-LCNetV3 puts one after
  every hard-swish), folded into the *next* convolution when that one is 1x1
  without padding (12 of 25 in PP-OCRv4's recogniser), else spelled as one
  depthwise 1x1 convolution, which ONNX Runtime keeps in its blocked layout
  (that recogniser spent ~38% of its time in these Mul/Add and the reorders
  around them).

The weights also arrive as ``Constant`` nodes; they are turned into
initializers so the folding can read them. The rewrite works on an in-memory
copy: the file in the repository (and its sha256) is untouched. Results match
the original graph to float rounding (checked per model in the tests).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper


def optimize(model_bytes: bytes) -> tuple[bytes, dict[str, int]]:
    """Return the rewritten model and how many patterns of each kind changed."""
    model = onnx.load_from_string(model_bytes)
    stats = {
        "constants": _constants_to_initializers(model.graph),
        "hardswish": _hardswish(model.graph),
        "affine": _fold_conv_affine(model.graph),
        "affine_forward": _fold_affine_forward(model.graph),
    }
    return model.SerializeToString(), stats


def _constants_to_initializers(graph: Any) -> int:
    keep, moved = [], 0
    for node in graph.node:
        single = node.op_type == "Constant" and len(node.attribute) == 1
        attr = node.attribute[0] if single else None
        if attr is not None and attr.name == "value":
            graph.initializer.append(numpy_helper.from_array(
                numpy_helper.to_array(attr.t), node.output[0]))
            moved += 1
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    return moved


def _index(graph: Any) -> tuple[dict[str, np.ndarray], dict[str, list[Any]], dict[str, Any]]:
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    consumers: dict[str, list[Any]] = defaultdict(list)
    producer: dict[str, Any] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
        for name in node.output:
            producer[name] = node
    return consts, consumers, producer


def _scalar(consts: dict[str, np.ndarray], name: str) -> float | None:
    value = consts.get(name)
    if value is None or value.size != 1:
        return None
    return float(value.reshape(-1)[0])


def _hardswish(graph: Any) -> int:
    consts, consumers, producer = _index(graph)
    outputs = {o.name for o in graph.output}
    replace: dict[int, list[Any]] = {}
    drop: set[int] = set()
    for clip in graph.node:
        if clip.op_type != "Clip" or len(clip.input) < 3:
            continue
        add = producer.get(clip.input[0])
        if add is None or add.op_type != "Add" or len(consumers[add.output[0]]) != 1:
            continue
        xs = [i for i in add.input if i not in consts]
        cs = [i for i in add.input if i in consts]
        if len(xs) != 1 or len(cs) != 1 or _scalar(consts, cs[0]) != 3.0:
            continue
        if (_scalar(consts, clip.input[1]), _scalar(consts, clip.input[2])) != (0.0, 6.0):
            continue
        (x,) = xs
        muls = consumers[clip.output[0]]
        if len(muls) != 1 or muls[0].op_type != "Mul" or set(muls[0].input) != {x, clip.output[0]}:
            continue
        mul = muls[0]
        divs = consumers[mul.output[0]]
        if (len(divs) != 1 or divs[0].op_type != "Div" or divs[0].input[0] != mul.output[0]
                or _scalar(consts, divs[0].input[1]) != 6.0 or mul.output[0] in outputs):
            continue
        div = divs[0]
        gate = f"{div.output[0]}__hsig"
        replace[id(div)] = [
            helper.make_node("HardSigmoid", [x], [gate], alpha=1.0 / 6.0, beta=0.5),
            helper.make_node("Mul", [x, gate], [div.output[0]]),
        ]
        drop |= {id(add), id(clip), id(mul)}
    _rebuild(graph, drop, replace)
    return len(replace)


def _fold_conv_affine(graph: Any) -> int:
    consts, consumers, _ = _index(graph)
    outputs = {o.name for o in graph.output}
    drop: set[int] = set()
    folded = 0
    for conv in graph.node:
        if conv.op_type != "Conv" or conv.input[1] not in consts:
            continue
        weight = consts[conv.input[1]].astype(np.float64)
        bias = _conv_bias(conv, consts)
        if bias is None:  # a bias computed in the graph: not ours to fold into
            continue
        out = conv.output[0]
        changed = False
        while out not in outputs:
            users = consumers[out]
            if len(users) != 1 or users[0].op_type not in ("Mul", "Add"):
                break
            node = users[0]
            others = [i for i in node.input if i != out]
            if len(others) != 1 or others[0] not in consts:
                break
            c = consts[others[0]].astype(np.float64).reshape(-1)
            # Only a scalar or a per-output-channel (C,1,1) operand folds exactly.
            shape = consts[others[0]].shape
            if c.size != 1 and not (c.size == weight.shape[0] and shape[-2:] == (1, 1)):
                break
            if node.op_type == "Mul":
                per_out = c.reshape(-1, *([1] * (weight.ndim - 1))) if c.size > 1 else c[0]
                weight = weight * per_out
                bias = bias * c
            else:
                bias = bias + c
            drop.add(id(node))
            out = node.output[0]
            changed = True
            folded += 1
        if changed:
            _set_weights(graph, conv, weight, bias, "")
            conv.output[0] = out
    _rebuild(graph, drop, {})
    _drop_unused_initializers(graph)
    return folded


def _fold_affine_forward(graph: Any) -> int:
    """``Add(Mul(x, s), t)`` with scalar s and t, read only by convolutions: into
    their weights where every one is 1x1 without padding (W' = W*s, b' = b + t*sum W:
    exact), else replaced by one depthwise 1x1 convolution (s*x + t per channel; a
    padded kxk convolution cannot take t, which the padding's zeros never had)."""
    consts, consumers, _ = _index(graph)
    outputs = {o.name for o in graph.output}
    drop: set[int] = set()
    replace: dict[int, list[Any]] = {}
    moved = 0
    for mul in graph.node:
        xs = [i for i in mul.input if i not in consts]
        if mul.op_type != "Mul" or len(xs) != 1 or len(mul.input) != 2:
            continue
        s = _scalar(consts, next(i for i in mul.input if i in consts))
        adds = consumers[mul.output[0]]
        if s is None or len(adds) != 1 or adds[0].op_type != "Add" or mul.output[0] in outputs:
            continue
        add = adds[0]
        others = [i for i in add.input if i != mul.output[0]]
        t = _scalar(consts, others[0]) if len(others) == 1 else None
        users = consumers[add.output[0]]
        # 2-D convolutions only: the depthwise form below is a 2-D one.
        convs = [u for u in users if u.op_type == "Conv" and u.input[0] == add.output[0]
                 and u.input[1] in consts and consts[u.input[1]].ndim == 4]
        if t is None or not users or len(convs) != len(users) or add.output[0] in outputs:
            continue
        biases = [_conv_bias(c, consts) for c in convs]
        if all(_pointwise(c, consts) and b is not None for c, b in zip(convs, biases, strict=True)):
            for conv, bias in zip(convs, biases, strict=True):
                weight = consts[conv.input[1]].astype(np.float64)
                _set_weights(graph, conv, weight * s, bias + t * weight.sum(axis=(1, 2, 3)), "f")
                conv.input[0] = xs[0]
            drop |= {id(mul), id(add)}
            moved += 1
            continue
        first = consts[convs[0].input[1]]
        channels = first.shape[1] * _group(convs[0])
        name = add.output[0]
        dw_w, dw_b = _fresh(graph, f"{name}__dw_w"), _fresh(graph, f"{name}__dw_b")
        graph.initializer.append(numpy_helper.from_array(
            np.full((channels, 1, 1, 1), s, np.float32), dw_w))
        graph.initializer.append(numpy_helper.from_array(np.full((channels,), t, np.float32), dw_b))
        replace[id(add)] = [helper.make_node("Conv", [xs[0], dw_w, dw_b], [name],
                                             group=channels, kernel_shape=[1, 1])]
        drop.add(id(mul))
        moved += 1
    _rebuild(graph, drop, replace)
    _drop_unused_initializers(graph)
    return moved


def _conv_bias(conv: Any, consts: dict[str, np.ndarray]) -> np.ndarray | None:
    """The convolution's bias (zeros where it has none); None where the graph computes it."""
    if len(conv.input) < 3 or not conv.input[2]:
        return np.zeros(consts[conv.input[1]].shape[0])
    bias = consts.get(conv.input[2])
    return None if bias is None else bias.astype(np.float64)


def _group(conv: Any) -> int:
    return next((int(a.i) for a in conv.attribute if a.name == "group"), 1)


def _pointwise(conv: Any, consts: dict[str, np.ndarray]) -> bool:
    """A 1x1 convolution that pads nothing (so every input it reads is real)."""
    attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
    auto = attrs.get("auto_pad", b"NOTSET")
    return (consts[conv.input[1]].shape[2:] == (1, 1) and not any(attrs.get("pads", []))
            and auto in (b"NOTSET", b"VALID", "NOTSET", "VALID"))


def _set_weights(graph: Any, conv: Any, weight: np.ndarray, bias: np.ndarray, tag: str
                 ) -> None:
    """New initializers for the convolution's weight and bias (``tag``: which fold,
    so two folds of one convolution name theirs apart)."""
    # The output's name, not the node's: a node may be named like another's output.
    base = conv.output[0]
    wname, bname = _fresh(graph, f"{base}__{tag}w"), _fresh(graph, f"{base}__{tag}b")
    graph.initializer.append(numpy_helper.from_array(weight.astype(np.float32), wname))
    graph.initializer.append(numpy_helper.from_array(bias.astype(np.float32), bname))
    while len(conv.input) < 3:
        conv.input.append("")
    conv.input[1], conv.input[2] = wname, bname


def _fresh(graph: Any, name: str) -> str:
    """``name``, made unique among the graph's tensors (an ONNX file may hold any name)."""
    taken = {t.name for t in graph.initializer} | {o for n in graph.node for o in n.output} \
        | {i.name for i in graph.input}
    while name in taken:
        name += "_"
    return name


def _rebuild(graph: Any, drop: set[int], replace: dict[int, list[Any]]) -> None:
    nodes = []
    for node in graph.node:
        if id(node) in drop:
            continue
        nodes.extend(replace.get(id(node), [node]))
    del graph.node[:]
    graph.node.extend(nodes)


def _drop_unused_initializers(graph: Any) -> None:
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
