"""Signed webhooks, ``image_url`` downloads and the outbound URL guard.

Signature: ``X-Ocrq-Signature: v1=<hex>`` where hex is HMAC-SHA256 with the
business's secret over ``f"{timestamp}.".encode() + body`` and the timestamp
(Unix seconds) is sent in ``X-Ocrq-Timestamp``. A receiver checks it with::

    from ocrq.webhooks import verify
    ok = verify(secret, request.body,
                request.headers["X-Ocrq-Timestamp"], request.headers["X-Ocrq-Signature"])

``verify`` compares in constant time and rejects timestamps older than
``tolerance_s`` (replays). The same guard (:func:`check_url`) protects
``callback_url`` and ``image_url``: loopback, private, link-local (cloud
metadata 169.254.169.254 included), multicast, reserved and unspecified
addresses are refused unless ``settings.allow_private_urls``.

Modules: :mod:`.signing` (signatures, per-business secrets), :mod:`.guard`
(URL checks, bounded name lookups), :mod:`.transport` (pinned connections
under a wall-clock deadline, raw capped reads), :mod:`.client` (``deliver``,
``fetch``).
"""

from ocrq.webhooks.client import Attempt, backoff_s, deliver, fetch
from ocrq.webhooks.guard import BadURL, FetchFailed, UnsafeURL, check_url
from ocrq.webhooks.signing import (
    DEFAULT_SECRET,
    HEADER_EVENT_ID,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    parse_secrets,
    secret_for,
    secret_problem,
    sign,
    signed_headers,
    verify,
    warn_if_default_secret,
)

__all__ = [
    "DEFAULT_SECRET", "HEADER_EVENT_ID", "HEADER_SIGNATURE", "HEADER_TIMESTAMP", "Attempt",
    "BadURL",
    "FetchFailed", "UnsafeURL", "backoff_s", "check_url", "deliver", "fetch", "parse_secrets",
    "secret_for", "secret_problem", "sign", "signed_headers", "verify",
    "warn_if_default_secret",
]
