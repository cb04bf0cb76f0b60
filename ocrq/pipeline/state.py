"""Per-process service handles (DB, Redis, stores, plans) and, in workers, the Engine.

Nothing is created at import time. Workers call :func:`configure` before the
pool forks and :func:`init_process` in each child (worker_process_init), so the
models load once per worker process and DB/Redis sockets are never shared
across a fork.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import numpy as np
from redis import Redis

from ocrq.plans import Plans
from ocrq.settings import Settings
from ocrq.storage import BlobStore, Database, StatusCache

log = logging.getLogger(__name__)


class Services:
    """The handles both the web process and the workers use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.database_url)

    @cached_property
    def redis(self) -> Redis:
        return Redis.from_url(self.settings.redis_url)

    @cached_property
    def blobs(self) -> BlobStore:
        return BlobStore(self.redis, self.settings.image_ttl_s)

    @cached_property
    def cache(self) -> StatusCache:
        return StatusCache(self.redis, self.settings.result_cache_ttl_s)

    @cached_property
    def plans(self) -> Plans:
        return Plans.from_settings(self.settings)




class WorkerState(Services):
    """Services plus the Engine; one per worker process."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._engine: Any = None
        self._lock = threading.Lock()
        self._images: OrderedDict[str, np.ndarray] = OrderedDict()
        self._images_lock = threading.Lock()

    def image(self, key: str, name: str) -> np.ndarray:
        """The decoded image of a blob key.

        The stages of one job often run in the same process one after the other,
        so the last few decoded images are kept; the blob must still exist (an
        expired or deleted image fails the stage either way).
        """
        from ocrq.images import decode_image

        with self._images_lock:  # GPU workers run tasks on threads
            cached = self._images.get(key)
        if cached is not None:
            if not self.redis.exists(key):
                with self._images_lock:
                    self._images.pop(key, None)
                self.blobs.get(key)  # raises ImageExpired
            with self._images_lock:
                if key in self._images:
                    self._images.move_to_end(key)
            return cached
        image = decode_image(self.blobs.get(key), name, self.settings)
        image.flags.writeable = False  # shared between stages: nobody may modify it
        with self._images_lock:
            self._images[key] = image
            while len(self._images) > 4:
                self._images.popitem(last=False)
        return image

    @property
    def engine(self) -> Any:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    from ocrq.engine import Engine  # heavy: onnxruntime, cv2

                    self._engine = Engine.from_settings(self.settings)
        return self._engine

    def step_recognize(self, image: np.ndarray, rotation: int, polygons: Sequence[Any],
                       flipped: Sequence[bool] | None,
                       languages: Sequence[str] | None = None) -> dict[str, Any]:
        # Cross-job batching (GPU worker) happens below this, in BatchingRuntime.
        return self.engine.step_recognize(image, rotation, polygons, flipped,
                                          languages=languages)


_settings: Settings | None = None
_state: WorkerState | None = None
_preload = True


def configure(settings: Settings, preload: bool = True) -> None:
    """Set the settings this process (and its forked children) use; ``preload``:
    load the models when a worker process starts (False for webhook-only workers)."""
    global _settings, _state, _preload
    _settings, _state, _preload = settings, None, preload


def get_state() -> WorkerState:
    global _state
    if _state is None:
        _state = WorkerState(_settings or Settings.from_env())
    return _state


def init_process(preload: bool | None = None) -> WorkerState:
    """Fresh handles after fork, and the models loaded once for this process."""
    global _state
    if _state is not None:
        _state.db.dispose()  # inherited pool: never reuse the parent's sockets
    _state = WorkerState(_settings or Settings.from_env())
    if _preload if preload is None else preload:
        _state.engine.preload()
        log.info("worker process models ready")
    return _state
