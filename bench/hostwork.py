"""Host work per page: one core's CPU time outside the forward passes (issue 11).

    python bench/hostwork.py [DATA_DIR] [--limit N] [--processes N] [--repeat N]
                             [--dump PATH] [--no-scaling]

The engine runs with ONNX Runtime at one intra-op thread and one copy per
model, and OpenCV at one thread, so a page's work runs on the calling thread
(the "other threads" row checks it). Per page, host ms = the page's thread CPU
time (``time.thread_time``) minus the CPU time inside the forward passes (the
runtimes are wrapped to time them). CPU time moves less with other load on
the machine than wall time, but it does move (shared caches, memory
bandwidth): compare runs made one after the other, and host / forward (the
forward passes are the same work in every run) is the steadier figure. Image
decode (``ocrq.images.decode_image`` of the file's bytes) is timed apart.

Pass 1 runs the real models, records every forward output keyed by a hash of
its input pixels, and gives the headline numbers (no other instrumentation).
Pass 2 replays the outputs with the stage functions wrapped in timers, for
the split by stage (each timer counts its own time, not that of the timers
inside it; the wrappers add a little). The scaling pass replays the outputs
in 1 and in N processes (fork; the outputs are shared copy-on-write), so a
run is pure host work: pages/s and the ratio. ``--dump PATH`` writes every
page's output (text, polygons, order; no timings) as JSON, to check that a
change leaves every page's text as it was.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _common import data_parser  # first: checks that ocrq is installed

# isort: split
import cv2
import numpy as np

from ocrq.engine import Engine
from ocrq.evaluation.dataset import load_manifest
from ocrq.images import decode_image
from ocrq.models.runtimes import inputs
from ocrq.names import OCR_MODELS
from ocrq.settings import Settings
from ocrq.stages.ctc import pack_top_k

FORWARD, BENCH, OTHER = "forward pass", "(bench: replay key)", "other"


class Clock:
    """Exclusive thread CPU time per section: a section's time excludes the
    sections opened inside it. Keys are (stage, section)."""

    def __init__(self) -> None:
        self.totals: dict[tuple[str, str], float] = defaultdict(float)
        self.stack: list[tuple[str, str]] = []
        self.mark = 0.0

    @contextmanager
    def section(self, name: str, stage: str | None = None) -> Iterator[None]:
        now = time.thread_time()
        if self.stack:
            self.totals[self.stack[-1]] += now - self.mark
        parent = self.stack[-1][0] if self.stack else "page"
        self.stack.append((stage or parent, name))
        self.mark = now
        try:
            yield
        finally:
            now = time.thread_time()
            self.totals[self.stack.pop()] += now - self.mark
            self.mark = now

    def take(self) -> dict[tuple[str, str], float]:
        out, self.totals = dict(self.totals), defaultdict(float)
        return out


def _key(images: np.ndarray) -> bytes:
    data = np.ascontiguousarray(images)
    return hashlib.blake2b(data.data, digest_size=16).digest() + repr(data.shape).encode()


_NORMALIZE = inputs.normalize  # bound before instrument() wraps the module's


class TapeRuntime:
    """Records (``inner`` given) or replays (``inner`` None) forward outputs by the
    hash of the input pixels. It takes uint8 pixels (``run_images``) and
    normalises them here, on the host, exactly as ``inputs.run_images`` does for
    an ONNX Runtime session; only ``inner.run`` is timed as the forward pass."""

    backend, device = "tape", "cpu"

    gpu = False  # --gpu-path: what a GPU does (normalising, the top-k output) is not host work

    def __init__(self, clock: Clock, tape: dict[bytes, np.ndarray], inner: Any = None) -> None:
        self.clock, self.tape, self.inner = clock, tape, inner

    def run_images(self, images: np.ndarray, spec: inputs.Spec) -> np.ndarray:
        with self.clock.section(BENCH):
            key = _key(images)
        if self.gpu:  # on the device: timed with the pass (the uninstrumented function)
            with self.clock.section(FORWARD):
                batch = _NORMALIZE(images, spec)
        else:
            batch = inputs.normalize(images, spec)
        if self.inner is None:
            with self.clock.section(BENCH):
                return self.tape[key]
        with self.clock.section(FORWARD):
            out = np.asarray(self.inner.run(batch))
            if self.gpu and out.ndim == 3:  # the recogniser's top-k form (stages/ctc.py)
                out = pack_top_k(out, 8)
        self.tape[key] = out
        return out

    def close(self) -> None:
        pass


# (module, attribute, section): stage functions timed in pass 2. A name that a
# change removed is skipped (and said so).
SECTIONS = [
    ("ocrq.engine", "Engine.step_rotate", "rotate"),
    ("ocrq.engine", "Engine.step_detect", "detect"),
    ("ocrq.engine", "Engine.step_recognize", "recognize"),
    ("ocrq.engine", "Engine.step_reorder", "reorder"),
    ("ocrq.stages.rotate", "page_views", "resize (page views)"),
    ("ocrq.engine", "classify_pages", "page-orientation probs"),
    ("ocrq.models.runtimes.inputs", "normalize", "normalise (uint8 -> float NCHW)"),
    ("ocrq.stages.detect", "_run", "resize (detector input)"),
    ("ocrq.stages.detect", "boxes_from_map", "DB post-processing"),
    ("ocrq.engine", "rotate_image", "quarter turns"),
    ("ocrq.engine", "line_crops", "crops"),
    ("ocrq.engine", "classify_lines", "resize+pad (line direction)"),
    ("ocrq.engine", "estimate_skew", "skew estimate"),
    ("ocrq.engine", "straighten", "straighten"),
    ("ocrq.engine", "find_leaders", "leader dots"),
    ("ocrq.engine", "recognize", "resize+pad (recogniser)"),
    ("ocrq.stages.recognize", "ink_profile", "ink profile"),
    ("ocrq.stages.recognize", "decode", "CTC decode + spacing"),
    ("ocrq.stages.recognize", "settle_word", "zero/O"),
    ("ocrq.stages.lexicon", "Lexicon.needs", "lexicon"),
    ("ocrq.stages.lexicon", "Lexicon.correct", "lexicon"),
    ("ocrq.engine", "reading_order", "reading order"),
    ("ocrq.engine", "to_submitted", "map back to the image"),
]
STAGES = ("rotate", "detect", "recognize", "reorder")


def instrument(clock: Clock) -> None:
    for module, attr, name in SECTIONS:
        owner: Any = importlib.import_module(module)
        *path, last = attr.split(".")
        for part in path:
            owner = getattr(owner, part)
        fn = getattr(owner, last, None)
        if fn is None:
            print(f"(no {module}.{attr}: not timed)")
            continue
        stage = name if name in STAGES else None
        label = "(the step's own code)" if stage else name
        setattr(owner, last, _timed(fn, clock, label, stage))


def _timed(fn: Callable[..., Any], clock: Clock, name: str, stage: str | None
           ) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with clock.section(name, stage):
            return fn(*args, **kwargs)
    return wrapper


def build_engine(clock: Clock, tape: dict[bytes, np.ndarray]) -> Engine:
    settings = Settings.from_env().with_(threads=1, cpu_copies=1, batch_wait_ms=-1.0)
    engine = Engine.from_settings(settings)
    engine.preload()
    for kind in OCR_MODELS:
        model = engine.registry.get(kind)
        # LoadedModel is frozen; the bench swaps the runtime in place so that the
        # registry hands the engine the wrapped one.
        object.__setattr__(model, "runtime", TapeRuntime(clock, tape, model.runtime))
    return engine


def replay(engine: Engine) -> None:
    for kind in OCR_MODELS:
        engine.registry.get(kind).runtime.inner = None


def page_output(engine: Engine, image: np.ndarray, name: str) -> dict[str, Any]:
    page = engine.run(image, name).to_dict()
    page.pop("timings_ms", None)
    return page


def measure(engine: Engine, clock: Clock, pages: list[tuple[str, bytes, np.ndarray]],
            dump: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Per page: decode, host, forward ms (thread CPU time) and wall ms."""
    rows = []
    for name, data, image in pages:
        t0 = time.thread_time()
        decode_image(data, name)
        decode = time.thread_time() - t0
        clock.take()
        w0, p0 = time.perf_counter(), time.process_time()
        with clock.section(OTHER, "page"):
            out = page_output(engine, image, name)
        wall, process = time.perf_counter() - w0, time.process_time() - p0
        split = clock.take()
        if dump is not None:
            dump[name] = out
        forward = sum(v for (_, s), v in split.items() if s == FORWARD)
        bench = sum(v for (_, s), v in split.items() if s == BENCH)
        total = sum(split.values())
        rows.append({"decode": 1e3 * decode, "host": 1e3 * (total - forward - bench),
                     "forward": 1e3 * forward, "wall": 1e3 * (wall - bench),
                     "threads": 1e3 * max(process - total, 0.0), "split": split})
    return rows


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def print_headline(rows: list[dict[str, Any]]) -> None:
    print("| per page (one core) | median ms | p90 ms | mean ms |")
    print("|---|---:|---:|---:|")
    for key, label in [("host", "host work (all but forward passes)"),
                       ("forward", "forward passes (CPU, 1 thread)"),
                       ("decode", "image decode (decode_image)"),
                       ("wall", "wall time of Engine.run"),
                       ("threads", "CPU on other threads (should be ~0)")]:
        v = [r[key] for r in rows]
        print(f"| {label} | {_pct(v, 50):.1f} | {_pct(v, 90):.1f} | {statistics.mean(v):.1f} |")
    host, forward = ([r[k] for r in rows] for k in ("host", "forward"))
    print(f"\nhost / forward (medians): {_pct(host, 50) / _pct(forward, 50):.3f}")
    print()


