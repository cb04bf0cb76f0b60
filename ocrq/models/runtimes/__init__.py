from ocrq.models.runtimes.base import RUNTIMES, Runtime, load_runtime

__all__ = ["RUNTIMES", "Runtime", "load_runtime"]
