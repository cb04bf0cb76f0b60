"""Torch runtime on CUDA (fp32, fp16) vs ONNX Runtime on CPU: per model and end to end.

    python bench/gpu.py [DATA_DIR] [--limit N] [--batches 1,2,4] [--det-sizes 640x480]
                        [--min-time S] [--threads N] [--concurrency N] [--no-torch-cpu]
                        [--compile [--compile-mode reduce-overhead]] [--no-e2e]
                        [--model-root DIR]

Per-model part: latency (median ms per ``run`` call, host->device copy and the
result's copy back included) and throughput (items/s) of the recogniser
``str`` and direction classifier ``dir`` at batch sizes 1..64 (48x320 and
48x192 crops), the detector ``std`` at a few page sizes and the page
orientation model ``rot``, on: ONNX Runtime CPU (the baseline of every ratio),
torch CPU fp32, and, when CUDA is present, torch CUDA fp32, fp16 (autocast:
conv/matmul in fp16, the default) and "half" (everything fp16) with GPU
memory per model (``torch.cuda.max_memory_allocated`` around that model alone,
and this process's used memory as NVML reports it, CUDA context included).

End-to-end part: receipts/s over DATA_DIR's manifest (default
../shared/eval/dev) through ``Engine.run`` with runtime=torch device=cuda (fp32
and fp16) and with runtime=onnxruntime on CPU, with the number of pages whose text is
identical to ONNX Runtime's (the fp32 parity target); ``--concurrency`` pages
in flight from threads (one engine, shared models). Images are decoded before
timing; every engine reads one page untimed first.

Without CUDA it says so and runs only the CPU rows, so it is testable anywhere:
``python bench/gpu.py --limit 2 --batches 1,8 --det-sizes 640x480``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import data_parser  # first: checks that ocrq is installed

# isort: split
import numpy as np
import onnxruntime

from ocrq.engine import Engine
from ocrq.evaluation.dataset import load_manifest
from ocrq.evaluation.metrics import word_counts
from ocrq.models.builtin import serving_specs
from ocrq.models.repository import ModelRepository
from ocrq.models.runtimes import load_runtime
from ocrq.models.runtimes.torch import TorchRuntime, gpu_memory_mib
from ocrq.settings import Settings

BASE = "ort-cpu"


def parse_args() -> argparse.Namespace:
    ap = data_parser(__doc__, limit_help="only the first N receipts")
    ap.add_argument("--batches", default="1,2,4,8,16,32,64", help="batch sizes for str/dir")
    ap.add_argument("--det-sizes", default="640x480,960x960,1536x1536", help="HxW for std")
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds timed per row")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores)")
    ap.add_argument("--concurrency", type=int, default=1, help="pages in flight end to end")
    ap.add_argument("--model-root", type=Path, default=None, help="default: a temporary copy")
    ap.add_argument("--no-torch-cpu", action="store_true", help="skip the torch CPU rows")
    ap.add_argument("--no-e2e", action="store_true", help="skip the end-to-end part")
    ap.add_argument("--compile", action="store_true", help="add torch.compile rows (slow load)")
    ap.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. reduce-overhead")
    ap.add_argument("--cudnn", default="on", choices=("on", "benchmark", "off"),
                    help="how cuDNN picks kernels, for every CUDA row (process-wide)")
    ap.add_argument("--backends", default="",
                    help="per-model rows: only these (comma list of row labels; default all)")
    ap.add_argument("--no-eager-e2e", action="store_true",
                    help="end to end: skip the CUDA fp32 row without buckets and graphs")
    return ap.parse_args()


def timed(fn: Callable[[], object], min_time: float) -> float:
    """Median seconds of ``fn`` after two untimed calls, over >= min_time (3..200 calls)."""
    fn()
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < min_time and len(times) < 200):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def backends(torch_cpu: bool, cuda: bool, compile: bool = False, only: str = ""
             ) -> list[tuple[str, dict]]:
    rows = _backends(torch_cpu, cuda, compile)
    keep = {b.strip() for b in only.split(",") if b.strip()} | {BASE}
    return [r for r in rows if r[0] in keep] if only else rows


def _backends(torch_cpu: bool, cuda: bool, compile: bool) -> list[tuple[str, dict]]:
    rows = [(BASE, {"backend": "onnxruntime", "device": "cpu"})]
    if torch_cpu:
        rows.append(("torch-cpu", {"backend": "torch", "device": "cpu"}))
    if cuda:
        rows.append(("torch-cuda-fp32", {"backend": "torch", "device": "cuda"}))
        rows.append(("torch-cuda-fp16", {"backend": "torch", "device": "cuda", "fp16": True}))
        rows.append(("torch-cuda-half", {"backend": "torch", "device": "cuda", "fp16": True,
                                         "fp16_mode": "half"}))
        # One captured CUDA graph per input shape (what GPU workers run, issue 11).
        rows.append(("cuda-fp32-graph", {"backend": "torch", "device": "cuda", "graphs": True}))
        rows.append(("cuda-fp16-graph", {"backend": "torch", "device": "cuda", "fp16": True,
                                         "graphs": True}))
    if compile:  # torch.compile(dynamic=True) variants of the torch rows
        rows += [(f"{label}+compile", {**cfg, "torch_compile": True})
                 for label, cfg in rows if cfg["backend"] == "torch"]
    return rows


def workloads(args: argparse.Namespace) -> list[tuple[str, tuple[int, ...]]]:
    batches = [int(b) for b in args.batches.split(",")]
    out = [("str", (b, 3, 48, 320)) for b in batches]
    out += [("dir", (b, 3, 48, 192)) for b in batches]
    for hw in args.det_sizes.split(","):
        h, w = (int(v) for v in hw.lower().split("x"))
        out.append(("std", (1, 3, h, w)))
    out.append(("rot", (1, 3, 224, 224)))
    return out


def bench_models(args: argparse.Namespace, repo: ModelRepository, cuda: bool) -> None:
    rng = np.random.default_rng(0)
    rows: dict[tuple[str, tuple[int, ...]], dict[str, float]] = {}
    memory: dict[tuple[str, str], tuple[float, float | None]] = {}
    for model in ("str", "dir", "std", "rot"):
        shapes = [s for m, s in workloads(args) if m == model]
        largest = rng.uniform(-1, 1, max(shapes, key=np.prod)).astype(np.float32)
        runtimes = {}
        for label, cfg in backends(not args.no_torch_cpu, cuda, args.compile, args.backends):
            on_gpu = cfg["device"] == "cuda"
            if on_gpu:
                import torch  # optional (the gpu/torch extra): only for the CUDA rows

                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            path = repo.manifest(model).weights_path
            if cfg["backend"] == "torch":  # TorchRuntime options that are not settings
                runtimes[label] = TorchRuntime(
                    path, device=cfg["device"], threads=args.threads,
                    fp16=cfg.get("fp16", False), fp16_mode=cfg.get("fp16_mode", "autocast"),
                    compile=cfg.get("torch_compile", False), compile_mode=args.compile_mode,
                    graphs=cfg.get("graphs", False), cudnn=args.cudnn,
                )
            else:
                runtimes[label] = load_runtime(
                    cfg["backend"], path, device=cfg["device"], threads=args.threads,
                    fp16=cfg.get("fp16", False), torch_compile=cfg.get("torch_compile", False),
                )
            if on_gpu:
                runtimes[label].run(largest)
                mem = gpu_memory_mib("cuda")
                memory[(model, label)] = (mem["peak_allocated"] or 0.0, mem["nvml_process_used"])
        for shape in shapes:
            x = rng.uniform(-1, 1, shape).astype(np.float32)
            # Backends take turns on each input, so drifting background load
            # on the machine hits all of them alike and the ratios stay fair.
            for label, rt in runtimes.items():
                rows.setdefault((model, shape), {})[label] = timed(
                    lambda rt=rt, x=x: rt.run(x), args.min_time
                )
        for rt in runtimes.values():
            rt.close()
    labels = [b for b, _ in backends(not args.no_torch_cpu, cuda, args.compile, args.backends)]
    print("| model | input | " + " | ".join(f"{b} ms | {b} items/s" for b in labels)
          + " | " + " | ".join(f"{b} × {BASE}" for b in labels[1:]) + " |")
    print("|---|---|" + "---:|" * (3 * len(labels) - 1))
    for (model, shape), by in rows.items():
        cells = [f"{1000 * by[b]:.2f} | {shape[0] / by[b]:.1f}" for b in labels]
        ratios = [f"{by[BASE] / by[b]:.2f}" for b in labels[1:]]
        print(f"| {model} | {'x'.join(map(str, shape))} | " + " | ".join(cells + ratios) + " |")
    print("\n(× = ONNX Runtime CPU latency / this latency: > 1 is faster than ORT CPU)")
    if memory:
        print("\n| model | backend | torch peak allocated MiB | NVML process used MiB |")
        print("|---|---|---:|---:|")
        for (model, label), (peak, used) in memory.items():
            used_s = f"{used:.0f}" if used is not None else "n/a"
            print(f"| {model} | {label} | {peak:.0f} | {used_s} |")


def e2e_configs(args: argparse.Namespace, cuda: bool) -> list[tuple[str, dict]]:
    configs = [(BASE, {"runtime": "onnxruntime", "device": "cpu"})]
    if not args.no_torch_cpu:
        configs.append(("torch-cpu", {"runtime": "torch", "device": "cpu"}))
    if cuda:
        gpu = {"runtime": "torch", "device": "cuda", "cudnn": args.cudnn}
        if not args.no_eager_e2e:  # what GPU workers ran before issue 11
            configs.append(("cuda-fp32-eager", {**gpu, "shape_buckets": "off",
                                                "cuda_graphs": False}))
        configs.append(("cuda-fp32", gpu))  # shape buckets + CUDA graphs (the default)
        configs.append(("cuda-fp16", {**gpu, "fp16": True}))
    return configs


def bench_e2e(args: argparse.Namespace, root: Path, cuda: bool) -> None:
    """Pages one at a time (or --concurrency threads): receipts/s, median and first
    page, load (warm-up) time, word F1, and pages whose text equals another row's."""
    samples = load_manifest(args.data, limit=args.limit)
    images = [(s.path.name, s.load()) for s in samples]
    engines, load_s = {}, {}
    for label, cfg in e2e_configs(args, cuda):
        t0 = time.perf_counter()
        engines[label] = Engine.from_settings(Settings(
            model_root=root, threads=args.threads,
            second_reading=Settings.from_env().second_reading, **cfg))
        engines[label].preload()  # models loaded and (on CUDA) every bucket warmed
        load_s[label] = time.perf_counter() - t0
    times: dict[str, list[float]] = {label: [] for label in engines}
    texts: dict[str, list[list[str]]] = {label: [] for label in engines}
    if args.concurrency == 1:
        for name, image in images:  # engines take turns page by page (fair under drifting load)
            for label, engine in engines.items():
                t0 = time.perf_counter()
                page = engine.run(image, name=name)
                times[label].append(time.perf_counter() - t0)
                texts[label].append([ln.text for ln in page.lines])
    else:
        for label, engine in engines.items():
            t0 = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
                pages = pool.map(lambda item, e=engine: e.run(item[1], name=item[0]), images)
                texts[label] = [[ln.text for ln in p.lines] for p in pages]
            times[label] = [time.perf_counter() - t0]
    print(f"\nEnd to end: {len(images)} receipts from {args.data.resolve()}, "
          f"concurrency {args.concurrency}, cudnn {args.cudnn}\n")
    ref = "cuda-fp32" if "cuda-fp32" in engines else BASE
    print(f"| engine | receipts/s | median ms | first page ms | max ms | load+warm s | "
          f"word F1 | same text as {BASE} | same text as {ref} |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, secs in times.items():
        total = sum(secs)
        per = secs if args.concurrency == 1 else [total / len(images)]
        same = [sum(a == b for a, b in zip(texts[label], texts[r], strict=True))
                for r in (BASE, ref)]
        print(f"| {label} | {len(images) / total:.2f} | {1000 * statistics.median(per):.1f} | "
              f"{1000 * per[0]:.1f} | {1000 * max(per):.1f} | {load_s[label]:.1f} | "
              f"{word_f1(samples, texts[label]):.4f} | {same[0]}/{len(images)} | "
              f"{same[1]}/{len(images)} |")
    for label, engine in engines.items():
        graphs = [getattr(getattr(m.runtime, "inner", m.runtime), "graph_stats", None)
                  for m in engine.registry.loaded()]
        info = [g() for g in graphs if g is not None]
        if info:
            print(f"\n{label} graphs: {info}")


def word_f1(samples: list, texts: list[list[str]]) -> float:
    matched = predicted = true = 0
    for sample, lines in zip(samples, texts, strict=True):
        c = word_counts("\n".join(lines), "\n".join(t for t, _ in sample.truth()))
        matched, predicted, true = matched + c.matched, predicted + c.predicted, true + c.true
    p, r = matched / max(predicted, 1), matched / max(true, 1)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def main() -> int:
    args = parse_args()
    import torch  # optional (the gpu/torch extra): after --help, which works without it

    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if cuda else "none"
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
          f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
          f"threads {args.threads or 'all'}, CUDA device: {device}")
    if not cuda:
        print("\n**NO CUDA on this machine: GPU rows skipped; CPU rows only "
              "(ONNX Runtime vs torch).**")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.model_root or Path(tmp)
        repo = ModelRepository(root)
        repo.ensure_defaults(serving_specs(Settings.from_env().second_reading))
        print()
        bench_models(args, repo, cuda)
        if not args.no_e2e:
            bench_e2e(args, root, cuda)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
