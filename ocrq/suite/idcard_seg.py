"""Where the card lies, seen whole: a small learned segmenter for the finder (issue 13).

The classic search (idcard_cv.py) sees edges and colours one outline at a
time, so a side grown onto a clutter rectangle or a strip of table, or a card
merged with a shape beside it, can outscore the card. A small convolutional
network, trained on generated cards (idcard_seg_train.py, fixed seeds of its
own), looks at the whole image shrunk to ``SIDE`` x ``SIDE`` and says for each
pixel whether it is card. The quad of that mask is a second proposal beside the
classic pick, and the mask is the referee between the two (idcard_find.py).

Its weights ride in the ``idd`` parameters (``segnet``: float16 in base64,
pinned by sha256 with every other number). The forward pass runs in ONNX
Runtime on one thread (a graph built from ``LAYOUT`` and the weights, once per
weights): numpy's BLAS split these small products over two threads and, on a
busy machine, took five times as long. Serving needs no torch; training
imports it lazily.
"""

from __future__ import annotations

import base64
import functools
import logging
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from ocrq.suite.idcard_grow import corners_of

log = logging.getLogger(__name__)

FORMAT = "ocrq-idcard-seg/2"
STORE = 256  # the image is first shrunk to this square (and kept so in training)
SIDE = 160  # the network's input square (px); its mask comes out at half of it
# (in channels, out channels, stride) of each 3x3 convolution, in order; the
# last is the 1x1 head. Encoder: 4 stages (80, 40, 20, 10 px); decoder: 3
# (20, 40, 80 px), each fed the upsampled stage below and the encoder's skip.
LAYOUT: tuple[tuple[int, int, int], ...] = (
    (3, 8, 2), (8, 8, 1),
    (8, 16, 2), (16, 16, 1),
    (16, 24, 2), (24, 24, 1),
    (24, 32, 2), (32, 32, 1), (32, 32, 1),
    (56, 24, 1), (40, 16, 1), (24, 8, 1),
    (8, 1, 1),
)
# Which tensors each layer reads: "x" the input, "e1".."e4" the encoder stages,
# "d3".."d1" the decoder's; "up:" upsampled x2 first. The torch network and the
# ONNX graph are both built from this one table.
WIRING: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("a1", ("x",)), ("e1", ("a1",)), ("a2", ("e1",)), ("e2", ("a2",)),
    ("a3", ("e2",)), ("e3", ("a3",)), ("a4", ("e3",)), ("b4", ("a4",)), ("e4", ("b4",)),
    ("d3", ("up:e4", "e3")), ("d2", ("up:d3", "e2")), ("d1", ("up:d2", "e1")),
    ("logit", ("d1",)),
)


def net_input(image: np.ndarray) -> np.ndarray:
    """The image (BGR) squashed to STORE, then SIDE, square: 3 x SIDE x SIDE in -0.5..0.5
    (training draws its cards at STORE once, so both go through the same two steps)."""
    store = cv2.resize(image, (STORE, STORE), interpolation=cv2.INTER_AREA)
    return scaled_input(store)


