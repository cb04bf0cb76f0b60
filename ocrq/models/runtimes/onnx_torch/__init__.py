"""ONNX -> torch: a small graph executor for the ops ocrq's models use.

Imports torch; only :mod:`ocrq.models.runtimes.torch` (itself imported lazily)
and tests import this package.
"""

from ocrq.models.runtimes.onnx_torch.graph import build_module, load_module
from ocrq.models.runtimes.onnx_torch.module import OnnxModule
from ocrq.models.runtimes.onnx_torch.node import Ints
from ocrq.models.runtimes.onnx_torch.ops import SUPPORTED_OPS

__all__ = ["SUPPORTED_OPS", "Ints", "OnnxModule", "build_module", "load_module"]
