"""The tensor server's loaded models: keyed by weights path, refcounted by connections.

A path is hostile input (any local process that can open the socket sends
one): it must resolve inside ``settings.model_root`` and be the weights file
of a ``<root>/<name>/<version>/`` folder whose manifest names it; the
checksums are verified before anything is loaded. Unreferenced models stay
loaded for the next connection (a feeder process restarting, a canary coming
back) up to ``tensor_max_models``; beyond that the least recently used go.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocrq.errors import OcrqError
from ocrq.models.repository import Manifest, ModelRepository
from ocrq.models.runtime_setup import build_runtime, close_runtime, runtime_place
from ocrq.settings import Settings

log = logging.getLogger("ocrq.tensor_server")


class RefusedPath(OcrqError):
    code = "model_path_refused"


@dataclass
class ServedModel:
    path: str
    manifest: Manifest
    runtime: Any
    load_s: float
    refs: int = 0
    last_used: float = field(default_factory=time.monotonic)

    def facts(self) -> dict[str, Any]:
        device, backend = runtime_place(self.runtime, self.manifest.runtime)
        facts: dict[str, Any] = {
            "name": self.manifest.name, "version": self.manifest.version,
            "device": device, "backend": backend, "load_s": round(self.load_s, 3),
            "refs": self.refs}
        buckets = getattr(self.runtime, "buckets", None)
        if buckets is not None and hasattr(buckets, "to_dict"):
            # The feeders pad to the bucket themselves: host work spread over many cores.
            facts["buckets"] = buckets.to_dict()
        return facts

    def stats(self) -> dict[str, Any]:
        own = getattr(self.runtime, "stats", None)
        return {**self.facts(), "stats": own() if own is not None else {}}


class ModelTable:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = Path(settings.model_root).resolve()
        self.repository = ModelRepository(self.root)
        self._lock = threading.Lock()
        self._models: dict[str, ServedModel] = {}
        self._loading: dict[str, threading.Lock] = {}

    def manifest_for(self, raw: str) -> Manifest:
        """The manifest whose weights file ``raw`` is, or :class:`RefusedPath`."""
        try:
            path = Path(raw).resolve(strict=True)
        except (OSError, RuntimeError, ValueError):
            raise RefusedPath(f"model path {raw!r} does not exist") from None
        if not path.is_relative_to(self.root):
            raise RefusedPath(f"model path {raw!r} is outside the model root {self.root}")
        parts = path.relative_to(self.root).parts
        if len(parts) != 3 or not parts[1].isdigit():
            raise RefusedPath(f"model path {raw!r} is not <root>/<name>/<version>/<weights>")
        manifest = self.repository.manifest(parts[0], int(parts[1]))  # unknown name: raises
        if manifest.weights_path.resolve() != path:
            raise RefusedPath(f"model path {raw!r} is not the weights file of "
                              f"{manifest.name} v{manifest.version}")
        return manifest

    def acquire(self, raw: str) -> ServedModel:
        """The model for ``raw`` (loaded once, however many connections ask), refs + 1."""
        manifest = self.manifest_for(raw)
        key = str(manifest.weights_path.resolve())
        with self._lock:
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:  # one load per path; concurrent LOADs wait and share it
            with self._lock:
                model = self._models.get(key)
                if model is not None:
                    model.refs += 1
                    model.last_used = time.monotonic()
                    return model
            model = self._load(key, manifest)
            with self._lock:
                self._models[key] = model
                model.refs += 1
        self._evict()
        return model

    def _load(self, key: str, manifest: Manifest) -> ServedModel:
        t0 = time.perf_counter()
        self.repository.verify(manifest)
        # The same runtime a worker process would build (on a GPU: buckets warmed,
        # concurrent calls of every connection merged into shared passes).
        runtime = build_runtime(manifest.name, manifest.weights_path, self.settings)
        if not callable(getattr(runtime, "run", None)):
            close_runtime(runtime)
            raise RefusedPath(f"{manifest.name} v{manifest.version} is not a network "
                              "(its plug-in loads it in the worker, not here)")
        load_s = time.perf_counter() - t0
        device, backend = runtime_place(runtime, manifest.runtime)
        log.info("LOAD %s v%s on %s (%s) in %.2f s", manifest.name, manifest.version,
                 device, backend, load_s)
        return ServedModel(key, manifest, runtime, load_s)

    def get(self, key: str) -> ServedModel:
        with self._lock:
            model = self._models[key]
            model.last_used = time.monotonic()
            return model

    def release(self, key: str) -> None:
        with self._lock:
            model = self._models.get(key)
            if model is not None:
                model.refs = max(0, model.refs - 1)
        self._evict()

    def _evict(self) -> None:
        with self._lock:
            idle = sorted((m for m in self._models.values() if m.refs == 0),
                          key=lambda m: m.last_used)
            extra = len(self._models) - max(0, self.settings.tensor_max_models)
            gone = idle[:max(0, extra)]
            for m in gone:
                del self._models[m.path]
        for m in gone:
            log.info("unloaded %s v%s (unused)", m.manifest.name, m.manifest.version)
            close_runtime(m.runtime)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            models = list(self._models.values())
        return {m.path: m.stats() for m in models}

    def close(self) -> None:
        with self._lock:
            models = list(self._models.values())
            self._models.clear()
        for m in models:
            close_runtime(m.runtime)
