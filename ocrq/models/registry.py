"""Loaded model versions of one process, with status and atomic swap.

Swapping the active version never changes the model under a running call
(a :class:`LoadedModel` is immutable): it finishes on the version it started
with, and the next call picks up the new one.

Versions are chosen in this order: an explicit ``get(name, version)``, the
versions pinned for the current bid (a canary, see :meth:`ModelRegistry.for_bid`),
the globally active version, the desired version (:class:`Desired`), the latest
version in the repository.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterable

from ocrq.errors import BackendUnavailable, ModelLoadError, OcrqError
from ocrq.models.builtin import model_spec, serving_specs
from ocrq.models.pins import BidPins, Desired, current_pins, pinned_versions
from ocrq.models.repository import ModelRepository
from ocrq.models.runtime_setup import build_runtime, close_runtime, runtime_place
from ocrq.models.runtimes import Runtime
from ocrq.models.states import LoadedModel, Status, VersionState
from ocrq.settings import Settings

log = logging.getLogger(__name__)


class ModelRegistry(BidPins):
    """Per-process registry; thread-safe. Loads lazily unless preloaded."""

    def __init__(self, repository: ModelRepository, settings: Settings,
                 desired: Desired | None = None) -> None:
        """``desired``: versions to serve first. A worker's main process reads them
        before it forks, so registries in the children preload the right versions
        directly instead of loading the latest and swapping (twice the memory at boot)."""
        self.repository = repository
        self.settings = settings
        self._lock = threading.RLock()
        self._active: dict[str, LoadedModel] = {}
        self._loaded: dict[tuple[str, int], LoadedModel] = {}
        self._states: dict[tuple[str, int], VersionState] = {}
        self._wanted: dict[str, int] = {}  # desired global versions; absent = latest
        self._bid_pins: dict[str, dict[str, int]] = {}
        self._key_locks: dict[tuple[str, int], threading.Lock] = {}
        self._first_locks: dict[str, threading.Lock] = {}
        if desired is not None:
            self._wanted.update(desired.versions)
            self._bid_pins = {b: dict(p) for b, p in desired.bids.items()}

    @classmethod
    def from_settings(cls, settings: Settings, desired: Desired | None = None
                      ) -> ModelRegistry:
        repo = ModelRepository(settings.model_root)
        repo.ensure_defaults(serving_specs(settings.second_reading))
        return cls(repo, settings, desired)

    # --- reading -------------------------------------------------------------
    def get(self, name: str, version: int | None = None) -> LoadedModel:
        """The model to use for ``name`` now (loads it on first use).

        ``version`` (or a pin of the current bid) selects a specific version,
        loaded beside the active one; if that version cannot load, the active
        version serves instead so a bad canary never fails a job.
        """
        if version is None:
            pins = current_pins()
            if pins:
                version = pins.get(name)
        if version is not None:
            return self._get_version(name, version)
        model = self._active.get(name)  # dict read is atomic; no lock on the hot path
        if model is not None:
            return model
        # One first load per name at a time, under the name's own lock: holding
        # self._lock across the load (which takes the version's key lock, then
        # self._lock) deadlocked against a load() already holding that key lock.
        with self._lock:
            first = self._first_locks.setdefault(name, threading.Lock())
        with first:
            model = self._active.get(name)
            if model is not None:
                return model
            model = self._load_first_good(name)
            with self._lock:
                # activate() may have swapped a version in meanwhile: that one serves.
                active = self._active.setdefault(name, model)
                self._refresh_flags(name)
        if active is not model:
            self._unload_if_unused(name, model.version)
        return active

    def _load_first_good(self, name: str) -> LoadedModel:
        """The wanted (else latest) version; if it cannot load, the newest one that can.

        A worker that starts while the desired version is broken on disk still
        serves the previous version (FAILED stays visible in ``states``).
        """
        model_spec(name)
        version = self._wanted.get(name) or self.repository.latest(name)
        try:
            return self.load(name, version)
        except BackendUnavailable:
            raise  # every version would fail alike (the tensor server is away): give back
        except OcrqError as first:
            for older in sorted(self.repository.versions(name), reverse=True):
                state = self._states.get((name, older))
                if older == version or (state and state.status is Status.FAILED):
                    continue
                try:
                    model = self.load(name, older)
                except BackendUnavailable:
                    raise  # the backend went away meanwhile: give back, as above
                except OcrqError:
                    continue
                log.warning("model %s v%s unusable (%s); serving v%s instead",
                            name, version, first, older)
                return model
            raise

    def _get_version(self, name: str, version: int) -> LoadedModel:
        active = self._active.get(name)
        if active is not None and active.version == version:
            return active
        model = self._loaded.get((name, version))
        if model is not None:
            return model
        state = self._states.get((name, version))
        if state is not None and state.status is Status.FAILED:
            return self._active_or_load(name) if current_pins() else self._raise_failed(state)
        try:
            model = self.load(name, version)
        except BackendUnavailable:
            raise  # not the pinned version's fault: its step is given back, not re-routed
        except OcrqError:
            if current_pins():  # a pinned (canary) version: fall back to the active one
                return self._active_or_load(name)
            raise
        self._refresh_flags(name)
        return model

    def _active_or_load(self, name: str) -> LoadedModel:
        with pinned_versions(None):
            return self.get(name)

    @staticmethod
    def _raise_failed(state: VersionState) -> LoadedModel:
        raise ModelLoadError(
            f"model {state.name!r} version {state.version} failed to load: {state.reason}",
            model=state.name, version=state.version,
        )

    def loaded(self) -> list[LoadedModel]:
        """Every loaded version (active, canaries, not yet unloaded)."""
        with self._lock:
            return list(self._loaded.values())

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
        model_spec(name)
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # one load per version at a time; others wait and share it
            with self._lock:
                if key in self._loaded:
                    return self._loaded[key]
                before = self._states.get(key)
                self._set_state(key, Status.LOADING)
            try:
                manifest = self.repository.manifest(name, version)
                self.repository.verify(manifest)
                runtime = build_runtime(name, manifest.weights_path, self.settings)
            except BackendUnavailable:
                # The backend is away (the tensor server restarting), not the version
                # broken: marked FAILED it would be skipped, or a canary's traffic
                # sent to the active version, long after the backend is back.
                with self._lock:
                    # A READY or FAILED state is put back; LOADING or UNLOADING ones
                    # may be stale by now (the version unloaded meanwhile): dropped.
                    if before is None or before.status in (Status.LOADING,
                                                           Status.UNLOADING):
                        self._states.pop(key, None)
                    else:
                        self._states[key] = before
                    self._refresh_flags(name)
                raise
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
            device, backend = runtime_place(runtime, manifest.runtime)
            with self._lock:
                self._loaded[key] = model
                self._set_state(key, Status.READY, device=device, backend=backend)
        log.info("loaded %s v%s on %s (%s)", name, version, device, backend)
        return model

    def activate(self, name: str, version: int, *, keep_previous: bool = False) -> LoadedModel:
        """Load ``version`` beside the current one, then swap atomically.

        If loading fails the previous version stays active and the error is
        raised. The previous version is unloaded unless ``keep_previous`` or a
        bid still pins it; calls already holding it finish on it.
        """
        model = self.load(name, version)
        with self._lock:
            previous = self._active.get(name)
            self._wanted[name] = version
            self._active[name] = model
            self._refresh_flags(name)
        log.info("activated %s v%s (was %s)", name, version,
                 previous.version if previous else "none")
        if previous is not None and previous.version != version and not keep_previous:
            self._unload_if_unused(name, previous.version)
        return model

    def apply(self, desired: Desired) -> dict[str, str]:
        """Bring this process to ``desired``; returns {"name vN": error} for failures.

        Models this process never loaded only get their wanted version recorded
        (they load lazily on first use); loaded ones are swapped now.
        """
        errors: dict[str, str] = {}
        with self._lock:
            self._bid_pins = {b: dict(p) for b, p in desired.bids.items() if p}
            for name, version in desired.versions.items():
                if name not in self._active:
                    self._wanted[name] = version
        for name, version in desired.versions.items():
            current = self._active.get(name)
            if current is None or current.version == version:
                continue
            try:
                self.activate(name, version)
            except OcrqError as exc:
                errors[f"{name} v{version}"] = exc.message
        # Canary versions of models in use load now, not inside the first job.
        for pins in desired.bids.values():
            for name, version in pins.items():
                if name in self._active and (name, version) not in self._loaded:
                    try:
                        self.load(name, version)
                    except OcrqError as exc:
                        errors[f"{name} v{version}"] = exc.message
        with self._lock:
            for name in {n for n, _ in self._states}:
                self._refresh_flags(name)
            unused = [k for k in self._loaded if not self._in_use(*k)]
        for name, version in unused:
            self._unload_if_unused(name, version)
        return errors

    def unload(self, name: str, version: int) -> None:
        key = (name, version)
        with self._lock:
            active = self._active.get(name)
            if active is not None and active.version == version:
                raise OcrqError(
                    f"model {name!r} version {version} is active; activate another first"
                )
            model = self._loaded.pop(key, None)
            if model is None:
                if key in self._states and self._states[key].status is not Status.FAILED:
                    self._states.pop(key, None)
                return
            self._set_state(key, Status.UNLOADING, device=model.runtime.device,
                            backend=model.runtime.backend)
        # Calls already holding ``model`` keep a reference; when the last of
        # them drops it the runtime is closed (torch gives its cached GPU
        # memory back there) and the state goes away.
        weakref.finalize(model, self._release, key, model.runtime)
        del model

    def _release(self, key: tuple[str, int], runtime: Runtime) -> None:
        try:
            close_runtime(runtime)
        except Exception:  # closing must never break the swap that unloaded it
            log.exception("closing %s v%s failed", *key)
        self._forget(key)

    def _forget(self, key: tuple[str, int]) -> None:
        with self._lock:
            state = self._states.get(key)
            if state is not None and state.status is Status.UNLOADING:
                del self._states[key]

    def _unload_if_unused(self, name: str, version: int) -> None:
        with self._lock:
            if self._in_use(name, version):
                return
            self.unload(name, version)

    def _in_use(self, name: str, version: int) -> bool:
        active = self._active.get(name)
        if active is not None and active.version == version:
            return True
        return any(p.get(name) == version for p in self._bid_pins.values())

    def _set_state(self, key: tuple[str, int], status: Status, **kw: str) -> None:
        self._states[key] = VersionState(key[0], key[1], status, **kw)
        self._refresh_flags(key[0])

    def _refresh_flags(self, name: str) -> None:
        with self._lock:
            active = self._active.get(name)
            for (n, v), state in self._states.items():
                if n != name:
                    continue
                state.active = active is not None and active.version == v
                state.bids = tuple(sorted(b for b, p in self._bid_pins.items() if p.get(n) == v))

    def _fail(self, key: tuple[str, int], reason: str) -> None:
        with self._lock:
            self._set_state(key, Status.FAILED, reason=reason)
        log.error("model %s v%s failed to load: %s", key[0], key[1], reason)
