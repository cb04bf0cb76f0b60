"""The runtime interface: one ONNX-exported network, numpy in, numpy out.

Every model ocrq ships has exactly one input and one output (NCHW float32 in,
a float32 tensor out), so the interface is a single ``run``. Stages only see
this interface; a backend (ONNX Runtime, torch) is chosen by settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ocrq.errors import UnknownRuntime
from ocrq.models.runtimes.onnxruntime import OnnxRuntime

# The module, not its class: client.py imports runtimes.buckets, which runs this
# package's __init__ (and so this module) first when client.py is imported first.
from ocrq.models.serving import client as remote
from ocrq.settings import Settings


@runtime_checkable
class Runtime(Protocol):
    backend: str  # "onnxruntime" | "torch"
    device: str  # "cpu" | "cuda:0" ...

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run one forward pass on a float32 NCHW batch; returns float32."""
        ...

    def close(self) -> None: ...


RUNTIMES = ("onnxruntime", "torch", "remote")


def load_runtime(
    backend: str,
    onnx_path: Path,
    *,
    device: str = "cpu",
    threads: int = 0,
    fp16: bool = False,
    torch_compile: bool = False,
    graph_rewrite: bool = True,
    cuda_graphs: bool = False,
    cudnn: str = "off",
    tensor_socket: str = "",
    ctc_topk: int = 0,
    tensor_timeout_s: float | None = None,
    tensor_wait_s: float | None = None,
) -> Runtime:
    """Create a runtime for ``onnx_path``; torch is imported only when asked for.

    ``remote``: the forward passes run in the tensor server on ``tensor_socket``
    ("": ``OCRQ_TENSOR_SOCKET``), which loads the model itself (models/serving/); its
    timeout and wait for a gone server: those given, else the environment's.
    """
    if backend == "remote":
        s = Settings.from_env()
        return remote.RemoteRuntime(
            tensor_socket or s.tensor_socket, onnx_path,
            timeout_s=s.tensor_timeout_s if tensor_timeout_s is None else tensor_timeout_s,
            wait_s=s.tensor_wait_s if tensor_wait_s is None else tensor_wait_s)
    if backend == "onnxruntime":
        return OnnxRuntime(onnx_path, device=device, threads=threads, rewrite=graph_rewrite)
    if backend == "torch":
        # Optional heavy dependency: this module imports torch (the torch/gpu extras).
        from ocrq.models.runtimes.torch import TorchRuntime

        return TorchRuntime(
            onnx_path, device=device, threads=threads, fp16=fp16, compile=torch_compile,
            graphs=cuda_graphs, cudnn=cudnn, ctc_topk=ctc_topk,
        )
    raise UnknownRuntime(
        f"unknown runtime {backend!r}; known runtimes: {', '.join(RUNTIMES)}",
        known=list(RUNTIMES),
    )
