"""Shape buckets: the small, fixed set of input shapes a model runs at on a GPU.

Why (issue 11): a GPU runtime pays per new input shape (cuDNN choosing and
compiling kernels, a CUDA graph captured), and a row's numbers may depend on
the batch size its pass ran at. So on a GPU every pass runs at one of a few
shapes, all warmed when the model loads:

- spatial: a page for detection is padded (edges replicated: the background
  continues) up to the next bucket side, the output cropped back; the
  coarse sides also let pages of different sizes share one pass;
- width: a line crop is padded (mid-grey) up to the next multiple of 64; the
  recognition stage pads to a finer grid (16: less padding on a CPU), and a
  line model's output, a sequence of steps along the width, is cut back to
  the steps of the width it was given, as a page model's map is;
- rows: every pass has exactly ``batch_size(shape)`` rows, zero-padded, so a
  row's result never depends on how many other rows, or whose, shared its pass.

Every shape is a function of the input alone, never of what else is in
flight. CPU runtimes do not use buckets (ONNX Runtime has no per-shape cost,
and padding would only add work), so CPU text is unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# Detection: a page's sides go up to the next of these. Coarse on purpose: most
# first passes (long side <= 1024) land in (1024, 512) or (1024, 1024), so
# concurrent pages share a pass; the padding is cheap on a GPU.
DET_SIDES = (512, 1024, 1536, 2048)
LINE_HEIGHT_MAX = 64  # models with a fixed height up to this read text lines


@dataclass(frozen=True)
class Buckets:
    """The bucket policy of one model (travels as a dict to tensor-server clients)."""

    height: int = 0  # fixed input height, 0 = dynamic
    width: int = 0  # fixed input width, 0 = dynamic
    sides: tuple[int, ...] = ()  # dynamic height and width: pad up to the next side
    side_step: int = 512  # beyond the last side: pad to multiples of this
    width_step: int = 64  # dynamic width only: pad up to multiples of this
    min_width: int = 128
    max_width: int = 2560  # widths warmed: min_width..max_width by width_step
    fill: int = -1  # pad value for widths (-1: replicate the edge)
    pixel_budget: int = 4 * 1024 * 1024  # rows * height * width of one pass, at most
    max_rows: int = 8

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], dims: tuple[int | None, ...] = ()) -> Buckets:
        """The policy for a model from its manifest's input spec (and graph dims)."""
        h = int(spec.get("height") or (dims[2] if len(dims) == 4 and dims[2] else 0))
        w = int(spec.get("width") or (dims[3] if len(dims) == 4 and dims[3] else 0))
        if not h and not w:  # a page model (detection)
            return cls(sides=DET_SIDES)
        if h and h <= LINE_HEIGHT_MAX:  # a line model: up to 32 rows of 640 px a pass
            # 32, not 64: a lone page's lines spread over ~15 width buckets, and every
            # pass is padded to its rows. Pad with what normalises to about 0, as the
            # recognition stage does.
            return cls(height=h, width=w, fill=128, pixel_budget=32 * h * 640, max_rows=32)
        return cls(height=h, width=w)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Buckets:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "sides" in known:
            known["sides"] = tuple(int(s) for s in known["sides"])
        return cls(**known)

    # --- shapes --------------------------------------------------------------
    def spatial(self, h: int, w: int) -> tuple[int, int]:
        """The bucket (height, width) an h x w input is padded to."""
        if self.sides:
            return self._side(h), self._side(w)
        bh = self.height or h
        if self.width:
            return bh, self.width
        return bh, max(self.min_width, _ceil_to(w, self.width_step))

    def _side(self, n: int) -> int:
        for side in self.sides:
            if n <= side:
                return side
        return _ceil_to(n, self.side_step)

    def batch_size(self, h: int, w: int) -> int:
        """Rows of every pass at bucket (h, w): a power of two within the budget."""
        fit = max(1, self.pixel_budget // max(1, h * w))
        return min(self.max_rows, 1 << (fit.bit_length() - 1))

    def warm_shapes(self) -> list[tuple[int, int, int]]:
        """Every (rows, height, width) the model is warmed at when it loads."""
        if self.sides:
            hw = [(a, b) for a in self.sides for b in self.sides]
        elif self.height and self.width:
            hw = [(self.height, self.width)]
        else:
            step = self.width_step
            hw = [(self.height, w) for w in range(self.min_width, self.max_width + 1, step)]
        return [(self.batch_size(h, w), h, w) for h, w in hw]

    # --- padding ---------------------------------------------------------------
    def pad(self, images: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """uint8 NHWC images padded to their bucket; returns (padded, (h, w) before)."""
        n, h, w = images.shape[:3]
        bh, bw = self.spatial(h, w)
        if (bh, bw) == (h, w):
            return images, (h, w)
        if bh < h or bw < w:  # a fixed-size model given another size: the model says no
            return images, (h, w)
        spec = ((0, 0), (0, bh - h), (0, bw - w)) + ((0, 0),) * (images.ndim - 3)
        if self.fill >= 0:
            return np.pad(images, spec, constant_values=self.fill), (h, w)
        return np.pad(images, spec, mode="edge"), (h, w)

    def pad_nchw(self, batch: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """The same for an already normalised float32 NCHW batch (edges replicated;
        a fill is the normalised grey, 0)."""
        h, w = batch.shape[2:4]
        bh, bw = self.spatial(h, w)
        if (bh, bw) == (h, w) or bh < h or bw < w:
            return batch, (h, w)
        spec = ((0, 0), (0, 0), (0, bh - h), (0, bw - w))
        if self.fill >= 0:
            return np.pad(batch, spec), (h, w)
        return np.pad(batch, spec, mode="edge"), (h, w)

    def crop(self, output: np.ndarray, hw: tuple[int, int], padded_hw: tuple[int, int]
             ) -> np.ndarray:
        """The output for the unpadded input: dense maps (N, C, H, W) are cut back,
        and so are a line model's (N, T, C) steps along the width (T divides the
        padded width: one step per so many columns, as CTC recognisers give; the
        steps of the unpadded width kept, rounded down as the network rounds);
        other outputs (class scores) are returned as they are."""
        if hw == padded_hw:
            return output
        if output.ndim == 4 and tuple(output.shape[2:]) == padded_hw:
            return np.ascontiguousarray(output[:, :, : hw[0], : hw[1]])
        if output.ndim == 3 and self.height and not self.width and hw[0] == padded_hw[0]:
            steps = output.shape[1]  # one per ``stride`` columns of the padded width
            if steps and padded_hw[1] % steps == 0:
                return np.ascontiguousarray(output[:, : hw[1] // (padded_hw[1] // steps)])
        return output


def _ceil_to(n: int, step: int) -> int:
    return int(math.ceil(n / step) * step)


def pad_rows(batch: np.ndarray, rows: int) -> np.ndarray:
    """``batch`` with zero rows appended up to ``rows`` (a pass's fixed size)."""
    n = batch.shape[0]
    if n >= rows:
        return batch
    out = np.zeros((rows, *batch.shape[1:]), batch.dtype)
    out[:n] = batch
    return out
