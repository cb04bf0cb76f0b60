"""The op table: one builder per supported ONNX op, each turning a :class:`Node` into ``fn``.

The builders live by family (:mod:`.math_ops`, :mod:`.conv_ops`,
:mod:`.shape_ops`); :mod:`.node` says what a builder sees and what its ``fn``
must handle.
"""

from __future__ import annotations

from collections.abc import Callable

from ocrq.errors import ModelLoadError
from ocrq.models.runtimes.onnx_torch.conv_ops import CONV_BUILDERS, FUSED_BUILDERS
from ocrq.models.runtimes.onnx_torch.math_ops import MATH_BUILDERS
from ocrq.models.runtimes.onnx_torch.node import Fn, Node
from ocrq.models.runtimes.onnx_torch.shape_ops import SHAPE_BUILDERS

BUILDERS: dict[str, Callable[[Node], Fn]] = dict(
    sorted({**MATH_BUILDERS, **CONV_BUILDERS, **SHAPE_BUILDERS}.items())
)
SUPPORTED_OPS = tuple(sorted(BUILDERS))


def build_kernel(node: Node, label: str) -> Fn:
    """The node's ``fn``; a builder's refusal becomes a :class:`ModelLoadError` naming the node."""
    builder = BUILDERS.get(node.op_type) or FUSED_BUILDERS[node.op_type]
    try:
        return builder(node)
    except (NotImplementedError, KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(
            f"{label}: cannot build ONNX node {node.name!r} ({node.op_type}): {exc}",
            model=label, op=node.op_type,
        ) from exc
