"""CPU worker: ONNX Runtime on CPU; serves the cpu queue (and webhooks) by default.

    python -m workers.cpu [-Q cpu,webhooks] [-c N]
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ocrq.settings import Settings
from workers.common import parser, run_worker


def main(argv: Sequence[str] | None = None) -> None:
    s = Settings.from_env()
    args = parser("cpu", f"{s.queue_cpu},{s.queue_webhooks}", os.cpu_count() or 1).parse_args(argv)
    run_worker("cpu", s, args)


if __name__ == "__main__":
    main()
