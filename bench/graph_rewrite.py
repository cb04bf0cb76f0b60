"""What the in-memory graph rewrites and the CPU pass size do to one forward pass.

    python bench/graph_rewrite.py [--repeat N] [--models std,str,str2,dir,rot]

Table 1: each built-in model as ONNX Runtime loads the wheel's file (plain) and as
ocrq loads it (runtimes/graph_opt.py), one intra-op thread, the same random input;
ms per pass (best of ``--repeat``), the speed-up, the largest output difference
and the rewrites counted. Table 2: the line models' microseconds per input column
against the columns in one pass (48-px crops, rewritten graphs): the curve behind
runtimes/sharded.py's piece size. Random input: the arithmetic, not the text.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from _common import REPO  # noqa: F401 - first: checks that ocrq is installed

from ocrq.models.repository import ModelRepository
from ocrq.models.runtimes.onnxruntime import OnnxRuntime

SHAPES = {"std": (1, 3, 960, 736), "str": (8, 3, 48, 320), "str2": (8, 3, 48, 320),
          "dir": (8, 3, 48, 192), "rot": (1, 3, 224, 224)}
# (rows, width) per pass: the recognisers' line crops, the line-direction model's 192 px.
PASSES = {"str": [(1, 128), (2, 128), (1, 384), (4, 128), (2, 384), (8, 128), (4, 384),
                  (8, 384), (16, 384)],
          "dir": [(1, 192), (2, 192), (4, 192), (8, 192), (16, 192), (64, 192)]}
PASSES["str2"] = PASSES["str"]


def best_ms(runtime: OnnxRuntime, x: np.ndarray, repeat: int) -> float:
    runtime.run(x)  # first-call allocations, not timed
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        runtime.run(x)
        times.append(time.perf_counter() - t0)
    return min(times) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--models", default=",".join(SHAPES))
    args = ap.parse_args()
    repo = ModelRepository(tempfile.mkdtemp(prefix="ocrq-bench-"))
    repo.ensure_defaults()
    rng = np.random.default_rng(0)
    print("| model | input | plain ms | rewritten ms | x plain | max diff | rewrites |")
    print("|---|---|---:|---:|---:|---:|---|")
    for name in args.models.split(","):
        path = repo.manifest(name).weights_path
        x = rng.uniform(-1, 1, SHAPES[name]).astype(np.float32)
        plain = OnnxRuntime(path, threads=1, rewrite=False)
        fast = OnnxRuntime(path, threads=1, rewrite=True)
        a, b = best_ms(plain, x, args.repeat), best_ms(fast, x, args.repeat)
        diff = float(np.abs(plain.run(x) - fast.run(x)).max())
        counts = ", ".join(f"{k} {v}" for k, v in fast.rewrites.items() if v)
        print(f"| {name} | {'x'.join(map(str, SHAPES[name]))} | {a:.1f} | {b:.1f} | "
              f"{a / b:.2f} | {diff:.1e} | {counts} |")
    print("\n| model | rows x width | columns | us per column |")
    print("|---|---|---:|---:|")
    for name, passes in PASSES.items():
        fast = OnnxRuntime(repo.manifest(name).weights_path, threads=1)
        for rows, width in passes:
            x = rng.uniform(-1, 1, (rows, 3, 48, width)).astype(np.float32)
            ms = best_ms(fast, x, args.repeat)
            print(f"| {name} | {rows} x {width} | {rows * width} | "
                  f"{ms * 1000 / (rows * width):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
