"""``ocrq flower``: Celery's monitoring UI for this deployment, behind a login.

Flower shows every worker, queue and task; unauthenticated it would hand that
(and remote control of the workers) to anyone who can reach the port. So it
starts only with credentials (``--basic-auth`` or OCRQ_FLOWER_AUTH), and
listens on the loopback interface unless told otherwise. Task events are
switched on by Flower itself (its periodic ``enable_events`` broadcast): the
workers keep them off while nobody watches (ocrq/pipeline/app.py).
"""

from __future__ import annotations

import os
import sys

import click

from ocrq.settings import Settings


def flower_argv(settings: Settings, auth: str, address: str, port: int) -> list[str]:
    """The ``celery flower`` command line (its broker is this deployment's)."""
    return [sys.executable, "-m", "celery", "--broker", settings.broker_url, "flower",
            f"--address={address}", f"--port={port}", f"--basic-auth={auth}",
            "--enable-events", "--purge_offline_workers=60"]


@click.command("flower")
@click.option("--basic-auth", "auth", envvar="OCRQ_FLOWER_AUTH", default="",
              help="user:password (several: comma-separated); default OCRQ_FLOWER_AUTH. "
                   "Required.")
@click.option("--address", default="127.0.0.1", show_default=True,
              help="Interface to listen on (0.0.0.0 only behind a proxy you trust).")
@click.option("--port", type=click.IntRange(1, 65535), default=5555, show_default=True)
def flower(auth: str, address: str, port: int) -> None:
    """Flower (Celery monitoring) for this deployment, with a login."""
    pairs = [p for p in auth.split(",") if p]
    if not pairs or not all(":" in p and p.split(":", 1)[1] for p in pairs):
        raise click.ClickException("Flower needs a login: --basic-auth user:password or "
                                   "OCRQ_FLOWER_AUTH=user:password")
    argv = flower_argv(Settings.from_env(), auth, address, port)
    try:
        os.execv(argv[0], argv)  # Flower runs in this process from here on
    except OSError as exc:
        raise click.ClickException(f"could not start Flower: {exc}") from exc