def print_split(rows: list[dict[str, Any]]) -> None:
    per: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0] * len(rows))
    for i, r in enumerate(rows):
        for key, v in r["split"].items():
            if key[1] not in (FORWARD, BENCH):
                per[key][i] += 1e3 * v
    stage_of = {s: [sum(v[i] for (st, _), v in per.items() if st == s) for i in range(len(rows))]
                for s in (*STAGES, "page")}
    print("| stage | section | median ms | p90 ms | mean ms |")
    print("|---|---|---:|---:|---:|")
    for stage in (*STAGES, "page"):
        v = stage_of[stage]
        print(f"| **{stage}** | (all) | {_pct(v, 50):.2f} | {_pct(v, 90):.2f} | "
              f"{statistics.mean(v):.2f} |")
        keys = sorted((k for k in per if k[0] == stage), key=lambda k: -sum(per[k]))
        for key in keys:
            v = per[key]
            print(f"| {stage} | {key[1]} | {_pct(v, 50):.2f} | {_pct(v, 90):.2f} | "
                  f"{statistics.mean(v):.2f} |")
    print()


_WORK: tuple[Engine, list[tuple[str, bytes, np.ndarray]], int] | None = None


def _worker(start_at: float) -> tuple[float, float, int, float]:
    assert _WORK is not None
    engine, pages, repeat = _WORK
    while time.time() < start_at:  # every process starts together
        time.sleep(0.001)
    t0, c0 = time.time(), time.thread_time()
    for _ in range(repeat):
        for name, _data, image in pages:
            engine.run(image, name)
    return t0, time.time(), repeat * len(pages), time.thread_time() - c0


