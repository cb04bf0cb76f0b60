"""The ``ocrq`` command. Each sub-command lives in its own module and is
registered here; heavy imports happen inside the commands, not at import time."""

from __future__ import annotations

import logging

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """ocrq: OCR serving system (rotate -> detect -> recognize -> reorder)."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _register() -> None:
    from ocrq.cli.run import run

    main.add_command(run)
    from ocrq.cli.eval import eval_command

    main.add_command(eval_command)
    from ocrq.cli.serve import db, purge, serve

    for command in (serve, db, purge):
        main.add_command(command)
    from ocrq.cli.cluster import cluster, workers
    from ocrq.cli.models import models

    main.add_command(models)
    main.add_command(cluster)
    main.add_command(workers)


_register()
