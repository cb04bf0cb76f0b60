"""``ocrq run``: OCR images in-process (no servers)."""

from __future__ import annotations

import glob
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from ocrq import documents
from ocrq.documents import assemble
from ocrq.documents import inspect as inspect_document
from ocrq.engine import Engine
from ocrq.errors import OcrqError
from ocrq.images import decode_image, read_file
from ocrq.names import STEPS
from ocrq.plans import Plans
from ocrq.plugin_stages import run_stages
from ocrq.settings import Settings

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".pdf"}
# Between a document's pages in the text output (pdftotext's convention).
PAGE_BREAK = "\f"


def expand_inputs(items: tuple[str, ...]) -> Iterator[Path]:
    """Files as given, directories' image files (sorted), glob patterns expanded.

    A name that matches nothing is still yielded, so it is reported as an error.
    """
    for item in items:
        path = Path(item)
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        elif any(ch in item for ch in "*?[") and not path.exists():
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                yield path
            yield from (Path(m) for m in matches if Path(m).is_file())
        else:
            yield path


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON document per image (JSON Lines).")
@click.option("--runtime", type=click.Choice(["onnxruntime", "torch"]), default=None,
              help="Model runtime (default: OCRQ_RUNTIME or onnxruntime).")
@click.option("--device", default=None, help="cpu, cuda or cuda:N (default: OCRQ_DEVICE or cpu).")
@click.option("--threads", type=int, default=None, help="Threads per model (0 = all cores).")
@click.option("--lexicon", default=None,
              help="Languages whose common words settle look-alike glyphs, e.g. en,ms; "
                   "none: off (default: OCRQ_LEXICON or en).")
@click.option("--tid", default=None,
              help="Run this plan's plug-in stages too (plans.yaml / OCRQ_PLANS_FILE); "
                   "their fields appear in --json.")
@click.option("--bid", default=None, help="Business whose override of --tid applies.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr (default: on a terminal with several images).")
def run(
    inputs: tuple[str, ...],
    as_json: bool,
    runtime: str | None,
    device: str | None,
    threads: int | None,
    lexicon: str | None,
    tid: str | None,
    bid: str | None,
    progress: bool | None,
) -> None:
    """OCR IMAGE, DIR or GLOB ... and print the text in reading order."""
    overrides = {k: v for k, v in
                 {"runtime": runtime, "device": device, "threads": threads,
                  "lexicon": lexicon}.items()
                 if v is not None}
    settings = Settings.from_env(**overrides)
    paths = list(expand_inputs(inputs))
    show = progress if progress is not None else (sys.stderr.isatty() and len(paths) > 1)
    try:
        engine = Engine.from_settings(settings)
        plans = Plans.from_settings(settings)
        plan = plans.resolve(bid, tid) if tid or bid else None
        stages = [(s.name, dict(s.options)) for s in plan.steps
                  if s.name not in STEPS] if plan else []
    except OcrqError as exc:
        raise click.ClickException(exc.message) from exc
    failures = 0
    bar = tqdm(paths, unit="img", disable=not show, file=sys.stderr, dynamic_ncols=True)
    for i, path in enumerate(bar):
        bar.set_postfix_str(path.name, refresh=False)
        try:
            doc, text = _read(path, settings, engine, (stages, plans, plan))
        except OcrqError as exc:
            failures += 1
            # The image module's messages start with the file's name already.
            named = exc.message.startswith((str(path), path.name))
            msg = exc.message if named else f"{path}: {exc.message}"
            bar.write(f"ocrq: error: {msg}", file=sys.stderr)
            continue
        except OSError as exc:
            failures += 1
            bar.write(f"ocrq: error: {path}: {exc.strerror or exc}", file=sys.stderr)
            continue
        if as_json:
            bar.write(json.dumps(doc, ensure_ascii=False), file=sys.stdout)
        else:
            header = f"==> {path} <==\n" if len(paths) > 1 else ""
            sep = "\n" if i < len(paths) - 1 and len(paths) > 1 else ""
            bar.write(f"{header}{text}{sep}", file=sys.stdout)
    bar.close()
    if failures:
        sys.exit(1)


def _read(path: Path, settings: Settings, engine: Engine, plugin: tuple[Any, Plans, Any]
          ) -> tuple[dict[str, Any], str]:
    """(the JSON document, the text) of an image, or of every page of a document
    (PDF, multi-page TIFF): then ``{"pages": [...]}`` as the service returns it."""
    stages, plans, plan = plugin
    data = read_file(path, settings)
    info = inspect_document(data, path.name, settings)
    images = documents.pages(data, path.name, settings) if info else \
        iter([decode_image(data, path.name, settings)])
    docs, texts = [], []
    for image in images:
        page = engine.run(image, str(path))
        # A stage's `then` (the document plan) appends the chosen plan's stages.
        docs.append(run_stages(engine, image, page.to_dict(), stages, plans, plan)
                    if stages else page.to_dict())
        texts.append(page.text())
    if info is None:
        return docs[0], texts[0]
    return assemble(str(path), docs), PAGE_BREAK.join(texts)

