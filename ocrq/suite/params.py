"""Rules and classic CV behind a versioned model (issue 13): the numbers a detector
reads are a JSON "weights" file made by code and pinned by its sha256 like any
weight file, so better-tuned numbers, or a learned model, replace them with
``ocrq models import KIND FILE``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ocrq.plugins import ModelSpec

log = logging.getLogger(__name__)


def params_model(name: str, role: str, params: dict[str, Any], sha256: str,
                 weights: str) -> ModelSpec:
    """Model kind ``name`` whose version 1 is ``params`` as JSON (sorted keys)."""

    def make() -> bytes:
        return json.dumps(params, sort_keys=True).encode("utf-8")

    def load(path: Path) -> dict[str, Any]:
        loaded = dict(json.loads(path.read_text(encoding="utf-8")))
        missing = sorted(set(params) - set(loaded))
        if missing:
            # A file written by an older ocrq (a repository's version 1 from before
            # a parameter was added) still loads: the numbers it lacks are this
            # ocrq's own, and the log says which.
            log.warning("%s parameters from %s lack %s: ocrq's built-in values used",
                        name, path, ", ".join(missing))
            loaded = {**{k: params[k] for k in missing}, **loaded}
        return loaded

    return ModelSpec(name=name, role=role, sha256=sha256, input={}, package="ocrq",
                     package_version="0.1.0", weights=weights, runtime="json", make=make,
                     load=load)
