"""ONNX Runtime backend (CPU; CUDA provider when onnxruntime-gpu and a GPU exist)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ocrq.models.runtimes.graph_opt import optimize

log = logging.getLogger(__name__)


class OnnxRuntime:
    backend = "onnxruntime"

    def __init__(
        self, onnx_path: Path, *, device: str = "cpu", threads: int = 0, rewrite: bool = True
    ) -> None:
        import onnxruntime as ort  # heavy (~0.3 s): loaded with the first model, not on import

        model: bytes = Path(onnx_path).read_bytes()
        self.rewrites: dict[str, int] = {}
        if rewrite:
            model, self.rewrites = optimize(model)

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        if threads > 0:
            opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # No spinning: an idle intra-op thread (the detector's) that spins waiting for
        # its next pass burns the core that recognition's sessions and the Python
        # stages between passes need; off, a page read 8-10% faster on 2 cores
        # (BENCHMARKS.md). Each parallel operator then wakes its threads instead: on
        # hosts with many cores that cost has not been measured.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers: list[object] = ["CPUExecutionProvider"]
        self.device = "cpu"
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" in ort.get_available_providers():
                index = int(device.split(":", 1)[1]) if ":" in device else 0
                providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
                self.device = f"cuda:{index}"
            else:
                log.warning(
                    "device %s requested but onnxruntime has no CUDA provider; using CPU", device
                )
        self._session = ort.InferenceSession(model, sess_options=opts, providers=providers)
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        feed = {self._input: np.ascontiguousarray(batch, np.float32)}
        out = self._session.run([self._output], feed)
        return np.asarray(out[0])

    def close(self) -> None:
        # Dropping the session frees its arena; there is no explicit close in ORT.
        self._session = None  # type: ignore[assignment]
