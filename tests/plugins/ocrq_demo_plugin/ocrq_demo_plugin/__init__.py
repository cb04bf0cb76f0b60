"""Example ocrq plug-in: how much of the page is ink, and how many lines were read.

- Model kind ``ink``: version 1 is a rules file made by code (``_make``), pinned
  by its sha256 like any weight file; ``_load`` turns a version into the object
  the stage gets. A better version is one ``ocrq models import ink FILE`` away.
- Stage ``inkstats``: adds ``ink`` to the result document.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ocrq.plugins import ModelSpec, Plugin, StageInput, StageSpec

RULES = {"dark_below": 128}
RULES_SHA256 = "3a3bc7fd3b858562f10892526113e5c8f1bfefac790a17ee5504d56f8dea8634"


def _make() -> bytes:
    return json.dumps(RULES, sort_keys=True).encode("utf-8")


def _load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


def _inkstats(page: StageInput) -> dict[str, Any]:
    rules = page.model("ink").runtime
    gray = page.image.mean(axis=2)
    return {
        "dark_share": round(float((gray < rules["dark_below"]).mean()), 4),
        "lines": len(page.page.get("lines", [])),
        "label": str(page.options.get("label", "")),
    }


plugin = Plugin(
    name="demo",
    kinds=(ModelSpec(name="ink", role="share of dark pixels (rules)", sha256=RULES_SHA256,
                     input={}, package="ocrq-demo-plugin", package_version="0.1.0",
                     weights="rules.json", runtime="json", make=_make, load=_load),),
    stages=(StageSpec("inkstats", _inkstats, models=("ink",), hardware="cpu",
                      result_key="ink"),),
)