def scaled_input(store: np.ndarray) -> np.ndarray:
    small = cv2.resize(store, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    return (small.astype(np.float32) / 255 - 0.5).transpose(2, 0, 1)


def torch_net() -> Any:
    """The network in torch, for training (idcard_seg_train.py)."""
    import torch  # training only: the finder runs the weights in ONNX Runtime

    class SegNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.convs = torch.nn.ModuleList(
                torch.nn.Conv2d(i, o, 1 if k == len(LAYOUT) - 1 else 3, s,
                                0 if k == len(LAYOUT) - 1 else 1)
                for k, (i, o, s) in enumerate(LAYOUT))

        def forward(self, x: Any) -> Any:
            up = torch.nn.functional.interpolate
            t = {"x": x}
            for k, (name, srcs) in enumerate(WIRING):
                ins = [up(t[s[3:]], scale_factor=2) if s.startswith("up:") else t[s]
                       for s in srcs]
                y = self.convs[k](torch.cat(ins, 1) if len(ins) > 1 else ins[0])
                t[name] = y if name == "logit" else torch.relu(y)
            return t["logit"]

    return SegNet()


def weights(seg: Mapping[str, Any]) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """(weight, bias) per layer from the parameters' ``segnet``, or None when
    there is none or it was made for another layout (an older ``idd``)."""
    if not seg:
        return None
    if (seg.get("format") != FORMAT or seg.get("side") != SIDE
            or [tuple(x) for x in seg.get("layout", [])] != list(LAYOUT)):
        log.warning("idd segmenter made for another network: not used")
        return None
    flat = np.frombuffer(base64.b64decode(seg["fp16"]), np.float16).astype(np.float32)
    out, at = [], 0
    for k, (i, o, _) in enumerate(LAYOUT):
        ksz = 1 if k == len(LAYOUT) - 1 else 3
        n = o * i * ksz * ksz
        out.append((flat[at:at + n].reshape(o, i, ksz, ksz), flat[at + n:at + n + o]))
        at += n + o
    if at != len(flat):
        log.warning("idd segmenter holds %d numbers, its layout %d: not used", len(flat), at)
        return None
    return out


def unpack(seg: Mapping[str, Any]) -> Any:
    """A one-thread ONNX Runtime session of the parameters' segmenter, or None.
    Made once per weights (the base64 string's hash is kept by Python)."""
    if not seg or not isinstance(seg.get("fp16"), str):
        return None
    layout = tuple(tuple(int(v) for v in x) for x in seg.get("layout", []))
    return _session(str(seg.get("format")), seg.get("side"), layout, seg["fp16"])


@functools.lru_cache(maxsize=4)
def _session(fmt: str, side: Any, layout: tuple[tuple[int, ...], ...], fp16: str) -> Any:
    layers = weights({"format": fmt, "side": side, "layout": layout, "fp16": fp16})
    if layers is None:
        return None
    import onnxruntime as ort  # heavy: only a finder with a segmenter loads it

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(onnx_graph(layers), opts,
                                providers=["CPUExecutionProvider"])


def onnx_graph(layers: list[tuple[np.ndarray, np.ndarray]]) -> bytes:
    """The network as a serialised ONNX model (input "x": 1 x 3 x SIDE x SIDE)."""
    from onnx import TensorProto, helper, numpy_helper  # heavy: only to build the graph

    nodes, made = [], set()
    inits = [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales2")]
    for k, ((name, srcs), (w, b), (_, _, stride)) in enumerate(
            zip(WIRING, layers, LAYOUT, strict=True)):
        for s in srcs:
            if s.startswith("up:") and s not in made:
                # torch's default "nearest": source index floor(i / 2)
                nodes.append(helper.make_node(
                    "Resize", [s[3:], "", "scales2"], [s], mode="nearest",
                    coordinate_transformation_mode="asymmetric", nearest_mode="floor"))
                made.add(s)
        src = srcs[0]
        if len(srcs) > 1:
            src = f"cat{k}"
            nodes.append(helper.make_node("Concat", list(srcs), [src], axis=1))
        inits += [numpy_helper.from_array(w, f"weight{k}"),
                  numpy_helper.from_array(b, f"bias{k}")]
        pad = 0 if w.shape[2] == 1 else 1
        conv = name if name == "logit" else f"c{k}"
        nodes.append(helper.make_node("Conv", [src, f"weight{k}", f"bias{k}"], [conv],
                                      pads=[pad] * 4, strides=[stride] * 2))
        if name != "logit":
            nodes.append(helper.make_node("Relu", [conv], [name]))
    graph = helper.make_graph(
        nodes, "idcard_seg",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, SIDE, SIDE])],
        [helper.make_tensor_value_info("logit", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def predict(image: np.ndarray, session: Any) -> np.ndarray:
    """Probability that each pixel is card, SIDE x SIDE (the image squashed)."""
    logit = session.run(None, {"x": net_input(image)[None]})[0][0, 0]
    logit = cv2.resize(logit, (SIDE, SIDE), interpolation=cv2.INTER_LINEAR)
    return 1 / (1 + np.exp(-logit))


def mask_quad(prob: np.ndarray, shape: tuple[int, int]) -> np.ndarray | None:
    """Four corners of the mask's largest region (on an image of ``shape``), or None:
    a line fitted to the middle of each side of its outline, the corners where
    they meet (the mask's corners are rounded, like the card's)."""
    up = 4
    big = cv2.resize(prob, (SIDE * up, SIDE * up), interpolation=cv2.INTER_LINEAR)
    mask = (big > 0.5).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    c = max(contours, key=cv2.contourArea)
    if cv2.contourArea(c) < 0.02 * mask.size:
        return None
    hull = cv2.convexHull(c)
    peri = cv2.arcLength(hull, True)
    quad = None
    for eps in (0.01, 0.02, 0.03, 0.05):
        approx = cv2.approxPolyDP(hull, eps * peri, True)
        if len(approx) == 4:
            quad = approx.reshape(4, 2).astype(np.float64)
            break
    if quad is None:
        quad = cv2.boxPoints(cv2.minAreaRect(hull)).astype(np.float64)
    pts = c.reshape(-1, 2).astype(np.float64)
    lines = []
    for i in range(4):
        a, d = quad[i], quad[(i + 1) % 4] - quad[i]
        length = max(float(np.hypot(*d)), 1e-6)
        u = d / length
        t, off = (pts - a) @ u, np.abs((pts - a) @ np.array([-u[1], u[0]]))
        near = (t > 0.15 * length) & (t < 0.85 * length) & (off < 0.05 * length + 2)
        if near.sum() < 5:
            lines.append((a, d))
            continue
        vx, vy, x0, y0 = cv2.fitLine(pts[near].astype(np.float32), cv2.DIST_HUBER, 0, 0.01,
                                     0.01).ravel()
        lines.append((np.array([x0, y0], np.float64), np.array([vx, vy], np.float64)))
    quad = corners_of(lines, quad)
    h, w = shape
    return (quad + 0.5) * np.array([w / (SIDE * up), h / (SIDE * up)]) - 0.5
