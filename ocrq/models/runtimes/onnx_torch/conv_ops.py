"""Op builders for convolutions, pooling, normalisation and resizing (NCHW tensors)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ocrq.models.runtimes.onnx_torch.node import (
    Fn,
    Node,
    as_floats,
    as_ints,
    check_auto_pad,
    same_pads,
    split_pads,
    torch_pad,
)


def _conv(n: Node) -> Fn:
    auto_pad = check_auto_pad(n, same=True)
    w = n.const(1)
    nd = len(n.attrs["kernel_shape"]) if "kernel_shape" in n.attrs else w.dim() - 2  # type: ignore[union-attr]
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    strides = n.attrs.get("strides", [1] * nd)
    dilations = n.attrs.get("dilations", [1] * nd)
    group = n.attrs.get("group", 1)
    begin, end = split_pads(n.attrs.get("pads"), nd)
    pre = None if begin == end else torch_pad(begin, end)
    padding = begin if pre is None else [0] * nd
    kernel = list(n.attrs.get("kernel_shape", w.shape[2:]))  # type: ignore[union-attr]

    def fn(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        if auto_pad.startswith("SAME"):  # PP-OCRv6's 2x2 convolutions: pads by input size
            x = F.pad(x, same_pads(x.shape[2:], kernel, strides, dilations,
                                   auto_pad == "SAME_UPPER"))
        elif pre is not None:
            x = F.pad(x, pre)
        if nd == 2 and group == 1 and _gemm(x):
            return gemm_conv2d(x, w, b, strides, padding, dilations)
        return conv(x, w, b, strides, padding, dilations, group)

    return fn


def _gemm(x: torch.Tensor) -> bool:
    """Dense convolutions as batched GEMMs: on CUDA when cuDNN is off (OCRQ_CUDNN=off).

    Why: without cuDNN, torch's own CUDA convolution (slow_conv2d) runs im2col and
    a GEMM per image of the batch, so a pass costs rows x one row, and cuDNN costs
    1-2 s of kernel choice per new input shape (BENCHMARKS.md). One GEMM over the
    whole batch keeps cuBLAS busy; depthwise convolutions keep torch's own kernel.
    """
    return x.is_cuda and not torch.backends.cudnn.enabled


def gemm_conv2d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None,
                strides: list[int], padding: list[int], dilations: list[int]) -> torch.Tensor:
    """conv2d (groups 1) as im2col + one batched matmul (1x1: no im2col at all)."""
    n, c, h, wd = x.shape
    k, _, kh, kw = w.shape
    if (kh, kw) == (1, 1) and list(strides) == [1, 1] and not any(padding):
        out = torch.matmul(w.reshape(k, c), x.reshape(n, c, h * wd)).view(n, k, h, wd)
    else:
        oh = (h + 2 * padding[0] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
        ow = (wd + 2 * padding[1] - dilations[1] * (kw - 1) - 1) // strides[1] + 1
        cols = F.unfold(x, (kh, kw), dilation=dilations, padding=padding, stride=strides)
        out = torch.matmul(w.reshape(k, -1), cols).view(n, k, oh, ow)
    return out if b is None else out + b.view(1, -1, 1, 1)


def gemm_conv_transpose2d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None
                          ) -> torch.Tensor:
    """conv_transpose2d with kernel == stride (no overlap, no padding) as one matmul."""
    n, c, h, wd = x.shape
    _, cout, kh, kw = w.shape
    y = torch.matmul(w.reshape(c, -1).t(), x.reshape(n, c, h * wd))
    out = y.view(n, cout, kh, kw, h, wd).permute(0, 1, 4, 2, 5, 3)
    out = out.reshape(n, cout, h * kh, wd * kw)
    return out if b is None else out + b.view(1, -1, 1, 1)


def _conv_transpose(n: Node) -> Fn:
    check_auto_pad(n)
    if "output_shape" in n.attrs:
        raise NotImplementedError("ConvTranspose with output_shape is not supported")
    nd = len(n.attrs["kernel_shape"])
    conv = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[nd]
    begin, end = split_pads(n.attrs.get("pads"), nd)
    if begin != end:
        raise NotImplementedError("ConvTranspose with asymmetric pads is not supported")
    strides = n.attrs.get("strides", [1] * nd)
    dilations = n.attrs.get("dilations", [1] * nd)
    out_pad = n.attrs.get("output_padding", [0] * nd)
    group = n.attrs.get("group", 1)

    plain = (nd == 2 and group == 1 and not any(begin) and not any(out_pad)
             and list(dilations) == [1, 1] and list(strides) == list(n.attrs["kernel_shape"]))

    def fn(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        if plain and _gemm(x):
            return gemm_conv_transpose2d(x, w, b)
        return conv(x, w, b, strides, begin, out_pad, group, dilations)

    return fn


def _pool(n: Node) -> Fn:
    auto_pad = check_auto_pad(n, same=n.op_type == "MaxPool")
    kernel = n.attrs["kernel_shape"]
    nd = len(kernel)
    strides = n.attrs.get("strides", [1] * nd)
    ceil = bool(n.attrs.get("ceil_mode", 0))
    begin, end = split_pads(n.attrs.get("pads"), nd)
    if n.op_type == "MaxPool":
        if len(n.outputs) > 1:
            raise NotImplementedError("MaxPool with an Indices output is not supported")
        pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[nd]
        dilations = n.attrs.get("dilations", [1] * nd)
        pre = None if begin == end else torch_pad(begin, end)
        padding = begin if pre is None else [0] * nd

        def max_fn(x: torch.Tensor) -> torch.Tensor:
            if auto_pad.startswith("SAME"):  # PP-OCRv6's recogniser: pads by input size
                x = F.pad(x, same_pads(x.shape[2:], kernel, strides, dilations,
                                       auto_pad == "SAME_UPPER"), value=float("-inf"))
            elif pre is not None:
                x = F.pad(x, pre, value=float("-inf"))
            return pool(x, kernel, strides, padding, dilations, ceil_mode=ceil)

        return max_fn
    if begin != end:
        raise NotImplementedError("AveragePool with asymmetric pads is not supported")
    avg = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[nd]
    include = bool(n.attrs.get("count_include_pad", 0))
    return lambda x: avg(x, kernel, strides, begin, ceil, include)


def _global_avg(n: Node) -> Fn:
    return lambda x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


def _batch_norm(n: Node) -> Fn:
    if len(n.outputs) > 1 or n.attrs.get("training_mode", 0):
        raise NotImplementedError("BatchNormalization in training mode is not supported")
    eps = float(n.attrs.get("epsilon", 1e-5))
    return lambda x, s, b, m, v: F.batch_norm(x, m, v, s, b, False, 0.0, eps)


def _layer_norm(n: Node) -> Fn:  # produced by the LayerNorm fusion, not an ONNX op here
    eps = float(n.attrs["epsilon"])
    return lambda x: F.layer_norm(x, (x.shape[-1],), eps=eps)


def _resize(n: Node) -> Fn:
    mode = n.attrs.get("mode", b"nearest")
    ctm = n.attrs.get("coordinate_transformation_mode", b"half_pixel")
    nearest = n.attrs.get("nearest_mode", b"round_prefer_floor")
    if n.opset < 11:
        ctm, nearest = b"asymmetric", b"floor"  # the opset-10 definition
    if (mode, ctm, nearest) != (b"nearest", b"asymmetric", b"floor"):
        raise NotImplementedError(
            f"Resize mode={mode!r} coordinate_transformation_mode={ctm!r} "
            f"nearest_mode={nearest!r} is not supported (only nearest/asymmetric/floor)"
        )
    scales = as_floats(n.need_const(1 if n.opset < 11 else 2, "scales")) or None
    sizes = as_ints(n.need_const(3, "sizes")) if n.opset >= 11 else None
    if scales:
        if scales[:2] != [1.0, 1.0]:
            raise NotImplementedError("Resize of the batch or channel axis is not supported")
        # torch "nearest" is floor(dst / scale): ONNX asymmetric + floor exactly.
        return lambda x, *_: F.interpolate(x, scale_factor=scales[2:], mode="nearest")
    if sizes:
        return lambda x, *_: F.interpolate(x, size=sizes[2:], mode="nearest")
    raise NotImplementedError("Resize without scales or sizes is not supported")


CONV_BUILDERS: dict[str, Callable[[Node], Fn]] = {
    "AveragePool": _pool,
    "BatchNormalization": _batch_norm,
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "GlobalAveragePool": _global_avg,
    "MaxPool": _pool,
    "Resize": _resize,
}
# Ops only the graph fusions create; never accepted from an ONNX file.
FUSED_BUILDERS: dict[str, Callable[[Node], Fn]] = {"ocrq.LayerNorm": _layer_norm}
