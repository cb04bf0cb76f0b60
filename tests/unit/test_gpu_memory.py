"""Process memory: RSS always; GPU through NVML, or a clear marker without NVIDIA hardware."""

from __future__ import annotations

import os
import subprocess
import sys

from ocrq.models.gpu import ProcessMemory, format_memory, nvml_unavailable_reason, process_memory


def test_rss_grows_with_allocation_and_gpu_columns_explain_themselves() -> None:
    # RSS growth is measured in a fresh interpreter: in the test process an
    # allocator may hand back pages an earlier test freed but kept resident.
    probe = (
        "import numpy as np\n"
        "from ocrq.models.gpu import process_memory\n"
        "before = process_memory().rss_bytes\n"
        "block = np.ones(64 * 1024 * 1024, dtype=np.uint8)  # 64 MiB, touched\n"
        "print(process_memory().rss_bytes - before)\n"
    )
    grown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           check=True, timeout=60)
    assert int(grown.stdout) > 48 * 1024 * 1024
    after = process_memory()
    assert after.pid == os.getpid()
    reason = nvml_unavailable_reason()
    cell = format_memory(after)
    assert cell.startswith("rss ")
    if reason:  # this machine has no NVIDIA driver: the GPU part says so
        assert reason.startswith("no NVIDIA GPU (NVML unavailable: ")
        assert after.gpus == () and reason in cell
    else:  # with a GPU and no CUDA context in this process, NVML lists nothing for it
        assert after.gpus == () or all(g.total_bytes > 0 for g in after.gpus)


def test_round_trip_through_json_dict() -> None:
    mem = process_memory()
    assert ProcessMemory.from_dict(mem.to_dict()) == mem


def test_other_process_memory() -> None:
    parent = process_memory(os.getppid())
    assert parent.pid == os.getppid() and parent.rss_bytes > 0
