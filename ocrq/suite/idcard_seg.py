"""Where the card lies, seen whole: a small learned segmenter for the finder (issue 13).

The classic search (idcard_cv.py) sees edges and colours one outline at a
time, so a side grown onto a clutter rectangle or a strip of table, or a card
merged with a shape beside it, can outscore the card. A small convolutional
network, trained on generated cards (idcard_seg_train.py, fixed seeds of its
own), looks at the whole image shrunk to ``SIDE`` x ``SIDE`` and says for each
pixel whether it is card. The quad of that mask is a second proposal beside the
classic pick: both are refined onto the image's edges (idcard_cv.refined), and
the network's is taken when its refined sides are the better supported by
``seg_gain`` (idcard_cv.find_quad).

Its weights ride in the ``idd`` parameters (``segnet``: float16 in base64,
pinned by sha256 with every other number), and the forward pass runs in numpy
(a few ms a page), so serving needs no torch; training imports it lazily.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from ocrq.suite.idcard_grow import corners_of

log = logging.getLogger(__name__)

SIDE = 128  # the network's input square (px); its mask comes out at half of it
# (in channels, out channels, stride) of each 3x3 convolution, in order; the
# last is the 1x1 head. Encoder: 4 stages (64, 32, 16, 8 px); decoder: 3
# (16, 32, 64 px), each fed the upsampled stage below and the encoder's skip.
LAYOUT: tuple[tuple[int, int, int], ...] = (
    (3, 8, 2), (8, 8, 1),
    (8, 16, 2), (16, 16, 1),
    (16, 24, 2), (24, 24, 1),
    (24, 32, 2), (32, 32, 1), (32, 32, 1),
    (56, 24, 1), (40, 16, 1), (24, 8, 1),
    (8, 1, 1),
)


def net_input(image: np.ndarray) -> np.ndarray:
    """The image (BGR) squashed to SIDE x SIDE, 3 x SIDE x SIDE in -0.5..0.5."""
    small = cv2.resize(image, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    return (small.astype(np.float32) / 255 - 0.5).transpose(2, 0, 1)


def torch_net() -> Any:
    """The network in torch, for training (idcard_seg_train.py)."""
    import torch  # training only: the finder runs the weights with numpy

    class SegNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.convs = torch.nn.ModuleList(
                torch.nn.Conv2d(i, o, 1 if k == len(LAYOUT) - 1 else 3, s,
                                0 if k == len(LAYOUT) - 1 else 1)
                for k, (i, o, s) in enumerate(LAYOUT))

        def forward(self, x: Any) -> Any:
            relu, c = torch.relu, self.convs
            up = torch.nn.functional.interpolate
            e1 = relu(c[1](relu(c[0](x))))
            e2 = relu(c[3](relu(c[2](e1))))
            e3 = relu(c[5](relu(c[4](e2))))
            e4 = relu(c[8](relu(c[7](relu(c[6](e3))))))
            d3 = relu(c[9](torch.cat([up(e4, scale_factor=2), e3], 1)))
            d2 = relu(c[10](torch.cat([up(d3, scale_factor=2), e2], 1)))
            d1 = relu(c[11](torch.cat([up(d2, scale_factor=2), e1], 1)))
            return up(c[12](d1), scale_factor=2, mode="bilinear", align_corners=False)

    return SegNet()


def unpack(seg: Mapping[str, Any]) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """(weight, bias) per layer from the parameters' ``segnet``, or None when
    there is none or it was made for another layout (an older ``idd``)."""
    if not seg or seg.get("format") != "ocrq-idcard-seg/1":
        return None
    if [tuple(x) for x in seg.get("layout", [])] != list(LAYOUT) or seg.get("side") != SIDE:
        log.warning("idd segmenter made for another layout: not used")
        return None
    flat = np.frombuffer(base64.b64decode(seg["fp16"]), np.float16).astype(np.float32)
    out, at = [], 0
    for k, (i, o, _) in enumerate(LAYOUT):
        ksz = 1 if k == len(LAYOUT) - 1 else 3
        n = o * i * ksz * ksz
        w = flat[at:at + n].reshape(o, i, ksz, ksz)
        b = flat[at + n:at + n + o]
        out.append((w, b))
        at += n + o
    if at != len(flat):
        log.warning("idd segmenter holds %d numbers, its layout %d: not used", len(flat), at)
        return None
    return out


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int) -> np.ndarray:
    """3x3 (padding 1) or 1x1 convolution of C x H x W, as torch's Conv2d."""
    o, i, k, _ = w.shape
    if k == 1:
        return np.tensordot(w[:, :, 0, 0], x, axes=1) + b[:, None, None]
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(1, 2))
    win = win[:, ::stride, ::stride]  # C x H' x W' x 3 x 3
    h, wd = win.shape[1:3]
    cols = win.transpose(1, 2, 0, 3, 4).reshape(h * wd, i * 9)
    return (cols @ w.reshape(o, i * 9).T + b).T.reshape(o, h, wd)


def _up(x: np.ndarray) -> np.ndarray:
    return x.repeat(2, axis=1).repeat(2, axis=2)


def predict(image: np.ndarray, layers: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Probability that each pixel is card, SIDE x SIDE (the image squashed)."""
    relu = lambda a: np.maximum(a, 0.0)  # noqa: E731
    c = [lambda x, k=k: _conv(x, layers[k][0], layers[k][1], LAYOUT[k][2])
         for k in range(len(LAYOUT))]
    x = net_input(image)
    e1 = relu(c[1](relu(c[0](x))))
    e2 = relu(c[3](relu(c[2](e1))))
    e3 = relu(c[5](relu(c[4](e2))))
    e4 = relu(c[8](relu(c[7](relu(c[6](e3))))))
    d3 = relu(c[9](np.concatenate([_up(e4), e3])))
    d2 = relu(c[10](np.concatenate([_up(d3), e2])))
    d1 = relu(c[11](np.concatenate([_up(d2), e1])))
    logit = cv2.resize(c[12](d1)[0], (SIDE, SIDE), interpolation=cv2.INTER_LINEAR)
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

