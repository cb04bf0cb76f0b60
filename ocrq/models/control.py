"""Desired model versions (global and per-bid canaries) and change notifications.

The database holds the desired state as an append-only log of activations, so
a worker that starts later reads where the fleet should be, and ``rollback``
knows where it came from. Each change is also published on a Redis channel
carrying the whole desired state: worker processes apply it in the background
(:mod:`ocrq.cluster.agent`) and never query the database per task.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select

from ocrq.errors import ModelNotFound, OcrqError
from ocrq.models.builtin import model_spec
from ocrq.models.registry import Desired
from ocrq.models.repository import ModelRepository
from ocrq.storage.models import ModelActivation

if TYPE_CHECKING:
    from redis import Redis

    from ocrq.storage.db import Database

CHANNEL = "ocrq:models:desired"


def channel(redis: Redis) -> str:
    """The broadcast channel, scoped by Redis database number.

    Pub/sub ignores SELECT: without the number, two deployments (or test runs)
    sharing one Redis server on different databases would hear each other.
    """
    db = redis.connection_pool.connection_kwargs.get("db", 0)
    return f"{CHANNEL}:{db}"


class NothingToRollBack(OcrqError):
    code = "nothing_to_roll_back"


@dataclass(frozen=True)
class Change:
    model: str
    bid: str | None
    version: int | None
    previous_version: int | None

    def to_dict(self) -> dict[str, object]:
        return {"model": self.model, "bid": self.bid, "version": self.version,
                "previous_version": self.previous_version}


class ModelControl:
    """Reads and changes the desired state; publishes every change."""

    def __init__(self, db: Database, redis: Redis, repository: ModelRepository) -> None:
        self.db = db
        self.redis = redis
        self.repository = repository

    def desired(self) -> Desired:
        """Fold the activation log: the latest row per (model, bid) wins."""
        with self.db.session() as s:
            rows = s.execute(select(ModelActivation).order_by(ModelActivation.id)).scalars().all()
            latest = {(r.model, r.bid): r.version for r in rows}
        versions = {m: v for (m, b), v in latest.items() if b is None and v is not None}
        bids: dict[str, dict[str, int]] = {}
        for (m, b), v in latest.items():
            if b is not None and v is not None:
                bids.setdefault(b, {})[m] = v
        return Desired(versions, bids)

    def activate(self, model: str, version: int, *, bid: str | None = None,
                 actor: str = "", note: str = "") -> Change:
        """Record ``version`` as desired and tell the workers.

        Only existence is checked here; a version whose weights are corrupt is
        accepted and each worker reports it FAILED while the old one serves.
        """
        model_spec(model)
        present = self.repository.versions(model)
        if version not in present:
            raise ModelNotFound(
                f"model {model!r} version {version} not found under {self.repository.root}; "
                f"versions present: {present or 'none'}",
                model=model, version=version, versions=present,
            )
        return self._record(model, bid, version, actor, note)

    def rollback(self, model: str, *, bid: str | None = None, actor: str = "") -> Change:
        """Go back to the version active before the current one.

        For a bid this withdraws the canary (the bid follows the global version).
        """
        model_spec(model)
        if bid is not None:
            if self.desired().bids.get(bid, {}).get(model) is None:
                raise NothingToRollBack(f"bid {bid!r} has no canary version of {model!r}",
                                        model=model, bid=bid)
            return self._record(model, bid, None, actor, "rollback: canary withdrawn")
        with self.db.session() as s:
            current = s.execute(
                select(ModelActivation)
                .where(ModelActivation.model == model, ModelActivation.bid.is_(None))
                .order_by(ModelActivation.id.desc()).limit(1)
            ).scalar_one_or_none()
            previous = current.previous_version if current is not None else None
        if previous is None:
            raise NothingToRollBack(f"model {model!r} has no earlier activation to return to",
                                    model=model)
        return self._record(model, None, previous, actor, "rollback")

    def history(self, model: str | None = None, limit: int = 50) -> list[dict[str, object]]:
        with self.db.session() as s:
            q = select(ModelActivation).order_by(ModelActivation.id.desc()).limit(limit)
            if model is not None:
                q = q.where(ModelActivation.model == model)
            return [
                {"id": r.id, "model": r.model, "bid": r.bid, "version": r.version,
                 "previous_version": r.previous_version, "actor": r.actor, "note": r.note,
                 "created_at": r.created_at.isoformat() + "Z"}
                for r in s.execute(q).scalars()
            ]

    def publish(self, desired: Desired | None = None) -> int:
        """Broadcast the desired state; returns how many subscribers got it."""
        desired = self.desired() if desired is None else desired
        return int(self.redis.publish(channel(self.redis), json.dumps(desired.to_dict())))

    def _record(self, model: str, bid: str | None, version: int | None, actor: str,
                note: str) -> Change:
        before = self.desired()
        if bid is None:
            previous: int | None = before.versions.get(model)
            if previous is None:  # never activated: the workers serve the latest on disk
                present = self.repository.versions(model)
                previous = present[-1] if present else None
        else:
            previous = before.bids.get(bid, {}).get(model)
        with self.db.session() as s:
            s.add(ModelActivation(model=model, bid=bid, version=version,
                                  previous_version=previous, actor=actor, note=note))
        self.publish()
        return Change(model, bid, version, previous)
