"""Page orientation (0/90/180/270) and per-line 180° direction.

The page model sees three 224x224 views along the page's long axis (a long
receipt's middle alone may be blank) and their probabilities are averaged.
The line model then checks every text-line crop; when most lines of a page
read upside down, the page itself is turned 180° (see the engine). A page
whose detected lines mostly run up and down it was taken a quarter turn off
(:func:`lines_run_sideways`; the page model does that on some skewed photos):
the engine turns it a further 90° and lets the line vote settle the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ocrq.models.runtimes.inputs import run_images
from ocrq.models.states import LoadedModel
from ocrq.stages._common import softmax

ANGLES = (0, 90, 180, 270)
SIDEWAYS_MIN_ASPECT = 3.0  # a box this many times longer than wide runs along its line
SIDEWAYS_MIN_LINES = 3


@dataclass(frozen=True)
class Orientation:
    angle: int  # degrees clockwise to turn the image to make it upright
    confidence: float


def page_views(image: np.ndarray, size: int = 224, short: int = 256) -> np.ndarray:
    """Resize the short side to ``short`` and take 3 crops along the long side."""
    h, w = image.shape[:2]
    s = short / min(h, w)
    rh, rw = max(size, round(h * s)), max(size, round(w * s))
    img = cv2.resize(image, (rw, rh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    views = []
    for f in (0.25, 0.5, 0.75):
        y = int(round((rh - size) * f)) if rh >= rw else (rh - size) // 2
        x = int(round((rw - size) * f)) if rw > rh else (rw - size) // 2
        views.append(img[y : y + size, x : x + size])
    return np.stack(views)


def classify_pages(model: LoadedModel, images: Sequence[np.ndarray]) -> list[Orientation]:
    if not images:
        return []
    views = np.concatenate([page_views(im) for im in images])
    logits = run_images(model.runtime, views, model.manifest.input)
    probs = logits if np.allclose(logits.sum(axis=1), 1.0, atol=1e-3) else softmax(logits)
    labels = [int(x) for x in model.manifest.labels] or list(ANGLES)
    out = []
    for i in range(len(images)):
        p = probs[3 * i : 3 * i + 3].mean(axis=0)
        k = int(p.argmax())
        out.append(Orientation(_to_clockwise(labels[k]), float(p[k])))
    return out


def _to_clockwise(label: int) -> int:
    # The model's label is how far the content is turned counter-clockwise;
    # making it upright means turning it back clockwise by the same amount.
    return label % 360


def lines_run_sideways(polygons: Sequence[np.ndarray]) -> bool:
    """Whether most of the text (by length of long boxes) runs nearer the vertical.

    The long side is found by its length, not by the corners' order: a quad's
    "top-left" is only meaningful for text that runs roughly left to right.
    """
    q = np.asarray(polygons, np.float64).reshape(-1, 4, 2)
    a, b = q[:, 1] - q[:, 0], q[:, 3] - q[:, 0]
    la, lb = np.hypot(a[:, 0], a[:, 1]), np.hypot(b[:, 0], b[:, 1])
    long = np.where((la >= lb)[:, None], a, b)
    length, short = np.maximum(la, lb), np.minimum(la, lb)
    keep = length >= SIDEWAYS_MIN_ASPECT * np.maximum(short, 1.0)
    up = keep & (np.abs(long[:, 1]) > np.abs(long[:, 0]))
    along, across = float(length[up].sum()), float(length[keep & ~up].sum())
    return int(up.sum()) >= SIDEWAYS_MIN_LINES and along > 2 * across


def rotate_image(image: np.ndarray, angle: int) -> np.ndarray:
    """Turn ``image`` clockwise by ``angle`` (a multiple of 90)."""
    angle %= 360
    if angle == 0:
        return image
    code = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
    return cv2.rotate(image, code[angle])


def classify_lines(
    model: LoadedModel, crops: Sequence[np.ndarray], batch: int = 64
) -> list[tuple[bool, float]]:
    """For each line crop: (is upside down, confidence)."""
    spec = model.manifest.input
    h, w = int(spec.get("height", 48)), int(spec.get("width", 192))
    out: list[tuple[bool, float]] = []
    for start in range(0, len(crops), batch):
        chunk = crops[start : start + batch]
        arr = np.full((len(chunk), h, w, 3), 128, np.uint8)
        for j, crop in enumerate(chunk):
            ch, cw = crop.shape[:2]
            rw = min(w, max(1, int(np.ceil(h * cw / max(ch, 1)))))
            arr[j, :, :rw] = cv2.resize(crop, (rw, h))
        probs = run_images(model.runtime, arr, spec)
        labels = list(model.manifest.labels) or ["0", "180"]
        flip = labels.index("180")
        for p in probs:
            out.append((bool(p.argmax() == flip), float(p.max())))
    return out
