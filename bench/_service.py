"""A deployment of the service on this machine, for the benches that need one.

Settings over a temporary folder (a SQLite file, a model repository) and two
Redis db numbers, worker processes started and stopped by
:mod:`ocrq.localcluster` (as ``ocrq serve`` starts them), jobs submitted
in-process the way the HTTP intake submits them, and one-line test images drawn
with OpenCV's own font (no font files, no ../shared needed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import _common  # noqa: F401  before the other dependencies: checks that ocrq is installed

# isort: split
import cv2
import numpy as np
from celery import Celery
from redis import Redis

from ocrq.cli.serve import upgrade
from ocrq.localcluster import LocalCluster, wait_redis
from ocrq.models.control import ModelControl
from ocrq.models.repository import ModelRepository
from ocrq.pipeline.app import create_celery_app
from ocrq.pipeline.jobs import submit
from ocrq.pipeline.state import Services
from ocrq.pipeline.work import document
from ocrq.settings import Settings

TERMINAL = {"succeeded", "failed", "cancelled"}


@dataclass
class Deployment:
    settings: Settings
    cluster: LocalCluster
    services: Services
    app: Celery

    @classmethod
    def create(cls, tmp: Path, redis: str = "redis://127.0.0.1:6379", broker_db: int = 2,
               store_db: int = 3, **overrides: Any) -> Deployment:
        """Settings from the environment with ``overrides``; both Redis dbs flushed, the
        SQLite file migrated, version 1 of every model materialised in ``tmp``."""
        s = Settings.from_env(
            broker_url=f"{redis}/{broker_db}", redis_url=f"{redis}/{store_db}",
            database_url=f"sqlite:///{tmp / 'ocrq.sqlite3'}", model_root=tmp / "models",
            **overrides)
        wait_redis(s.broker_url, timeout_s=5)  # a clear message when Redis is not running
        for url in (s.broker_url, s.redis_url):
            Redis.from_url(url).flushdb()
        upgrade(s.database_url)
        ModelRepository(s.model_root).ensure_defaults()
        return cls(s, LocalCluster(s, log_dir=tmp), Services(s), create_celery_app(s))

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cluster.stop()

    @property
    def repo(self) -> ModelRepository:
        return ModelRepository(self.settings.model_root)

    def control(self) -> ModelControl:
        return ModelControl(self.services.db, self.services.redis, self.repo)

    def submit(self, data: bytes, name: str = "line.png", *, bid: str | None = None,
               tid: str | None = None) -> str:
        doc, _ = submit(self.services, self.app, data, name, bid=bid, tid=tid)
        return str(doc["id"])

    def wait_jobs(self, ids: list[str], timeout_s: float = 600.0) -> dict[str, dict[str, Any]]:
        """Every job's final document; raises if one is still running at the deadline."""
        deadline = time.monotonic() + timeout_s
        done: dict[str, dict[str, Any]] = {}
        while len(done) < len(ids):
            for job_id in ids:
                doc = done.get(job_id) or document(self.services, job_id) or {}
                if doc.get("status") in TERMINAL:
                    done[job_id] = doc
            if len(done) < len(ids):
                if time.monotonic() > deadline:
                    raise SystemExit(f"{len(ids) - len(done)} of {len(ids)} jobs not finished "
                                     f"after {timeout_s:.0f} s (logs in the cluster's folder)")
                time.sleep(0.1)
        return done


def line_image(text: str, scale: float = 1.0) -> bytes:
    """``text`` in black on white as a PNG, one line in OpenCV's Hershey font.

    Words are drawn one by one two spaces apart: the font's own space is narrow
    enough for the recogniser to run words together ("Invoice 4711" came back
    as "lnvoice4711" when drawn in one call).
    """
    font, thickness, margin = cv2.FONT_HERSHEY_SIMPLEX, 2, 16
    sizes = [cv2.getTextSize(w, font, scale, thickness) for w in text.split()]
    gap = 2 * cv2.getTextSize(" ", font, scale, thickness)[0][0]
    height = max(h for (_, h), _ in sizes)
    below = max(baseline for _, baseline in sizes)
    width = sum(w for (w, _), _ in sizes) + gap * (len(sizes) - 1)
    image = np.full((height + below + 2 * margin, width + 2 * margin), 255, np.uint8)
    x = margin
    for word, ((w, _), _) in zip(text.split(), sizes, strict=True):
        cv2.putText(image, word, (x, margin + height), font, scale, 0, thickness, cv2.LINE_AA)
        x += w + gap
    ok, png = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return png.tobytes()
