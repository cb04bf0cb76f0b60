"""Persistence: SQL system of record (jobs, results, webhook deliveries, model
activations, API keys), Redis blob store for images and Redis status cache for polling.

No Flask, no Celery here; callers pass in a :class:`Database` and Redis clients.
"""

from ocrq.storage.blobs import BlobStore, ImageExpired
from ocrq.storage.cache import StatusCache
from ocrq.storage.db import Database
from ocrq.storage.models import (
    TERMINAL,
    ApiKey,
    Badcase,
    Delivery,
    Job,
    JobStatus,
    ModelActivation,
    Result,
)

__all__ = [
    "TERMINAL",
    "ApiKey",
    "Badcase",
    "BlobStore",
    "Database",
    "Delivery",
    "ImageExpired",
    "Job",
    "JobStatus",
    "ModelActivation",
    "Result",
    "StatusCache",
]
