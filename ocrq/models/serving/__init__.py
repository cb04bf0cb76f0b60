"""The tensor server (one process owns the GPU and runs forward passes only) and its
client runtime (``runtime=remote``, used by the GPU worker's feeder processes)."""
