"""CUDA graphs: one captured forward pass per input shape, replayed without Python.

Why (issue 11): the graph executor (runtimes/onnx_torch) dispatches a few
hundred small ops per pass from Python; on a GPU that host work, not the
kernels, set the pace. A captured graph replays every kernel of the pass with
one call. Each graph owns pinned host buffers for its input and output, so the
copies are asynchronous DMA (``non_blocking``) and cost no extra host copy.

A graph is only valid for the exact shape it was captured at, hence the shape
buckets (runtimes/buckets.py). Graphs of one model share a memory pool: their
replays never overlap (the runtime's lock), and every output is copied to the
host before the next replay, so reusing each other's scratch memory is safe.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


class CapturedPass:
    """One forward pass at one input shape, captured on ``device``."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, ...],
                 dtype: torch.dtype, device: str, pool: object) -> None:
        self.shape = shape
        self.host_in = torch.empty(shape, dtype=dtype, pin_memory=True)
        self.dev_in = torch.zeros(shape, dtype=dtype, device=device)
        # Warm-up on a side stream, as torch requires before a capture: lazy
        # initialisation (cuBLAS handles, cuDNN plans) must not be captured.
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(2):
                fn(self.dev_in)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=pool):
            self.dev_out = fn(self.dev_in)
        self.host_out = torch.empty(self.dev_out.shape, dtype=self.dev_out.dtype,
                                    pin_memory=True)
        self.replays = 0

    def run(self, array: np.ndarray) -> np.ndarray:
        """Input in, output out; the caller serialises calls (one lock per model)."""
        np.copyto(self.host_in.numpy(), array, casting="no")
        self.dev_in.copy_(self.host_in, non_blocking=True)
        self.graph.replay()
        self.host_out.copy_(self.dev_out, non_blocking=True)
        torch.cuda.current_stream(self.dev_in.device).synchronize()
        self.replays += 1
        return self.host_out.numpy().copy()


def new_pool() -> object:
    return torch.cuda.graph_pool_handle()
