"""The compiled module: scheduled steps, buffers for constants, intermediates freed early.

:func:`schedule` turns the final node list into :class:`Step` s: each input
is read from the run-time environment, a registered buffer (float constants,
so ``.to(device)`` and ``.half()`` move them) or a baked-in Python value, and
every intermediate is dropped right after its last use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ocrq.errors import ModelLoadError
from ocrq.models.runtimes.onnx_torch.node import Fn, Node, Value
from ocrq.models.runtimes.onnx_torch.ops import build_kernel

ENV, BUF, PY = 0, 1, 2  # where a step argument comes from


@dataclass(frozen=True)
class Step:
    op: str
    fn: Fn
    args: tuple[tuple[int, Any], ...]  # (ENV, name) | (BUF, buffer name) | (PY, value)
    outputs: tuple[str, ...]
    free: tuple[str, ...]  # intermediates whose last use is this step


class OnnxModule(torch.nn.Module):
    """Runs the scheduled steps; one tensor in, one tensor out."""

    def __init__(
        self,
        label: str,
        input_name: str,
        output_name: str,
        steps: list[Step],
        buffers: dict[str, torch.Tensor],
        input_dims: tuple[int | None, ...] = (),
    ) -> None:
        super().__init__()
        self.label = label
        self.input_dims = input_dims  # static sizes from the graph; None = dynamic
        self.input_name = input_name
        self.output_name = output_name
        self.steps = steps
        for name, tensor in buffers.items():
            self.register_buffer(name, tensor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env: dict[str, Any] = {self.input_name: x}
        bufs = self._buffers
        for step in self.steps:
            args = [
                env[v] if kind == ENV else bufs[v] if kind == BUF else v for kind, v in step.args
            ]
            out = step.fn(*args)
            if len(step.outputs) == 1:
                env[step.outputs[0]] = out
            else:
                env.update(zip(step.outputs, out, strict=True))
            for name in step.free:
                del env[name]
        return env[self.output_name]

    def half_weights(self) -> None:
        """Store the constant operands of Conv/ConvTranspose/MatMul in fp16.

        For ``torch.autocast``: those ops run in fp16 anyway, and weights that
        already are fp16 are not cast again on every call.
        """
        for step in self.steps:
            if step.op in ("Conv", "ConvTranspose", "MatMul"):
                for kind, name in step.args:
                    if kind == BUF and self._buffers[name].is_floating_point():
                        self._buffers[name] = self._buffers[name].half()

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for step in self.steps:
            counts[step.op] = counts.get(step.op, 0) + 1
        return counts


def schedule(
    nodes: list[Node], consts: dict[str, Value], input_name: str, output: str, label: str
) -> tuple[list[Step], dict[str, torch.Tensor]]:
    """The nodes as steps with their kernels built, and the float constants as buffers."""
    buffers: dict[str, torch.Tensor] = {}
    buffer_of: dict[str, str] = {}
    last_use: dict[str, int] = {}
    arg_lists: list[list[tuple[int, Any]]] = []
    for k, n in enumerate(nodes):
        args: list[tuple[int, Any]] = []
        for name in n.inputs:
            if not name:
                args.append((PY, None))
            elif name in consts and isinstance(consts[name], torch.Tensor):
                if name not in buffer_of:
                    buffer_of[name] = f"c{len(buffers)}"
                    buffers[buffer_of[name]] = consts[name]  # type: ignore[assignment]
                args.append((BUF, buffer_of[name]))
            elif name in consts:
                args.append((PY, consts[name]))
            else:
                args.append((ENV, name))
                last_use[name] = k
        while args and args[-1] == (PY, None):
            args.pop()  # trailing optional inputs: let the kernel's defaults apply
        arg_lists.append(args)
    steps = []
    for k, (n, args) in enumerate(zip(nodes, arg_lists, strict=True)):
        # Free what this step reads for the last time, and outputs nobody reads.
        free = {v for kind, v in args if kind == ENV and last_use[v] == k}
        free |= {o for o in n.outputs if o not in last_use}
        free.discard(output)
        steps.append(Step(n.op_type, build_kernel(n, label), tuple(args), tuple(n.outputs),
                          tuple(sorted(free))))
    if input_name not in last_use and nodes:
        raise ModelLoadError(f"{label}: the graph input is never used", model=label)
    return steps, buffers
