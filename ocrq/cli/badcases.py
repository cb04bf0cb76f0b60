"""``ocrq badcases``: failed and low-confidence jobs kept for labelling (issue 15).

``list`` shows them newest first; ``export DIR`` writes their images and a
``manifest.jsonl`` in the format of shared/eval (``ocrq eval`` and
:func:`ocrq.evaluation.dataset.load_manifest` read it): one object per image
with its file name, size and lines (text, box). The lines are ocrq's own reading,
a draft for a person to correct (``"draft": true``); a failed job's page has none.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from ocrq.cli.errors import one_line
from ocrq.cluster.snapshot import render_table
from ocrq.evaluation.dataset import MANIFEST
from ocrq.settings import Settings
from ocrq.storage import Badcase, Database
from ocrq.storage import badcases as store

COLUMNS = ("id", "created_at", "job_id", "bid", "tid", "reason", "why", "image")
DATES = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]


def _db() -> Database:
    return Database(Settings.from_env().database_url)


def _why(row: Badcase) -> str:
    if row.reason == "failed":
        return row.code or ""
    return f"{row.confidence:.3f} < {row.threshold:.3f}"


def _row(row: Badcase) -> dict[str, str]:
    kept = f"{row.image_bytes} B" if row.image_bytes else "-"
    return {"id": str(row.id), "created_at": row.created_at.isoformat(sep=" ", timespec="seconds"),
            "job_id": row.job_id, "bid": row.bid, "tid": row.tid, "reason": row.reason,
            "why": _why(row), "image": f"{row.image_name} ({kept})"}


@click.group("badcases")
def badcases() -> None:
    """Failed and low-confidence jobs, kept with image and result for labelling."""


@badcases.command("list")
@click.option("--bid", default=None, help="Only this business's bad cases.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_command(bid: str | None, limit: int, as_json: bool) -> None:
    """Newest first."""
    try:
        rows = store.listing(_db(), bid=bid, limit=limit)
    except Exception as exc:
        raise one_line(exc) from exc
    if as_json:
        for row in rows:
            click.echo(json.dumps(store.summary(row), ensure_ascii=False))
        return
    click.echo(render_table([_row(r) for r in rows], COLUMNS))
    click.echo(f"{len(rows)} bad case(s)", err=True)


def manifest_row(row: Badcase, image: str) -> dict[str, Any]:
    """One manifest.jsonl object: shared/eval's keys (image, lines with text and box)
    and what a labeller wants to know about the case."""
    lines = [{"text": ln["text"], "box": ln["polygon"], "confidence": ln.get("confidence")}
             for ln in (row.result or {}).get("lines") or []]
    return {"image": image, "width": row.width, "height": row.height, "lines": lines,
            "draft": True, "source": f"ocrq bad case of job {row.job_id}",
            "original_name": row.image_name, "job_id": row.job_id, "bid": row.bid,
            "tid": row.tid, "reason": row.reason, "code": row.code,
            "confidence": row.confidence, "threshold": row.threshold,
            "created_at": row.created_at.isoformat(timespec="seconds") + "Z"}


def export(db: Database, folder: Path, *, bid: str | None = None,
           since: datetime | None = None) -> tuple[int, int]:
    """Write the images and manifest.jsonl; (exported, left out: no image kept)."""
    folder.mkdir(parents=True, exist_ok=True)
    done, skipped = 0, 0
    tmp = folder / f".{MANIFEST}.part"
    with tmp.open("w", encoding="utf-8") as out:
        for row in store.with_images(db, bid=bid, since=since):
            if not row.image:
                skipped += 1
                continue
            name = store.export_name(row)
            (folder / name).write_bytes(row.image)
            out.write(json.dumps(manifest_row(row, name), ensure_ascii=False) + "\n")
            done += 1
    tmp.replace(folder / MANIFEST)  # whole or not at all: never a half-written manifest
    return done, skipped


@badcases.command("export")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--bid", default=None, help="Only this business's bad cases.")
@click.option("--since", type=click.DateTime(DATES), default=None,
              help="Only those kept since then (UTC).")
def export_command(folder: Path, bid: str | None, since: datetime | None) -> None:
    """Write FOLDER/manifest.jsonl and the images (shared/eval format, draft lines)."""
    try:
        done, skipped = export(_db(), folder, bid=bid, since=since)
    except Exception as exc:
        raise one_line(exc) from exc
    click.echo(f"exported {done} bad case(s) to {folder / MANIFEST}"
               + (f"; {skipped} without a kept image left out" if skipped else ""))


@badcases.command("purge")
@click.option("--days", type=click.IntRange(min=0), default=None,
              help="retention (default OCRQ_BADCASE_RETENTION_DAYS)")
def purge_command(days: int | None) -> None:
    """Delete bad cases older than the retention (workers also do it on their purge)."""
    s = Settings.from_env()
    try:
        n = store.purge(Database(s.database_url),
                        s.badcase_retention_days if days is None else days,
                        batch=s.purge_batch)
    except Exception as exc:
        raise one_line(exc) from exc
    click.echo(f"purged {n} bad case(s)")
