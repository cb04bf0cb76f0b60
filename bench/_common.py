"""What every bench script shares: the check that ocrq is installed, and the
DATA_DIR / --limit arguments over ../shared/eval/dev.

Imported as ``_common`` (``python bench/<script>.py`` puts bench/ on sys.path),
before any other dependency. Benches run against the installed package
(scripts/bootstrap.sh does ``pip install -e .``), never against a checkout put
on sys.path: what they measure is what users install.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO / ".." / "shared" / "eval" / "dev"

if importlib.util.find_spec("ocrq") is None:
    print(f"ocrq is not installed for {sys.executable}: run scripts/bootstrap.sh, then "
          f".venv/bin/python bench/{Path(sys.argv[0]).name}", file=sys.stderr)
    raise SystemExit(2)


def data_parser(doc: str | None, limit: int | None = None,
                limit_help: str = "only the first N images") -> argparse.ArgumentParser:
    """A parser with the positional DATA_DIR and ``--limit``; ``doc``: the script's __doc__."""
    ap = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    ap.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--limit", type=int, default=limit, help=limit_help)
    return ap
