"""CPU worker: ONNX Runtime on CPU; serves the cpu queue (and webhooks) by default.

    python -m workers.cpu [-Q cpu,webhooks] [-c N]
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ocrq.settings import Settings
from workers.common import parser, run_worker, split_threads


def main(argv: Sequence[str] | None = None) -> None:
    s = Settings.from_env()
    # A prefork child runs one task at a time: no other call could join a batch,
    # so waiting for one (OCRQ_BATCH_WAIT_MS, meant for GPU workers) is pure latency.
    s = s.with_(batch_wait_ms=0.0)
    args = parser("cpu", f"{s.queue_cpu},{s.queue_webhooks}", os.cpu_count() or 1).parse_args(argv)
    run_worker("cpu", split_threads(s, args.concurrency), args)


if __name__ == "__main__":
    main()
