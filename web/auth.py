"""Who is calling /v1/jobs: ``Authorization: Bearer <API key>`` names a business (bid).

With ``OCRQ_AUTH=keys`` every job endpoint resolves the caller's bid from its key
(``ocrq keys create BID``) before anything else is read, parsed or fetched; the
views pass that bid down, so another business's job is simply not found. With
``OCRQ_AUTH=none`` (single tenant, local use) there is no caller bid and the request
names its own, as before keys existed; that is logged as a warning at start-up.

The model-changing endpoints keep their own token (OCRQ_ADMIN_TOKEN, web/models.py).
"""

from __future__ import annotations

import logging

from flask import Flask, request

from ocrq.settings import Settings
from ocrq.storage import keys
from web.errors import ApiError
from web.extensions import services

log = logging.getLogger(__name__)


def enabled() -> bool:
    return services().settings.auth == "keys"


def caller_bid() -> str | None:
    """The bid of the request's API key; None when keys are off. 401 without a valid key."""
    if not enabled():
        return None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError("unauthorized", "send 'Authorization: Bearer <API key>' "
                       "(an operator creates one with `ocrq keys create BID`)")
    key = keys.authenticate(services().db, token)
    if key is None:
        raise ApiError("unauthorized", "invalid or revoked API key")
    return key.bid


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
    warn_if_open(app.config["OCRQ_SETTINGS"])
