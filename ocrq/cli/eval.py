"""``ocrq eval``: score engines side by side on a labelled manifest folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ocrq.errors import OcrqError
from ocrq.evaluation.dataset import load_manifest
from ocrq.evaluation.peers import build_engine, resolve_threads
from ocrq.evaluation.report import format_diagnostics
from ocrq.evaluation.runner import evaluate, format_table


@click.command("eval")
@click.argument("manifest_dir", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--engine",
    "engines",
    multiple=True,
    default=("ocrq",),
    show_default=True,
    help="Engine to score: ocrq, rapidocr or tesseract; repeat to compare in one run.",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N images.")
@click.option(
    "--json", "as_json", is_flag=True, help="Machine-readable results with per-page rows."
)
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Threads for every engine (0 = all cores).",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=15,
    show_default=True,
    help="Rows of missed lines and confusions in the table output (--json has all).",
)
def eval_command(
    manifest_dir: Path,
    engines: tuple[str, ...],
    limit: int | None,
    as_json: bool,
    threads: int,
    top: int,
) -> None:
    """Score OCR engines on MANIFEST_DIR (a folder with manifest.jsonl).

    Reports word P/R/F1, char F1 (case-insensitive multisets), detection recall
    (ground-truth boxes at least half covered) and seconds per page. Scores are
    micro-averaged over all pages.

    After the table: detection recall per ground-truth line length, the lines
    most often missed, and the most frequent confusions on the lines found
    (characters substituted, deleted and inserted; words read as other words).
    """
    threads = resolve_threads(threads)
    try:
        samples = load_manifest(manifest_dir, limit=limit)
        # Build every engine first: a missing peer fails before minutes of work.
        built = [build_engine(name, threads) for name in dict.fromkeys(engines)]
        results = evaluate(built, samples, progress=sys.stderr.isatty())
    except OcrqError as exc:
        raise click.ClickException(exc.message) from exc
    if as_json:
        doc = {
            "manifest": str(manifest_dir),
            "threads": threads,
            "results": [r.to_dict() for r in results],
        }
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(format_table(results))
        click.echo()
        click.echo(format_diagnostics(results, top))
