"""Torch backend: the ONNX models run through :mod:`.onnx_torch`, on CPU or CUDA.

Meant for GPU workers (on this CPU, ONNX Runtime is about twice as fast, so
CPU workers keep it). ``run`` is a pure function of its batch: a GPU worker may
concatenate recognition crops of several jobs along the batch axis, call
``run`` once and split the rows back; calls from several threads are safe.
A missing GPU is not an error: the runtime falls back to CPU with a warning so
a GPU worker still starts (and CI runs) on a machine without one.

This module is only imported when the torch backend is selected
(``load_runtime("torch", ...)``), so torch never loads in ONNX Runtime workers.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ocrq.errors import OcrqError
from ocrq.models.gpu import process_memory  # the one NVML reader
from ocrq.models.runtimes.cuda_graphs import CapturedPass, new_pool
from ocrq.models.runtimes.inputs import Spec, affine, normalize, rgb
from ocrq.models.runtimes.onnx_torch import OnnxModule, load_module

log = logging.getLogger(__name__)

FP16_MODES = ("autocast", "half")
# How cuDNN picks convolution kernels (process-wide): "on" its heuristics per
# new shape, "benchmark" time every candidate once per shape, "off" torch's own
# kernels. Per-shape choice is paid once per bucket at load (runtimes/buckets.py).
CUDNN_MODES = ("on", "benchmark", "off")
MAX_GRAPHS = 96  # captured shapes per model version (buckets need ~60)


def resolve_device(device: str) -> str:
    """``cpu`` / ``cuda`` / ``cuda:N`` -> the device actually used (CPU if no such GPU)."""
    if device == "cpu":
        return "cpu"
    if device == "cuda" or device.startswith("cuda:"):
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if torch.cuda.is_available() and index < torch.cuda.device_count():
            return f"cuda:{index}"
        log.warning("device %s requested but torch sees no such CUDA device; using CPU", device)
        return "cpu"
    raise OcrqError(f"unknown device {device!r}; use cpu, cuda or cuda:N", device=device)


class TorchRuntime:
    backend = "torch"

    def __init__(
        self,
        onnx_path: Path | str,
        *,
        device: str = "cpu",
        threads: int = 0,
        fp16: bool = False,
        fp16_mode: str = "autocast",
        compile: bool = False,
        compile_mode: str | None = None,
        warmup_shape: tuple[int, ...] | None = None,
        graphs: bool = False,
        cudnn: str = "off",
        ctc_topk: int = 0,
    ) -> None:
        """``graphs``: a CUDA graph per input shape (CUDA only); ``ctc_topk``: a
        recogniser's output reduced to its top-k form (stages/ctc.py), 0: full."""
        self.ctc_topk, onnx_path = ctc_topk, Path(onnx_path)
        if threads > 0:
            torch.set_num_threads(threads)  # process-wide, like ORT's intra-op pool
        self.device = resolve_device(device)
        cuda = self.device.startswith("cuda")
        self._init_graphs(cudnn if cuda else "")
        self.fp16 = fp16 and cuda
        if fp16 and not self.fp16:
            log.warning("fp16 needs CUDA; %s runs in fp32 on CPU", onnx_path)
        if fp16_mode not in FP16_MODES:
            raise OcrqError(f"unknown fp16_mode {fp16_mode!r}; use {' or '.join(FP16_MODES)}")
        # "autocast": convolutions and matmuls in fp16 (weights stored in fp16), the
        # rest in fp32: the accurate default. "half": everything in fp16 (less accurate:
        # on CPU-emulated fp16, 3 of 972 words of 10 receipts changed vs 0).
        self.fp16_mode = fp16_mode if self.fp16 else ""
        self.dtype = torch.float16 if self.fp16_mode == "half" else torch.float32
        if self.device.startswith("cuda") and not self.fp16:
            # cuDNN runs fp32 convolutions in TF32 by default (10-bit mantissa);
            # fp32 here promises ONNX Runtime's text, so ask for IEEE fp32.
            # Process-wide: fp16 is the fast path, fp32 the exact one.
            _ieee_fp32_convolutions()
        module = load_module(onnx_path, label=_label(onnx_path))
        module.to(self.device)
        if self.fp16_mode == "half":
            module.half()
        elif self.fp16_mode == "autocast":
            module.half_weights()
        self.module: OnnxModule = module
        self.compiled = compile
        # dynamic=True: one graph for all batch sizes and widths instead of a
        # recompile per new shape. compile_mode e.g. "reduce-overhead" (CUDA
        # graphs: no per-op launch cost, one graph per input shape).
        self._forward: Any = (
            torch.compile(module, dynamic=True, mode=compile_mode) if compile else module
        )
        self.warmup_shape = warmup_shape or _warmup_shape(onnx_path, module.input_dims)
        self.run(np.zeros(self.warmup_shape, np.float32))  # first call pays the setup, not a job
        if compile and self.warmup_shape[0] == 1:
            # Dynamo specialises size 1: batch 1 and batch >1 are two graphs; build both now.
            self.run(np.zeros((2, *self.warmup_shape[1:]), np.float32))
        # After that first (eager) pass: graphs are captured per bucket shape from now on.
        self.graphs = graphs and cuda and not compile
        self._pool = new_pool() if self.graphs else None

    def _init_graphs(self, cudnn: str) -> None:
        if cudnn:
            _cudnn_mode(cudnn)
        self.graphs = False
        self.graph_error = ""  # why capturing failed (then every pass runs eagerly)
        self._captured: dict[tuple[str, tuple[int, ...]], CapturedPass] = {}
        self._pool: object = None
        self._lock = threading.Lock()  # one pass at a time through the pinned buffers
        self._affine: dict[tuple[object, ...], tuple[torch.Tensor, torch.Tensor, bool]] = {}

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self.graphs:
            captured = self._graph("f32", batch.shape, torch.float32, self._net)
            if captured is not None:
                with self._lock:
                    return captured.run(batch)
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device)
            return self._net(x).cpu().numpy()

    def run_images(self, images: np.ndarray, spec: Spec) -> np.ndarray:
        """uint8 NHWC pixels; on CUDA they travel as bytes and are normalised there."""
        if not self.device.startswith("cuda"):
            return self.run(normalize(images, spec))
        images = np.ascontiguousarray(images, dtype=np.uint8)

        def net(x: torch.Tensor) -> torch.Tensor:
            return self._net(self._normalise(x, spec))

        if self.graphs:
            captured = self._graph("u8", images.shape, torch.uint8, net)
            if captured is not None:
                with self._lock:
                    return captured.run(images)
        with torch.inference_mode():
            return net(torch.from_numpy(images).to(self.device)).cpu().numpy()

    warm_images = run_images  # a first pass per shape chooses kernels and captures

    def _net(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised float32 NCHW on the device -> float32 output on the device."""
        with torch.autocast("cuda", torch.float16, enabled=self.fp16_mode == "autocast",
                            cache_enabled=False):
            y = self._forward(x.to(self.dtype))
        y = y.float()
        if self.ctc_topk and y.dim() == 3:  # what decoding reads, not 1 MB a line
            top_p, top_i = y.topk(self.ctc_topk, dim=-1)
            y = torch.cat([top_p, top_i.float(), y[..., -1:]], dim=-1)
        return y

    def _normalise(self, x: torch.Tensor, spec: Spec) -> torch.Tensor:
        """The host's ``inputs.normalize`` on the device: the same multiply, then add."""
        key = tuple(sorted((k, str(v)) for k, v in spec.items()))
        if key not in self._affine:
            a, b = affine(spec)
            self._affine[key] = (torch.from_numpy(a).to(self.device),
                                 torch.from_numpy(b).to(self.device), rgb(spec))
        a_t, b_t, flip = self._affine[key]
        if flip:
            x = x.flip(-1)
        y = x.float() * a_t
        y = y + b_t
        return y.permute(0, 3, 1, 2).contiguous()

    def _graph(self, kind: str, shape: tuple[int, ...], dtype: torch.dtype,
               fn: Any) -> CapturedPass | None:
        """The captured pass for this shape (captured now if new), None: run eagerly."""
        key = (kind, tuple(int(d) for d in shape))
        captured = self._captured.get(key)
        if captured is not None or self.graph_error or len(self._captured) >= MAX_GRAPHS:
            return captured
        with self._lock:
            if key in self._captured or self.graph_error:
                return self._captured.get(key)
            try:
                with torch.no_grad():
                    captured = CapturedPass(fn, key[1], dtype, self.device, self._pool)
            except Exception as exc:  # an op that cannot be captured: eager from now on
                self.graph_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("%s: CUDA graph capture failed, running eagerly: %s",
                            self.module.label, self.graph_error)
                torch.cuda.synchronize(self.device)
                return None
            self._captured[key] = captured
            return captured

    def graph_stats(self) -> dict[str, object]:
        return {"graphs": len(self._captured), "graph_error": self.graph_error,
                "replays": sum(c.replays for c in self._captured.values())}

    def close(self) -> None:
        self._captured.clear()
        self._forward = None
        self.module = None  # type: ignore[assignment]
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def __repr__(self) -> str:
        return f"TorchRuntime({self.module.label if self.module else '-'}, {self.device}, " \
               f"{'fp16 ' + self.fp16_mode if self.fp16 else 'fp32'}" \
               f"{', compiled' if self.compiled else ''})"


def gpu_memory_mib(device: str) -> dict[str, float | None]:
    """Memory of this process on ``device`` in MiB: torch's view and NVML's (None if unknown).

    ``nvml_process_used`` includes the CUDA context and every other library's
    allocations; ``peak_allocated`` is torch's since the last
    ``torch.cuda.reset_peak_memory_stats``.
    """
    if not device.startswith("cuda"):
        return {}
    index = torch.device(device).index or 0
    out: dict[str, float | None] = {
        "allocated": torch.cuda.memory_allocated(index) / 2**20,
        "peak_allocated": torch.cuda.max_memory_allocated(index) / 2**20,
        "reserved": torch.cuda.memory_reserved(index) / 2**20,
        "nvml_process_used": None,
    }
    try:
        used = next((g.used_bytes for g in process_memory().gpus if g.index == index), None)
        out["nvml_process_used"] = used / 2**20 if used else None
    except Exception as exc:  # NVML refused (permissions in a container): torch's view only
        log.debug("NVML unavailable: %s", exc)
    return out


def _cudnn_mode(mode: str) -> None:
    if mode not in CUDNN_MODES:
        raise OcrqError(f"unknown cudnn mode {mode!r}; use {', '.join(CUDNN_MODES)}")
    torch.backends.cudnn.enabled = mode != "off"
    torch.backends.cudnn.benchmark = mode == "benchmark"


def _ieee_fp32_convolutions() -> None:
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        conv.fp32_precision = "ieee"  # torch >= 2.9
    else:
        torch.backends.cudnn.allow_tf32 = False


def _label(path: Path) -> str:
    # Repository layout <root>/<model>/<version>/model.onnx -> "model 'str' version 1 (path)"
    if path.parent.name.isdigit():
        return f"model {path.parent.parent.name!r} version {path.parent.name} ({path})"
    return str(path)


def _warmup_shape(path: Path, dims: tuple[int | None, ...]) -> tuple[int, ...]:
    """A valid input shape: static graph dims, else the version's manifest input spec.

    Dynamic sizes the manifest does not fix default to two multiples of its
    ``multiple`` (detection needs multiples of 32) or 64.
    """
    spec: dict[str, Any] = {}
    manifest = path.parent / "manifest.json"
    if manifest.is_file():
        spec = json.loads(manifest.read_text(encoding="utf-8")).get("input", {})
    fallback = 2 * int(spec.get("multiple") or 32)
    shape = [d or 0 for d in dims] if dims else [0, 3, 0, 0]
    shape[0] = 1
    if len(shape) == 4:
        shape[2] = shape[2] or int(spec.get("height") or fallback)
        shape[3] = shape[3] or int(spec.get("width") or fallback)
    return tuple(s or fallback for s in shape)
