"""``ocrq keys``: API keys of the businesses (bids) that use /v1/jobs.

The token is printed once, by ``create``; the database keeps only its sha256.
"""

from __future__ import annotations

from datetime import datetime

import click

from ocrq.cli.errors import one_line
from ocrq.cluster.snapshot import render_table
from ocrq.plans import Plans
from ocrq.settings import Settings
from ocrq.storage import ApiKey, Database
from ocrq.storage import keys as store

COLUMNS = ("key_id", "bid", "label", "created_at", "revoked_at")


def _db() -> Database:
    return Database(Settings.from_env().database_url)


def _when(value: datetime | None) -> str:
    return "" if value is None else value.isoformat(sep=" ", timespec="seconds")


def _row(key: ApiKey) -> dict[str, str]:
    return {"key_id": key.id, "bid": key.bid, "label": key.label,
            "created_at": _when(key.created_at), "revoked_at": _when(key.revoked_at)}


@click.group("keys")
def keys() -> None:
    """API keys: each names one business (bid) on /v1/jobs (OCRQ_AUTH=keys)."""


@keys.command("create")
@click.argument("bid")
@click.option("--label", default="", help="A note for the listing (who holds the key).")
@click.option("--any-bid", is_flag=True,
              help="Allow a bid the plans (OCRQ_PLANS_FILE) do not name yet.")
def create(bid: str, label: str, any_bid: bool) -> None:
    """Create a key for BID and print its token (shown only this once)."""
    settings = Settings.from_env()
    if not any_bid:
        known = Plans.from_settings(settings).bids
        if bid not in known:
            raise click.ClickException(f"bid {bid!r} is not in the plans (known: "
                                       f"{', '.join(known)}); --any-bid to create it anyway")
    try:
        key, token = store.create_key(Database(settings.database_url), bid, label)
    except Exception as exc:
        raise one_line(exc) from exc
    click.echo(token)
    click.echo(f"key {key.id} for bid {bid} created; the token above is shown only now: "
               f"send it as 'Authorization: Bearer <token>'", err=True)


@keys.command("list")
@click.argument("bid", required=False)
def list_(bid: str | None) -> None:
    """Every key (or BID's), revoked ones included; never the tokens."""
    try:
        rows = [_row(k) for k in store.list_keys(_db(), bid)]
    except Exception as exc:
        raise one_line(exc) from exc
    click.echo(render_table(rows, COLUMNS))


@keys.command("revoke")
@click.argument("key_id")
def revoke(key_id: str) -> None:
    """Revoke KEY_ID: from now on its token is refused (401)."""
    try:
        key = store.revoke_key(_db(), key_id)
    except Exception as exc:
        raise one_line(exc) from exc
    if key is None:
        raise click.ClickException(f"no key {key_id!r} (see `ocrq keys list`)")
    click.echo(f"key {key.id} of bid {key.bid} revoked at {_when(key.revoked_at)}")
