"""Images live in Redis under a key with a TTL; task messages carry only the key."""

from __future__ import annotations

from redis import Redis
from redis.client import Pipeline

from ocrq.errors import OcrqError


class ImageExpired(OcrqError):
    """The image blob of a job is gone (TTL elapsed or deleted) before a stage read it."""

    code = "image_expired"


class BlobStore:
    prefix = "ocrq:img:"

    def __init__(self, redis: Redis, ttl_s: int) -> None:
        self.redis = redis
        self.ttl_s = ttl_s

    def key_for(self, job_id: str) -> str:
        return f"{self.prefix}{job_id}"

    def put(self, job_id: str, data: bytes, pipe: Pipeline | None = None) -> str:
        """Store the image; with ``pipe``, only queued on it (the caller executes it)."""
        key = self.key_for(job_id)
        (pipe if pipe is not None else self.redis).set(key, data, ex=self.ttl_s)
        return key

    def get(self, key: str) -> bytes:
        data = self.redis.get(key)
        if data is None:
            raise ImageExpired(f"image {key} is no longer stored (expired or deleted)", key=key)
        return bytes(data)  # type: ignore[arg-type]

    def delete(self, key: str) -> None:
        self.redis.delete(key)
