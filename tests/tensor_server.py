"""The real tensor server process for tests: started as the GPU worker's supervisor
starts it (``python -m workers.tensor_server``) and waited for until it answers HELLO."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from ocrq.models.serving.client import hello
from ocrq.models.serving.protocol import TensorServerError

ROOT = Path(__file__).resolve().parents[1]


def server_env(model_root: Path) -> dict[str, str]:
    """This environment without any OCRQ_ setting, one thread, no batching wait."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCRQ_")}
    return {**env, "OCRQ_MODEL_ROOT": str(model_root), "OCRQ_THREADS": "1",
            "OCRQ_BATCH_WAIT_MS": "0"}


def spawn(sock: Path, env: dict[str, str], start_s: float = 60) -> subprocess.Popen[bytes]:
    """The server on ``sock``, once it answers HELLO (within ``start_s``)."""
    p = subprocess.Popen([sys.executable, "-m", "workers.tensor_server", "--socket", str(sock)],
                         cwd=ROOT, env=env)
    deadline = time.monotonic() + start_s
    while True:
        try:
            hello(str(sock), timeout_s=2)
            return p
        except (OSError, TensorServerError):
            assert p.poll() is None, "tensor server exited at start"
            assert time.monotonic() < deadline, "tensor server did not answer HELLO"
            time.sleep(0.05)
