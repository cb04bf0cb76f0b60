"""The ``ocrq`` command. Each sub-command lives in its own module and is
registered here. Importing a command module loads no model and opens no
connection: that happens when a command runs."""

from __future__ import annotations

import logging

import click

from ocrq.cli.badcases import badcases
from ocrq.cli.cluster import cluster, workers
from ocrq.cli.errors import OcrqGroup
from ocrq.cli.eval import eval_command
from ocrq.cli.flower import flower
from ocrq.cli.keys import keys
from ocrq.cli.models import models
from ocrq.cli.run import run
from ocrq.cli.serve import db, purge, serve


@click.group(cls=OcrqGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """ocrq: OCR serving system (rotate -> detect -> recognize -> reorder)."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


for command in (run, eval_command, serve, db, purge, models, keys, cluster, workers, flower,
                badcases):
    main.add_command(command)
