"""Per-process service handles (DB, Redis, stores, plans, router) and, in workers,
the Engine.

Nothing is created at import time. The worker's lifecycle (workers/lifecycle.py)
calls :func:`configure` before the pool forks and :func:`init_process` in each
pool process, so the models load once per worker process and DB/Redis sockets
are never shared across a fork.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np
from redis import Redis

from ocrq.documents import render_page, split_key
from ocrq.engine import Engine
from ocrq.images import decode_image
from ocrq.models.registry import Desired
from ocrq.pipeline.routing import Router
from ocrq.plans import Plans
from ocrq.settings import Settings
from ocrq.storage import BlobStore, Database, StatusCache

log = logging.getLogger(__name__)
# One Redis command or pipeline (no blocking command uses this client): a hung
# server costs a request this long, not a thread forever.
REDIS_IO_TIMEOUT_S = 10.0
DECODED_IMAGES_KEPT = 4  # per process: the stages of one job often run back to back


class Services:
    """The handles both the web process and the workers use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.database_url)

    @cached_property
    def redis(self) -> Redis:
        return Redis.from_url(self.settings.redis_url, socket_timeout=REDIS_IO_TIMEOUT_S,
                              socket_connect_timeout=REDIS_IO_TIMEOUT_S)

    @cached_property
    def blobs(self) -> BlobStore:
        return BlobStore(self.redis, self.settings.image_ttl_s)

    @cached_property
    def cache(self) -> StatusCache:
        return StatusCache(self.redis, self.settings.result_cache_ttl_s)

    @cached_property
    def plans(self) -> Plans:
        return Plans.from_settings(self.settings)

    @cached_property
    def router(self) -> Router:
        return Router(self.settings, self.redis)


class WorkerState(Services):
    """Services plus the Engine; one per worker process."""

    def __init__(self, settings: Settings, desired: Desired | None = None) -> None:
        super().__init__(settings)
        self.desired = desired  # model versions the registry starts on (read before fork)
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self._images: OrderedDict[str, np.ndarray] = OrderedDict()
        self._images_lock = threading.Lock()

    def image(self, key: str, name: str) -> np.ndarray:
        """The decoded image of a blob key.

        The stages of one job often run in the same process one after the other,
        so the last few decoded images are kept; the blob must still exist (an
        expired or deleted image fails the stage either way).
        """
        blob, page = split_key(key)  # a document's page: its document's blob
        with self._images_lock:  # GPU workers run tasks on threads
            cached = self._images.get(key)
        if cached is not None:
            if not self.redis.exists(blob):
                with self._images_lock:
                    self._images.pop(key, None)
                self.blobs.get(blob)  # raises ImageExpired
            with self._images_lock:
                if key in self._images:
                    self._images.move_to_end(key)
            return cached
        data = self.blobs.get(blob)
        image = (decode_image(data, name, self.settings) if page is None
                 else render_page(data, page, name, self.settings))
        image.flags.writeable = False  # shared between stages: nobody may modify it
        with self._images_lock:
            self._images[key] = image
            while len(self._images) > DECODED_IMAGES_KEPT:
                self._images.popitem(last=False)
        return image

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = Engine.from_settings(self.settings, desired=self.desired)
        return self._engine


@dataclass
class _Process:
    """What this process was configured with, and its state once built."""

    settings: Settings | None = None
    preload: bool = True
    desired: Desired | None = None
    state: WorkerState | None = None


_process = _Process()


def configure(settings: Settings, preload: bool = True) -> None:
    """Set the settings this process (and its forked children) use; ``preload``:
    load the models when a worker process starts (False for webhook-only workers)."""
    global _process
    _process = _Process(settings, preload)


def set_boot_desired(desired: Desired | None) -> None:
    """Desired model versions read before the pool forks: registries start on them."""
    _process.desired = desired


def settings() -> Settings:
    if _process.settings is None:
        _process.settings = Settings.from_env()
    return _process.settings


def get_state() -> WorkerState:
    if _process.state is None:
        _process.state = WorkerState(settings(), _process.desired)
    return _process.state


def init_process() -> WorkerState:
    """Fresh handles after fork, and the models loaded once for this process."""
    if _process.state is not None:
        _process.state.db.dispose()  # inherited pool: never reuse the parent's sockets
    _process.state = WorkerState(settings(), _process.desired)
    if settings().threads > 0:
        # OpenCV's pool defaults to every core in every worker process; with one
        # process per core it only oversubscribes them (a labelling call took 730 µs
        # of wall time under load with 2 threads against 130 µs with 1).
        cv2.setNumThreads(settings().threads)
    if _process.preload:
        _process.state.engine.preload()
        log.info("worker process models ready")
    return _process.state