def scaling(engine: Engine, pages: list[tuple[str, bytes, np.ndarray]], processes: int,
            repeat: int) -> None:
    global _WORK
    _WORK = (engine, pages, repeat)
    ctx = mp.get_context("fork")  # children share the recorded outputs copy-on-write
    rates, cpu = {}, {}
    for n in sorted({1, processes}):
        with ctx.Pool(n) as pool:
            start_at = time.time() + 1.0
            spans = pool.map(_worker, [start_at] * n, chunksize=1)
        wall = max(e for _, e, _, _ in spans) - min(s for s, _, _, _ in spans)
        pages_done = sum(p for _, _, p, _ in spans)
        rates[n] = pages_done / wall
        cpu[n] = 1e3 * sum(c for *_, c in spans) / pages_done
    # CPU ms per page in each process: if it does not grow with N, the host work
    # itself scales (no shared lock or bandwidth limit) and pages/s is bounded by
    # the cores the processes get, which other load on the machine takes a share of.
    print("| processes | pages/s (replayed forward passes: host work only) | × one process "
          "| CPU ms/page in a process |")
    print("|---:|---:|---:|---:|")
    for n, rate in rates.items():
        print(f"| {n} | {rate:.1f} | {rate / rates[1]:.2f} | {cpu[n]:.1f} |")
    print()


def main() -> int:
    ap = data_parser(__doc__)
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeat", type=int, default=1, help="passes over the pages per process "
                    "in the scaling run")
    ap.add_argument("--dump", type=Path, help="write every page's output as JSON here")
    ap.add_argument("--no-scaling", action="store_true")
    ap.add_argument("--gpu-path", action="store_true", help="host work of a GPU feeder: "
                    "normalising and the recogniser's top-k reduction happen on the device")
    args = ap.parse_args()
    TapeRuntime.gpu = args.gpu_path
    # One core's work: OpenCV's own thread pool would run parts of a resize or a
    # warp on other threads, which thread_time does not see.
    cv2.setNumThreads(1)
    samples = load_manifest(args.data, limit=args.limit)
    pages = [(s.path.name, s.path.read_bytes(), s.load()) for s in samples]
    clock, tape = Clock(), {}
    engine = build_engine(clock, tape)
    engine.run(pages[0][2], pages[0][0])  # warm-up: first-call allocations
    decode_image(pages[0][1], pages[0][0])  # and the decoders' first-call set-up
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"{len(pages)} pages from {args.data.resolve()}, {os.cpu_count()} cores; {uptime}")
    print()
    dump: dict[str, Any] = {}
    print_headline(measure(engine, clock, pages, dump))
    if args.dump:
        args.dump.write_text(json.dumps(dump, indent=0, sort_keys=True))
    replay(engine)
    if not args.no_scaling:  # before the timers go in: they cost a little
        scaling(engine, pages, args.processes, args.repeat)
    instrument(clock)
    print_split(measure(engine, clock, pages))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
