"""The GPU's dense convolutions as batched GEMMs (OCRQ_CUDNN=off) equal torch's own,
for every dense convolution configuration of the shipped models (run on CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")  # the torch extra: installed by the dev extra in CI
F = torch.nn.functional

from ocrq.models.repository import ModelRepository  # noqa: E402
from ocrq.models.runtimes.onnx_torch import load_module  # noqa: E402
from ocrq.models.runtimes.onnx_torch.conv_ops import (  # noqa: E402
    gemm_conv2d,
    gemm_conv_transpose2d,
)
from ocrq.models.runtimes.onnx_torch.module import BUF, PY  # noqa: E402


def _configs(root: Path) -> list[tuple[str, object, list]]:
    out = []
    for kind in ("std", "str", "str2", "dir", "rot"):
        module = load_module(ModelRepository(root).manifest(kind, 1).weights_path, label=kind)
        for step in module.steps:
            if step.op not in ("Conv", "ConvTranspose"):
                continue
            w = next(module._buffers[v] for k, v in step.args if k == BUF)
            out.append((step.op, w, [v for k, v in step.args if k == PY]))
    return out


def test_every_dense_conv_of_the_models_as_gemm(model_root: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    checked = 0
    for op, w, _ in _configs(model_root):
        k, c, kh, kw = w.shape
        if op == "Conv" and c == 1 and k > 1:
            continue  # depthwise: stays on torch's own kernel
        if op == "Conv":
            for stride, pad in (((1, 1), (kh // 2, kw // 2)), ((2, 2), (kh // 2, kw // 2))):
                x = torch.randn(3, c, 19, 23, generator=gen, dtype=torch.float64)
                wd = w.double()
                want = F.conv2d(x, wd, None, stride, pad, 1)
                got = gemm_conv2d(x, wd, None, list(stride), list(pad), [1, 1])
                torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
        else:
            x = torch.randn(2, k, 7, 9, generator=gen, dtype=torch.float64)
            wd = w.double()
            torch.testing.assert_close(gemm_conv_transpose2d(x, wd, None),
                                       F.conv_transpose2d(x, wd, None, stride=(kh, kw)),
                                       rtol=1e-9, atol=1e-9)
        checked += 1
    assert checked >= 60  # the models' 1x1, 3x3, 1x3 dense convolutions and the upsampling
