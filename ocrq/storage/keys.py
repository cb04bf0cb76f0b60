"""API keys: each names one business (bid). Only a hash of the token is stored.

A token reads ``ocrq_<key id>_<secret>``: the key id (16 hex characters) is the
row's primary key and what operators see in listings and revoke by; the secret
is 32 random bytes. The row keeps ``sha256(token)`` and nothing else of it, so
the token is shown once, when it is created, and never again.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ocrq.storage.db import Database
from ocrq.storage.models import ApiKey, utcnow

PREFIX = "ocrq"
_TOKEN = re.compile(r"^ocrq_([0-9a-f]{16})_[A-Za-z0-9_-]{20,}$")
LABEL_MAX: int = ApiKey.__table__.c.label.type.length  # type: ignore[attr-defined]
BID_MAX: int = ApiKey.__table__.c.bid.type.length  # type: ignore[attr-defined]


def hash_token(token: str) -> str:
    """sha256 hex of the whole token (see :class:`~ocrq.storage.models.ApiKey` for why
    a fast unsalted hash is enough for a random token)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_key(db: Database, bid: str, label: str = "") -> tuple[ApiKey, str]:
    """A new key for ``bid``: (its row, the token). The token is not kept anywhere."""
    if not bid or len(bid) > BID_MAX:
        raise ValueError(f"bid must be 1 to {BID_MAX} characters")
    if len(label) > LABEL_MAX:
        raise ValueError(f"label must be at most {LABEL_MAX} characters")
    for _ in range(3):  # 64-bit ids: a clash is all but impossible, but cheap to survive
        key_id = secrets.token_hex(8)
        token = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        row = ApiKey(id=key_id, bid=bid, secret_hash=hash_token(token), label=label,
                     created_at=utcnow())
        try:
            with db.session() as s:
                s.add(row)
            return row, token
        except IntegrityError:
            continue
    raise RuntimeError("could not allocate a unique key id")


def key_id_of(token: str) -> str | None:
    """The key id a well-formed token names, else None."""
    m = _TOKEN.match(token)
    return m.group(1) if m else None


def authenticate(db: Database, token: str) -> ApiKey | None:
    """The active (not revoked) key whose token this is, else None."""
    key_id = key_id_of(token)
    if key_id is None:
        return None
    with db.session() as s:
        row = s.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return None
    # Constant-time: the comparison's duration says nothing about the stored hash.
    if not hmac.compare_digest(row.secret_hash, hash_token(token)):
        return None
    return row


def get_key(db: Database, key_id: str) -> ApiKey | None:
    with db.session() as s:
        return s.get(ApiKey, key_id)


def list_keys(db: Database, bid: str | None = None) -> list[ApiKey]:
    """Every key (or one business's), oldest first; revoked ones included."""
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if bid is not None:
        query = query.where(ApiKey.bid == bid)
    with db.session() as s:
        return list(s.scalars(query))


def revoke_key(db: Database, key_id: str) -> ApiKey | None:
    """Revoke a key from now on (a second revoke keeps the first time); None if unknown."""
    with db.session() as s:
        s.execute(update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
                  .values(revoked_at=utcnow()))
    return get_key(db, key_id)
