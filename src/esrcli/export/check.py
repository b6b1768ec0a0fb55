"""Run exported models in their runtimes (onnxruntime, ncnn) and compare with PyTorch.

The inputs are crops of esr's own test chart (edges, gratings, text, texture; see
:func:`esrcli.data.testchart.draw_test_chart`), at one or more sizes, so one check also
shows that the dynamic sizes work. The figure is the PSNR in dB of the runtime's output
against the PyTorch float32 output, both clamped to ``[0, 1]`` (data range 1).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from esrcli.data.testchart import draw_test_chart
from esrcli.errors import WeightsError
from esrcli.export._deps import require

__all__ = ["Check", "check_onnx", "check_ncnn", "psnr_db", "DEFAULT_SIZES"]

DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((48, 64), (72, 40))
"""``(height, width)`` of the check inputs: two shapes, both divisible by 4 (x1 RRDBNet)."""


@dataclass(frozen=True)
class Check:
    """One comparison: input size ``(H, W)`` and PSNR in dB (``inf`` when identical)."""

    size: tuple[int, int]
    psnr: float


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two arrays of values in ``[0, 1]`` (clamped), data range 1; ``inf`` if equal.

    Raises:
        WeightsError: different shapes (the runtime's output does not match PyTorch's).
    """
    if a.shape != b.shape:
        raise WeightsError(f"output shape {a.shape} differs from PyTorch's {b.shape}")
    mse = float(np.mean((np.clip(a.astype(np.float64), 0, 1) - np.clip(b.astype(np.float64), 0, 1)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def _inputs(channels: int, sizes: tuple[tuple[int, int], ...]) -> list[np.ndarray]:
    side = max(64, *(max(s) for s in sizes))
    chart = draw_test_chart(side + (-side % 4))
    out = []
    for i, (h, w) in enumerate(sizes):
        crop = chart[i * 3 : i * 3 + h, i * 5 : i * 5 + w]
        if crop.shape[:2] != (h, w):
            crop = chart[:h, :w]
        img = crop.transpose(2, 0, 1)
        if channels != 3:
            img = np.resize(img.mean(0, keepdims=True), (channels, h, w))
        out.append(np.ascontiguousarray(img, dtype=np.float32))
    return out


def _reference(net: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net.float()(torch.from_numpy(x)[None]).numpy()[0]


def check_onnx(path: str | os.PathLike, net: nn.Module, sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES) -> list[Check]:
    """Run an exported ONNX file in onnxruntime (CPU) against ``net`` in float32.

    Args:
        path: the ``.onnx`` file (fp32 or fp16 input).
        net: the PyTorch generator it was exported from.
        sizes: ``(H, W)`` of the inputs; each runs as its own session call.

    Returns:
        One :class:`Check` per size.

    Raises:
        EsrError: onnxruntime is missing (``esrcli[export]``).
        WeightsError: the runtime failed or gave an output of the wrong shape.
    """
    ort = require("onnxruntime", "checking an ONNX export")
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise WeightsError(f"{path}: onnxruntime cannot load it ({str(exc).splitlines()[0][:200]})") from None
    inp = sess.get_inputs()[0]
    dtype = np.float16 if "float16" in inp.type else np.float32
    channels = inp.shape[1] if isinstance(inp.shape[1], int) else 3
    out = []
    for x in _inputs(channels, sizes):
        try:
            y = sess.run(None, {inp.name: x[None].astype(dtype)})[0][0]
        except Exception as exc:  # noqa: BLE001
            raise WeightsError(f"{path}: onnxruntime failed on a {x.shape[1]}x{x.shape[2]} input ({str(exc).splitlines()[0][:200]})") from None
        out.append(Check((x.shape[1], x.shape[2]), psnr_db(y.astype(np.float32), _reference(net, x))))
    return out


def run_ncnn(param: str | os.PathLike, bin_: str | os.PathLike, x: np.ndarray, threads: int = 2) -> np.ndarray:
    """Run an ncnn model on one ``(C, H, W)`` float32 image; returns ``(C, H', W')`` float32.

    Input blob ``data``, output blob ``output`` (as realesrgan-ncnn-vulkan). fp16 storage and
    arithmetic are turned off so the figure measures the file, not the CPU's fp16 support.

    Raises:
        EsrError: the ``ncnn`` package is missing (``esrcli[export]``).
        WeightsError: ncnn cannot load or run the files.
    """
    ncnn = require("ncnn", "running an ncnn model")
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = threads
    for opt in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage"):
        if hasattr(net.opt, opt):
            setattr(net.opt, opt, False)
    if net.load_param(str(param)) != 0 or net.load_model(str(bin_)) != 0:
        raise WeightsError(f"{param}: ncnn cannot load this .param / .bin pair")
    # ncnn.Mat wraps the array's memory without copying: keep the array alive until the
    # output has been copied out (a temporary freed early gives garbage results).
    data = np.ascontiguousarray(x, dtype=np.float32)
    mat = ncnn.Mat(data)
    ex = net.create_extractor()
    ex.input("data", mat)
    rc, out = ex.extract("output")
    if rc != 0:
        raise WeightsError(f"{param}: ncnn failed to run the model (error {rc})")
    result = np.array(out, dtype=np.float32, copy=True)
    del ex, mat, data
    return result


def check_ncnn(
    param: str | os.PathLike, bin_: str | os.PathLike, net: nn.Module, sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES
) -> list[Check]:
    """Run an ncnn ``.param`` / ``.bin`` pair with the ``ncnn`` package against ``net`` in float32.

    Returns:
        One :class:`Check` per size.

    Raises:
        EsrError: the ``ncnn`` package is missing (``esrcli[export]``).
        WeightsError: ncnn cannot load or run it, or the output has the wrong shape.
    """
    channels = int(getattr(net, "num_in_ch", 3))
    return [
        Check((x.shape[1], x.shape[2]), psnr_db(run_ncnn(param, bin_, x), _reference(net, x)))
        for x in _inputs(channels, sizes)
    ]
