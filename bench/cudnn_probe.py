"""What cuDNN's per-shape kernel choice costs on this GPU, and which mode to run.

    python bench/cudnn_probe.py [--shapes 1024x512,1024x1024,512x1024] [--fp16]

For each mode ("on": cuDNN heuristics, "benchmark": time every candidate,
"off": torch's own kernels) a fresh process loads the detector (torch on
CUDA, eager, the given precision) and times, per new input shape, the first
pass (kernel choice included) and the median of the next ones. The last line
says which mode has the smallest first-pass cost without a slower steady
state (over 1.25x the best): ``choose: MODE``. Needs CUDA; says so without it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("on", "benchmark", "off")


def child(mode: str, shapes: list[tuple[int, int]], fp16: bool, root: str) -> dict:
    import numpy as np

    from ocrq.models.builtin import serving_specs
    from ocrq.models.repository import ModelRepository
    from ocrq.models.runtimes.torch import TorchRuntime
    from ocrq.settings import Settings

    repo = ModelRepository(Path(root))
    repo.ensure_defaults(serving_specs(Settings.from_env().second_reading))
    rt = TorchRuntime(repo.manifest("std").weights_path, device="cuda", fp16=fp16,
                      cudnn=mode)
    out = {}
    for h, w in shapes:
        x = np.random.default_rng(0).uniform(-1, 1, (1, 3, h, w)).astype(np.float32)
        t0 = time.perf_counter()
        rt.run(x)
        first = time.perf_counter() - t0
        times = []
        for _ in range(10):
            t0 = time.perf_counter()
            rt.run(x)
            times.append(time.perf_counter() - t0)
        out[f"{h}x{w}"] = (first * 1000, statistics.median(times) * 1000)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="1024x512,1024x1024,512x1024")
    ap.add_argument("--fp16", action="store_true")
    ap.add_argument("--child", default="")
    ap.add_argument("--root", default="")
    args = ap.parse_args()
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    if args.child:
        print(json.dumps(child(args.child, shapes, args.fp16, args.root)))  # type: ignore[arg-type]
        return 0
    import torch  # optional (the gpu extra)

    if not torch.cuda.is_available():
        print("NO CUDA on this machine: nothing to probe\nchoose: on")
        return 0
    results = {}
    with tempfile.TemporaryDirectory() as root:
        for mode in MODES:
            argv = [sys.executable, __file__, "--child", mode, "--shapes", args.shapes,
                    "--root", root, *(["--fp16"] if args.fp16 else [])]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=240)
            if done.returncode != 0:
                print(f"{mode}: failed: {done.stderr[-800:]}")
                continue
            results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"detector, {'fp16' if args.fp16 else 'fp32'}, eager, {torch.cuda.get_device_name(0)}")
    print("| cudnn | shape | first pass ms | steady ms |\n|---|---|---:|---:|")
    for mode, by in results.items():
        for shape, (first, steady) in by.items():
            print(f"| {mode} | {shape} | {first:.1f} | {steady:.2f} |")
    if not results:
        print("choose: off")
        return 1
    steady = {m: sum(s for _, s in by.values()) for m, by in results.items()}
    first = {m: sum(f for f, _ in by.values()) for m, by in results.items()}
    best = min(steady.values())
    ok = [m for m in results if steady[m] <= 1.25 * best]
    print(f"choose: {min(ok, key=lambda m: first[m])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
