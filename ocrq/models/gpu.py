"""Memory held by one model process: GPU memory through NVML, resident memory on CPU.

GPU figures are NVML's per-process used memory on each device against the
device total — the numbers operators read in ``nvidia-smi``. On a machine
without NVIDIA hardware (or without the driver library) the result carries a
``gpu_note`` saying so instead of raising, and the status table prints it.
"""

from __future__ import annotations

import os
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil
import pynvml  # nvidia-ml-py: loads libnvidia-ml only in nvmlInit()

_nvml_lock = threading.Lock()
_nvml_state: dict[str, Any] = {}  # {"ok": bool, "reason": str}; NVML is initialised once


@dataclass(frozen=True)
class GpuUsage:
    index: int
    name: str
    used_bytes: int | None  # this process on this device; None when NVML cannot tell
    total_bytes: int


@dataclass(frozen=True)
class ProcessMemory:
    pid: int
    rss_bytes: int
    gpus: tuple[GpuUsage, ...] = ()
    gpu_note: str = ""  # set when there is no GPU information (why)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["gpus"] = [asdict(g) for g in self.gpus]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProcessMemory:
        return cls(
            pid=int(data["pid"]),
            rss_bytes=int(data["rss_bytes"]),
            gpus=tuple(GpuUsage(**g) for g in data.get("gpus", ())),
            gpu_note=str(data.get("gpu_note", "")),
            extra=dict(data.get("extra", {})),
        )


def _nvml() -> Any | None:
    """The initialised pynvml module, or None (reason kept in ``_nvml_state``)."""
    with _nvml_lock:
        if not _nvml_state:
            try:
                pynvml.nvmlInit()
                _nvml_state.update(ok=True, reason="")
            except Exception as exc:  # ImportError or NVMLError_LibraryNotFound/DriverNotLoaded
                _nvml_state.update(ok=False, reason=str(exc) or type(exc).__name__)
        if not _nvml_state["ok"]:
            return None
        return pynvml


def nvml_unavailable_reason() -> str:
    """Empty when NVML works here; otherwise the marker shown in the GPU columns."""
    if _nvml() is not None:
        return ""
    return f"no NVIDIA GPU (NVML unavailable: {_nvml_state['reason']})"


def process_memory(pid: int | None = None) -> ProcessMemory:
    """Resident memory and per-device GPU memory of ``pid`` (default: this process)."""
    pid = os.getpid() if pid is None else pid
    rss = psutil.Process(pid).memory_info().rss
    nvml = _nvml()
    if nvml is None:
        return ProcessMemory(pid, rss, gpu_note=nvml_unavailable_reason())
    gpus = []
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        total = int(nvml.nvmlDeviceGetMemoryInfo(handle).total)
        name = nvml.nvmlDeviceGetName(handle)
        name = name.decode() if isinstance(name, bytes) else str(name)
        used: int | None = None
        found = False
        for proc in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if proc.pid == pid:
                found = True
                # usedGpuMemory is None when the driver cannot attribute memory
                # (e.g. inside some containers without the host PID namespace).
                used = None if proc.usedGpuMemory is None else int(proc.usedGpuMemory)
        if found:
            gpus.append(GpuUsage(index, name, used, total))
    note = "" if gpus else "no CUDA context on any GPU"
    return ProcessMemory(pid, rss, tuple(gpus), gpu_note=note)


def human_bytes(n: int | None) -> str:
    if n is None:
        return "n/a"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit in ("B", "KiB") else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def format_memory(mem: ProcessMemory) -> str:
    """One cell: ``rss 512.0 MiB; gpu0 1.2 GiB / 80.0 GiB`` or the no-GPU marker."""
    parts = [f"rss {human_bytes(mem.rss_bytes)}"]
    if mem.gpus:
        parts += [f"gpu{g.index} {human_bytes(g.used_bytes)} / {human_bytes(g.total_bytes)}"
                  for g in mem.gpus]
    elif mem.gpu_note:
        parts.append(mem.gpu_note)
    return "; ".join(parts)
