"""The start every bench script shares: this checkout importable without
installing, and the DATA_DIR / --limit arguments over ../shared/eval/dev.

Imported as ``_common`` (``python bench/<script>.py`` puts bench/ on sys.path).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run from a checkout without installing
DEFAULT_DATA = REPO / ".." / "shared" / "eval" / "dev"


def data_parser(doc: str | None, limit: int | None = None,
                limit_help: str = "only the first N images") -> argparse.ArgumentParser:
    """A parser with the positional DATA_DIR and ``--limit``; ``doc``: the script's __doc__."""
    ap = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    ap.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--limit", type=int, default=limit, help=limit_help)
    return ap
