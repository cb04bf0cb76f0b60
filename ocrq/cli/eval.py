"""``ocrq eval``: score engines side by side on a labelled manifest folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ocrq.errors import OcrqError
from ocrq.evaluation.checkbox_eval import (
    evaluate_checkboxes,
    format_checkbox_table,
    load_checkboxes,
)
from ocrq.evaluation.classify_eval import classify_all, format_report, load_labels, score
from ocrq.evaluation.dataset import load_manifest
from ocrq.evaluation.idcard_eval import evaluate_cards, format_cards, load_cards, summary
from ocrq.evaluation.peers import build_engine, resolve_threads
from ocrq.evaluation.report import format_diagnostics
from ocrq.evaluation.runner import evaluate, format_table
from ocrq.evaluation.table_eval import evaluate_tables, format_table_scores, load_tables
from ocrq.settings import Settings


@click.command("eval")
@click.argument("manifest_dir", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--engine",
    "engines",
    multiple=True,
    default=("ocrq",),
    show_default=True,
    help="Engine to score: ocrq, rapidocr or tesseract (--task checkbox: ocrq, "
    "checkbox-extractor; --task table: ocrq, img2table); repeat to compare in one run.",
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
@click.option(
    "--task",
    type=click.Choice(["ocr", "classify", "checkbox", "table", "idcard"]),
    default="ocr",
    show_default=True,
    help="ocr: score text; classify: document classes (manifest rows with a 'label', "
    "read by the plug-in stages of plan --tid).",
)
@click.option("--tid", default="classify", show_default=True, help="Plan of --task classify.")
def eval_command(
    manifest_dir: Path,
    engines: tuple[str, ...],
    limit: int | None,
    as_json: bool,
    threads: int,
    top: int,
    task: str,
    tid: str,
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
    if task == "classify":
        _eval_classify(manifest_dir, limit, as_json, threads, tid)
        return
    if task == "idcard":  # corner error on generated cards, coverage on real ones
        default = click.get_current_context().get_parameter_source("tid")
        plan = task if default == click.core.ParameterSource.DEFAULT else tid
        _eval_idcard(manifest_dir, limit, as_json, threads, plan)
        return
    if task in ("checkbox", "table"):
        # --tid's default names the classify plan; these tasks' plans are named like them
        default = click.get_current_context().get_parameter_source("tid")
        plan = task if default == click.core.ParameterSource.DEFAULT else tid
        run = _eval_checkbox if task == "checkbox" else _eval_table
        run(manifest_dir, engines, limit, as_json, threads, plan)
        return
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


def _eval_classify(manifest_dir: Path, limit: int | None, as_json: bool, threads: int,
                   tid: str) -> None:
    try:
        samples = load_labels(manifest_dir, limit=limit)
        settings = Settings.from_env().with_(threads=threads)
        report = score(classify_all(samples, settings, tid, progress=sys.stderr.isatty()))
    except OcrqError as exc:
        raise click.ClickException(exc.message) from exc
    if as_json:
        click.echo(json.dumps({"manifest": str(manifest_dir), "tid": tid, "threads": threads,
                               **report.to_dict()}, indent=2))
    else:
        click.echo(format_report(report))


def _eval_checkbox(manifest_dir: Path, engines: tuple[str, ...], limit: int | None,
                   as_json: bool, threads: int, tid: str) -> None:
    """Checkbox detection P/R/F1 (IoU >= 0.5) and ticked state on the matched boxes;
    --engine ocrq (plan --tid, default checkbox) and/or checkbox-extractor."""
    _detection_task(manifest_dir, engines, limit, as_json, threads, tid,
                    load_checkboxes, evaluate_checkboxes, format_checkbox_table)


def _eval_table(manifest_dir: Path, engines: tuple[str, ...], limit: int | None,
                as_json: bool, threads: int, tid: str) -> None:
    """Table cells (P/R/F1 at IoU >= 0.5 on the box of a cell's text, and by the
    peer's containment rule) and cTDaR adjacency relations; --engine ocrq (plan
    --tid, default table) and/or img2table."""
    _detection_task(manifest_dir, engines, limit, as_json, threads, tid,
                    load_tables, evaluate_tables, format_table_scores)


def _detection_task(manifest_dir: Path, engines: tuple[str, ...], limit: int | None,
                    as_json: bool, threads: int, tid: str, load: Any, evaluate: Any,
                    fmt: Any) -> None:
    """A suite detection task: load the set, score every engine, print or JSON."""
    try:
        samples = load(manifest_dir, limit=limit)
        settings = Settings.from_env().with_(threads=threads)
        scores = evaluate(samples, list(dict.fromkeys(engines)), settings, tid)
    except OcrqError as exc:
        raise click.ClickException(exc.message) from exc
    if as_json:
        click.echo(json.dumps({"manifest": str(manifest_dir), "tid": tid, "threads": threads,
                               "results": [s.to_dict() for s in scores]}, indent=2))
    else:
        click.echo(fmt(scores))


def _eval_idcard(manifest_dir: Path, limit: int | None, as_json: bool, threads: int,
                 tid: str) -> None:
    """Corner error (share of the card diagonal) on rows with ``corners``; on rows
    labelled id_card without them, words read from the crop vs the whole image."""
    try:
        rows = load_cards(manifest_dir, limit=limit)
        settings = Settings.from_env().with_(threads=threads)
        results = evaluate_cards(rows, settings, tid, progress=sys.stderr.isatty())
    except OcrqError as exc:
        raise click.ClickException(exc.message) from exc
    if as_json:
        click.echo(json.dumps({"manifest": str(manifest_dir), "tid": tid, "threads": threads,
                               **summary(results), "per_card": [vars(r) for r in results]},
                              indent=2))
    else:
        click.echo(format_cards(results))
