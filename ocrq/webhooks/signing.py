"""Webhook signatures and the secrets they are made with.

Each business (bid) may have its own secret (``OCRQ_WEBHOOK_SECRETS``,
``bid=secret,bid2=secret2``); the others sign with ``OCRQ_WEBHOOK_SECRET``.
Workers that send webhooks refuse to start with the shipped default secret
unless ``OCRQ_ALLOW_DEFAULT_SECRET`` says so (:func:`secret_problem`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time

from ocrq.settings import Settings

HEADER_TIMESTAMP = "X-Ocrq-Timestamp"
HEADER_SIGNATURE = "X-Ocrq-Signature"
# The same for every attempt of one job's final webhook ("<job id>.<status>"): a
# receiver that got it before (a redelivery, a retry after a lost answer) can tell.
HEADER_EVENT_ID = "X-Ocrq-Event-Id"
DEFAULT_SECRET = "change-me"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def signed_headers(secret: str, body: bytes, now: float | None = None,
                   event_id: str = "") -> dict[str, str]:
    ts = int(now if now is not None else time.time())
    headers = {
        "Content-Type": "application/json",
        HEADER_TIMESTAMP: str(ts),
        HEADER_SIGNATURE: sign(secret, ts, body),
    }
    if event_id:
        headers[HEADER_EVENT_ID] = event_id
    return headers


def verify(secret: str, body: bytes, timestamp: str, signature: str,
           tolerance_s: int = 300, now: float | None = None) -> bool:
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


def parse_secrets(spec: str) -> dict[str, str]:
    """``bid=secret,bid2=secret2`` as a dict; ValueError (naming the entry's bid,
    never its secret) for an entry without a bid or a secret, or a bid twice."""
    out: dict[str, str] = {}
    for n, item in enumerate(spec.split(","), 1):
        if not item.strip():
            continue
        bid, sep, secret = item.partition("=")
        bid, secret = bid.strip(), secret.strip()
        if not sep or not bid or not secret:
            raise ValueError(f"OCRQ_WEBHOOK_SECRETS entry {n} ({bid or '?'}): "
                             "expected bid=secret")
        if bid in out:
            raise ValueError(f"OCRQ_WEBHOOK_SECRETS names bid {bid!r} twice")
        out[bid] = secret
    return out


def secret_for(settings: Settings, bid: str) -> str:
    """The key a webhook of business ``bid`` is signed with."""
    return parse_secrets(settings.webhook_secrets).get(bid, settings.webhook_secret)


def secret_problem(settings: Settings) -> str | None:
    """Why webhooks must not be signed with these settings, or None."""
    try:
        per_bid = parse_secrets(settings.webhook_secrets)
    except ValueError as exc:
        return str(exc)
    if settings.allow_default_secret:
        return None
    weak = sorted(bid for bid, secret in per_bid.items() if secret == DEFAULT_SECRET)
    if settings.webhook_secret == DEFAULT_SECRET or weak:
        which = f"the secret of {', '.join(weak)}" if weak else "OCRQ_WEBHOOK_SECRET"
        return (f"{which} is the shipped default {DEFAULT_SECRET!r}: anyone could forge "
                "webhooks its receivers would trust. Set a secret of your own "
                "(OCRQ_WEBHOOK_SECRET, and OCRQ_WEBHOOK_SECRETS=bid=secret,... per "
                "business), or OCRQ_ALLOW_DEFAULT_SECRET=1 for a throw-away setup")
    return None


def warn_if_default_secret(secret: str) -> bool:
    """Log a warning when webhooks would be signed with the shipped default key."""
    if secret != DEFAULT_SECRET:
        return False
    logging.getLogger("ocrq.webhooks").warning(
        "OCRQ_WEBHOOK_SECRET is the default %r: receivers cannot trust the signatures; "
        "set a secret of your own", DEFAULT_SECRET)
    return True
