"""Who is calling /v1/jobs: ``Authorization: Bearer <API key>`` names a business (bid).

With ``OCRQ_AUTH=keys`` every job endpoint resolves the caller's bid from its key
(``ocrq keys create BID``) before anything else is read, parsed or fetched; the
views pass that bid down, so another business's job is simply not found. With
``OCRQ_AUTH=none`` (single tenant, local use) there is no caller bid and the request
names its own, as before keys existed; that is logged as a warning at start-up.

A process remembers a valid key for ``OCRQ_AUTH_CACHE_S`` seconds (:class:`KeyCache`).

The model-changing endpoints keep their own token (OCRQ_ADMIN_TOKEN, web/models.py).
"""

from __future__ import annotations

import logging
import threading
import time

from flask import Flask, current_app, request

from ocrq.settings import Settings
from ocrq.storage import keys
from web.errors import ApiError
from web.extensions import services

log = logging.getLogger(__name__)
CACHED_KEYS_MAX = 10_000  # far more than a deployment's live keys; bounds the memory


class KeyCache:
    """The bids of keys this process checked lately: sha256(token) -> (bid, until).

    A poll would otherwise cost a database query for its key (three round trips
    with the pool's ping and the commit: most of a poll's CPU). Only valid keys
    are kept, so a new key works at once; a revoked one is refused once its entry
    is ``ttl_s`` old.
    """

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._bids: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> str | None:
        hit = self._bids.get(digest)
        return hit[0] if hit is not None and hit[1] > time.monotonic() else None

    def put(self, digest: str, bid: str) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            self._bids.pop(digest, None)  # re-inserted last: the oldest go first
            while len(self._bids) >= CACHED_KEYS_MAX:
                self._bids.pop(next(iter(self._bids)))
            self._bids[digest] = (bid, time.monotonic() + self.ttl_s)


def enabled() -> bool:
    return services().settings.auth == "keys"


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None if it has none."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def caller_bid() -> str | None:
    """The bid of the request's API key; None when keys are off. 401 without a valid key."""
    if not enabled():
        return None
    token = bearer_token(request.headers.get("Authorization", ""))
    if token is None:
        raise ApiError("unauthorized", "send 'Authorization: Bearer <API key>' "
                       "(an operator creates one with `ocrq keys create BID`)")
    cache: KeyCache = current_app.extensions["ocrq_keys"]
    digest = keys.hash_token(token)
    bid = cache.get(digest)
    if bid is None:
        key = keys.authenticate(services().db, token)
        if key is None:
            raise ApiError("unauthorized", "invalid or revoked API key")
        bid = key.bid
        cache.put(digest, bid)
    return bid


def job_bid(caller: str | None, requested: str | None) -> str | None:
    """The bid a new job gets: the key's. A ``bid`` field may only repeat it (else 400)."""
    if caller is None:
        return requested  # OCRQ_AUTH=none: the request's own (or the default bid)
    if requested and requested != caller:
        raise ApiError("bid_mismatch", f"this API key belongs to bid {caller!r}: leave "
                       "'bid' out or send that one")
    return caller


def warn_if_open(settings: Settings) -> bool:
    """Log a warning when the job endpoints take any caller's word for its bid."""
    if settings.auth != "none":
        return False
    log.warning("OCRQ_AUTH=none: /v1/jobs needs no API key and any caller may act as any "
                "business (bid); set OCRQ_AUTH=keys unless this is a single-tenant, "
                "local deployment")
    return True


def init_app(app: Flask) -> None:
    settings: Settings = app.config["OCRQ_SETTINGS"]
    app.extensions["ocrq_keys"] = KeyCache(settings.auth_cache_s)
    warn_if_open(settings)
