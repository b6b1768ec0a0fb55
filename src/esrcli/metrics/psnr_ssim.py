"""PSNR and SSIM with the conventions of SR papers (BasicSR ``calculate_psnr``/``calculate_ssim``).

* Images are ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` RGB on the ``[0, 255]`` scale (``uint8``
  or float); computations in float64.
* ``crop_border`` pixels are removed on each side first (papers use the scale factor).
* ``test_y_channel``: the metric is computed on
  ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` (BT.601 studio swing, ``[16, 235]``),
  not rounded. As BasicSR, the colour conversion runs in float32 (inputs ``x/255`` and the
  result stored in float32) and the metric in float64; this is what published tables
  report (the difference to an all-float64 ``Y`` is about 1e-6 dB). Gray images are used as is.
* PSNR: ``10 log10(255^2 / MSE)``, MSE over all pixels and channels; identical images give
  ``inf``.
* SSIM (Wang, Bovik, Sheikh, Simoncelli, IEEE TIP 13(4), 2004, and their MATLAB ``ssim_index``):
  11x11 Gaussian window, sigma 1.5, ``K1 = 0.01``, ``K2 = 0.03``, ``L = 255``, 'valid' filtering
  (no padding), no downsampling; the mean of the SSIM map per channel, then averaged over
  channels. The Gaussian is applied separably.

Tensor versions (``psnr_pt``, ``ssim_pt``) take ``(B, C, H, W)`` float tensors in ``[0, 1]`` on any
device and return one value per image (float64), with the Y channel in float64 (no float32 step).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from esrcli.errors import MetricError
from esrcli.ops.color import YCBCR_MATRIX

__all__ = ["psnr", "ssim", "y_channel", "psnr_pt", "ssim_pt", "SSIM_WINDOW", "SSIM_SIGMA"]

#: SSIM window size and Gaussian sigma (Wang et al. 2004).
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
_K1, _K2, _L = 0.01, 0.03, 255.0


def y_channel(img: np.ndarray) -> np.ndarray:
    """BasicSR's ``to_y_channel``: Y on the ``[0, 255]`` scale, float32 colour conversion.

    Args:
        img: ``(H, W, 3)`` RGB on ``[0, 255]`` (any dtype); other channel counts are returned
            unchanged (as float64).

    Returns:
        ``(H, W, 1)`` float64 Y (values of float32 precision) for RGB input.
    """
    a = np.asarray(img, dtype=np.float64)
    if a.ndim == 3 and a.shape[2] == 3:
        x = a.astype(np.float32) / np.float32(255.0)
        y = x.astype(np.float64) @ YCBCR_MATRIX[0] + 16.0
        y32 = (y / 255.0).astype(np.float32) * np.float32(255.0)
        return y32.astype(np.float64)[..., None]
    return a


def _prepare(sr: np.ndarray, gt: np.ndarray, crop_border: int, test_y_channel: bool, name: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(sr), np.asarray(gt)
    if a.shape != b.shape:
        raise MetricError(f"{name}: image sizes differ: sr {tuple(a.shape)} vs gt {tuple(b.shape)}")
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3):
        raise MetricError(f"{name}: expected (H, W), (H, W, 1) or (H, W, 3) images, got shape {tuple(np.asarray(sr).shape)}")
    if crop_border < 0:
        raise MetricError(f"{name}: crop_border must be >= 0, got {crop_border}")
    if crop_border:
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    if a.size == 0:
        raise MetricError(f"{name}: nothing left after cropping {crop_border} pixels from each side of {tuple(np.asarray(sr).shape)}")
    if test_y_channel:
        return y_channel(a), y_channel(b)
    return a.astype(np.float64), b.astype(np.float64)


def psnr(sr: np.ndarray, gt: np.ndarray, crop_border: int = 0, test_y_channel: bool = False) -> float:
    """Peak signal-to-noise ratio in dB, peak 255 (BasicSR ``calculate_psnr``).

    Args:
        sr: restored image ``(H, W[, C])``, RGB or gray, ``[0, 255]`` (uint8 or float).
        gt: ground truth, same shape.
        crop_border: pixels removed on each side first (usually the scale).
        test_y_channel: compute on Y of YCbCr (see module docstring).

    Returns:
        PSNR in dB; ``math.inf`` for identical images.

    Raises:
        MetricError: different shapes, unsupported shape, or nothing left after cropping.

    Example:
        >>> a = np.zeros((8, 8, 3)); b = a + 1
        >>> round(psnr(a, b), 4)
        48.1308
    """
    a, b = _prepare(sr, gt, crop_border, test_y_channel, "psnr")
    mse = float(np.mean((a - b) ** 2))
    if mse == 0:
        return math.inf
    return 10.0 * math.log10(_L * _L / mse)


def _gauss_1d(dtype: type = np.float64) -> np.ndarray:
    return cv2.getGaussianKernel(SSIM_WINDOW, SSIM_SIGMA, ktype=cv2.CV_64F).reshape(-1).astype(dtype)


def _ssim_strip_sum(x: np.ndarray, y: np.ndarray, g: np.ndarray, top: int, rows: int) -> float:
    """Sum of the SSIM map over output rows ``top .. top + rows - 1`` of one channel."""
    r = SSIM_WINDOW // 2
    c1 = (_K1 * _L) ** 2
    c2 = (_K2 * _L) ** 2
    xs = x[top : top + rows + 2 * r]
    ys = y[top : top + rows + 2 * r]
    f = [cv2.sepFilter2D(v, cv2.CV_64F, g, g)[r:-r, r:-r] for v in (xs, ys, xs * xs, ys * ys, xs * ys)]
    mu1, mu2 = f[0], f[1]
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    num = (2 * mu12 + c1) * (2 * (f[4] - mu12) + c2)
    den = (mu1_sq + mu2_sq + c1) * ((f[2] - mu1_sq) + (f[3] - mu2_sq) + c2)
    return float(np.sum(num / den))


def _ssim_channels(a: np.ndarray, b: np.ndarray, workers: int, strip: int = 48) -> list[float]:
    """Mean SSIM of each channel of ``(C, H, W)`` arrays, in cache-sized strips (threads)."""
    g = _gauss_1d()
    c, h, w = a.shape
    out_h, out_w = h - SSIM_WINDOW + 1, w - SSIM_WINDOW + 1
    tasks = [(k, top, min(strip, out_h - top)) for k in range(c) for top in range(0, out_h, strip)]

    def run(task: tuple[int, int, int]) -> float:
        k, top, rows = task
        return _ssim_strip_sum(a[k], b[k], g, top, rows)

    if workers > 1 and len(tasks) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            sums = list(pool.map(run, tasks))
    else:
        sums = [run(t) for t in tasks]
    totals = [0.0] * c
    for (k, _, _), v in zip(tasks, sums):  # fixed order: the result does not depend on threads
        totals[k] += v
    return [t / (out_h * out_w) for t in totals]


def ssim(
    sr: np.ndarray, gt: np.ndarray, crop_border: int = 0, test_y_channel: bool = False, workers: int | None = None
) -> float:
    """Structural similarity (Wang et al. 2004), BasicSR ``calculate_ssim`` / MATLAB ``ssim_index``.

    Args:
        sr: restored image ``(H, W[, C])``, RGB or gray, ``[0, 255]`` (uint8 or float).
        gt: ground truth, same shape.
        crop_border: pixels removed on each side first.
        test_y_channel: compute on Y of YCbCr.
        workers: threads (default: up to 4); the result does not depend on it.

    Returns:
        Mean SSIM in ``[-1, 1]`` (1 for identical images), averaged over channels.

    Raises:
        MetricError: different shapes, or smaller than 11x11 after cropping.
    """
    a, b = _prepare(sr, gt, crop_border, test_y_channel, "ssim")
    if a.shape[0] < SSIM_WINDOW or a.shape[1] < SSIM_WINDOW:
        raise MetricError(f"ssim: image too small ({a.shape[1]}x{a.shape[0]} after cropping), needs at least {SSIM_WINDOW}x{SSIM_WINDOW}")
    a = np.ascontiguousarray(a.transpose(2, 0, 1))
    b = np.ascontiguousarray(b.transpose(2, 0, 1))
    workers = max(1, min(4, os.cpu_count() or 1)) if workers is None else max(1, int(workers))
    return float(np.mean(_ssim_channels(a, b, workers)))


def _prepare_pt(sr: torch.Tensor, gt: torch.Tensor, crop_border: int, test_y_channel: bool, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if sr.shape != gt.shape:
        raise MetricError(f"{name}: tensor sizes differ: sr {tuple(sr.shape)} vs gt {tuple(gt.shape)}")
    if sr.dim() != 4 or sr.shape[1] not in (1, 3):
        raise MetricError(f"{name}: expected (B, 1|3, H, W) tensors, got {tuple(sr.shape)}")
    if crop_border < 0:
        raise MetricError(f"{name}: crop_border must be >= 0, got {crop_border}")
    if crop_border:
        sr = sr[..., crop_border:-crop_border, crop_border:-crop_border]
        gt = gt[..., crop_border:-crop_border, crop_border:-crop_border]
    if sr.numel() == 0:
        raise MetricError(f"{name}: nothing left after cropping {crop_border} pixels from each side")
    a, b = sr.to(torch.float64), gt.to(torch.float64)
    if test_y_channel and a.shape[1] == 3:
        w = torch.as_tensor(YCBCR_MATRIX[0], dtype=torch.float64, device=a.device).view(1, 3, 1, 1)
        a = (a * w).sum(1, keepdim=True) / 255.0 + 16.0 / 255.0
        b = (b * w).sum(1, keepdim=True) / 255.0 + 16.0 / 255.0
    return a, b


def psnr_pt(sr: torch.Tensor, gt: torch.Tensor, crop_border: int = 0, test_y_channel: bool = False) -> torch.Tensor:
    """PSNR per image for tensors (same conventions as :func:`psnr`, Y in float64).

    Args:
        sr: ``(B, C, H, W)`` float in ``[0, 1]``, C = 1 or 3 (RGB).
        gt: same shape.
        crop_border: pixels removed on each side.
        test_y_channel: compute on Y.

    Returns:
        float64 tensor ``(B,)`` of dB values (``inf`` where identical), on the input's device.

    Raises:
        MetricError: different or unsupported shapes.
    """
    a, b = _prepare_pt(sr, gt, crop_border, test_y_channel, "psnr_pt")
    mse = ((a - b) ** 2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(1.0 / mse)


def ssim_pt(sr: torch.Tensor, gt: torch.Tensor, crop_border: int = 0, test_y_channel: bool = False) -> torch.Tensor:
    """SSIM per image for tensors (same conventions as :func:`ssim`, float64, separable window).

    Args:
        sr: ``(B, C, H, W)`` float in ``[0, 1]``, C = 1 or 3 (RGB).
        gt: same shape.
        crop_border: pixels removed on each side.
        test_y_channel: compute on Y.

    Returns:
        float64 tensor ``(B,)``: the SSIM map mean over channels and pixels.

    Raises:
        MetricError: different or unsupported shapes, smaller than 11x11 after cropping.
    """
    a, b = _prepare_pt(sr, gt, crop_border, test_y_channel, "ssim_pt")
    if a.shape[-1] < SSIM_WINDOW or a.shape[-2] < SSIM_WINDOW:
        raise MetricError(f"ssim_pt: images too small ({a.shape[-1]}x{a.shape[-2]}), needs at least {SSIM_WINDOW}x{SSIM_WINDOW}")
    a, b = a * 255.0, b * 255.0
    c = a.shape[1]
    g = torch.as_tensor(_gauss_1d(), dtype=torch.float64, device=a.device)
    gh = g.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    gw = g.view(1, 1, 1, -1).expand(c, 1, 1, -1)

    def filt(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(x, gh, groups=c), gw, groups=c)

    c1 = (_K1 * _L) ** 2
    c2 = (_K2 * _L) ** 2
    mu1, mu2 = filt(a), filt(b)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s1 = filt(a * a) - mu1_sq
    s2 = filt(b * b) - mu2_sq
    s12 = filt(a * b) - mu12
    m = ((2 * mu12 + c1) * (2 * s12 + c2)) / ((mu1_sq + mu2_sq + c1) * (s1 + s2 + c2))
    return m.mean(dim=(1, 2, 3))
