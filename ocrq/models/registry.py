"""Loaded model versions of one process, with status and atomic swap.

A :class:`LoadedModel` is immutable: a stage call holds a reference to one for
its whole duration, so swapping the active version never changes the model
under a running call — it finishes on the version it started with, and the
next call picks up the new one.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from ocrq.errors import ModelLoadError, OcrqError
from ocrq.models.repository import Manifest, ModelRepository, model_spec
from ocrq.models.runtimes import Runtime, load_runtime
from ocrq.settings import Settings

log = logging.getLogger(__name__)


class Status(enum.StrEnum):
    LOADING = "LOADING"
    READY = "READY"
    FAILED = "FAILED"
    UNLOADING = "UNLOADING"


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: int
    manifest: Manifest
    runtime: Runtime
    loaded_at: float = field(default_factory=time.time)
    # Stage helpers cache derived data here (e.g. the decoded charset).
    extras: dict[str, object] = field(default_factory=dict, compare=False)


@dataclass
class VersionState:
    name: str
    version: int
    status: Status
    reason: str = ""
    device: str = ""
    backend: str = ""
    since: float = field(default_factory=time.time)


class ModelRegistry:
    """Per-process registry; thread-safe. Loads lazily unless preloaded."""

    def __init__(self, repository: ModelRepository, settings: Settings) -> None:
        self.repository = repository
        self.settings = settings
        self._lock = threading.RLock()
        self._active: dict[str, LoadedModel] = {}
        self._loaded: dict[tuple[str, int], LoadedModel] = {}
        self._states: dict[tuple[str, int], VersionState] = {}
        self._wanted: dict[str, int] = {}  # pinned versions; absent = latest

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelRegistry:
        repo = ModelRepository(settings.model_root)
        repo.ensure_defaults()
        return cls(repo, settings)

    # --- reading -------------------------------------------------------------
    def get(self, name: str) -> LoadedModel:
        """The active version of ``name`` (loads it on first use)."""
        model = self._active.get(name)  # dict read is atomic; no lock on the hot path
        if model is not None:
            return model
        with self._lock:
            model = self._active.get(name)
            if model is None:
                model_spec(name)
                version = self._wanted.get(name) or self.repository.latest(name)
                model = self.load(name, version)
                self._active[name] = model
            return model

    def versions_in_use(self, names: Iterable[str]) -> dict[str, int]:
        return {n: self.get(n).version for n in names}

    def states(self) -> list[VersionState]:
        with self._lock:
            return sorted(self._states.values(), key=lambda s: (s.name, s.version))

    def preload(self, names: Iterable[str]) -> None:
        for name in names:
            self.get(name)

    # --- changing ------------------------------------------------------------
    def load(self, name: str, version: int) -> LoadedModel:
        """Load (or return the already loaded) ``name``/``version``; not activated."""
        key = (name, version)
        with self._lock:
            if key in self._loaded:
                return self._loaded[key]
            self._states[key] = VersionState(name, version, Status.LOADING)
        try:
            manifest = self.repository.manifest(name, version)
            self.repository.verify(manifest)
            runtime = load_runtime(
                self.settings.runtime,
                manifest.weights_path,
                device=self.settings.device,
                threads=self.settings.threads,
                fp16=self.settings.fp16,
            )
        except OcrqError as exc:
            self._fail(key, str(exc))
            raise
        except Exception as exc:  # a broken ONNX file raises backend-specific errors
            self._fail(key, f"{type(exc).__name__}: {exc}")
            raise ModelLoadError(
                f"model {name!r} version {version} failed to load: {exc}",
                model=name, version=version,
            ) from exc
        model = LoadedModel(name, version, manifest, runtime)
        with self._lock:
            self._loaded[key] = model
            self._states[key] = VersionState(
                name, version, Status.READY, device=runtime.device, backend=runtime.backend
            )
        log.info("loaded %s v%s on %s (%s)", name, version, runtime.device, runtime.backend)
        return model

    def activate(self, name: str, version: int) -> LoadedModel:
        """Load ``version`` beside the current one, then swap atomically.

        If loading fails the previous version stays active and the error is raised.
        """
        model = self.load(name, version)
        with self._lock:
            self._wanted[name] = version
            self._active[name] = model
        return model

    def unload(self, name: str, version: int) -> None:
        key = (name, version)
        with self._lock:
            active = self._active.get(name)
            if active is not None and active.version == version:
                raise OcrqError(f"model {name!r} version {version} is active; activate another first")
            model = self._loaded.pop(key, None)
            if model is None:
                self._states.pop(key, None)
                return
            self._states[key] = VersionState(name, version, Status.UNLOADING)
        # Calls already holding ``model`` keep a reference; the runtime is
        # freed when the last of them returns (we only drop ours).
        with self._lock:
            self._states.pop(key, None)

    def _fail(self, key: tuple[str, int], reason: str) -> None:
        with self._lock:
            self._states[key] = VersionState(key[0], key[1], Status.FAILED, reason=reason)
        log.error("model %s v%s failed to load: %s", key[0], key[1], reason)
