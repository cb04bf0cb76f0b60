"""The demo plug-in (tests/plugins/ocrq_demo_plugin) installed for a test: with pip,
into a folder that this process and the worker processes put on their path."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ocrq.models.builtin import catalog

PLUGIN_SRC = Path(__file__).resolve().parent / "plugins" / "ocrq_demo_plugin"


def pip_install(target: Path) -> Path:
    """``pip install`` the demo plug-in into ``target`` (no network: no deps, no isolation)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = shutil.copytree(PLUGIN_SRC, Path(tmp) / PLUGIN_SRC.name)  # builds leave files
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        "--no-build-isolation", "--target", str(target), str(src)],
                       check=True, timeout=120)
    return target


@contextmanager
def plugin_on_path(target: Path) -> Iterator[Path]:
    """This process sees the plug-in while the block runs; the catalog is re-read."""
    sys.path.insert(0, str(target))
    catalog.cache_clear()
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        for name in [m for m in sys.modules if m.startswith("ocrq_demo_plugin")]:
            del sys.modules[name]
        catalog.cache_clear()
