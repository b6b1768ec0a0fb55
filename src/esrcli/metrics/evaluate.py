"""Full-reference evaluation of one SR/GT pair: PSNR and SSIM on RGB and on Y, plus NIQE of SR.

The conventions are those of SR papers (BasicSR ``test.py``): both images as ``uint8``,
the ground truth mod-cropped to multiples of the scale when that gives the output's size,
``crop_border`` pixels (default: the scale) removed on each side,
per-image values that are then averaged over a data set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from esrcli.errors import MetricError
from esrcli.metrics.niqe import niqe
from esrcli.metrics.psnr_ssim import psnr, ssim

__all__ = ["PairScores", "match_sizes", "evaluate_pair"]


@dataclass(frozen=True)
class PairScores:
    """Metrics of one SR image against its ground truth.

    Attributes:
        psnr: dB on RGB (``inf`` for identical images).
        ssim: on RGB, in ``[-1, 1]``.
        psnr_y: dB on Y (BT.601), ``inf`` for identical images.
        ssim_y: on Y.
        niqe: NIQE of the SR image (Y channel), or ``None`` when not computed or not computable.
        niqe_error: why NIQE is missing when it was asked for (e.g. image too small), else ``None``.
        gt_cropped: the ground truth was mod-cropped to the SR size.
    """

    psnr: float
    ssim: float
    psnr_y: float
    ssim_y: float
    niqe: float | None = None
    niqe_error: str | None = None
    gt_cropped: bool = False

    def as_dict(self) -> dict[str, float | None]:
        """The scores by name (``inf`` kept as a float)."""
        return {"psnr": self.psnr, "ssim": self.ssim, "psnr_y": self.psnr_y, "ssim_y": self.ssim_y, "niqe": self.niqe}


def match_sizes(sr: np.ndarray, gt: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Bring a pair to one shape: mod-crop GT to SR's size, repeat gray to RGB when the other is RGB.

    Args:
        sr: ``(h, w, C)`` image (C = 1 or 3).
        gt: ``(H, W, C')`` image.
        scale: the SR factor; GT whose sides, cut down to multiples of ``scale`` (BasicSR
            ``mod_crop``), equal SR's is cropped to them.

    Returns:
        ``(sr, gt, gt_cropped)`` with equal shapes.

    Raises:
        MetricError: the sizes differ otherwise (message gives both sizes).
    """
    if sr.ndim == 2:
        sr = sr[:, :, None]
    if gt.ndim == 2:
        gt = gt[:, :, None]
    (h, w), (hh, ww) = sr.shape[:2], gt.shape[:2]
    cropped = False
    if (h, w) != (hh, ww):
        s = max(1, int(scale))
        if (hh - hh % s, ww - ww % s) == (h, w):
            gt, cropped = gt[:h, :w], True
        else:
            raise MetricError(f"sizes differ: sr {w}x{h} vs gt {ww}x{hh}")
    if sr.shape[2] != gt.shape[2]:
        if sr.shape[2] == 1:
            sr = np.repeat(sr, gt.shape[2], axis=2)
        elif gt.shape[2] == 1:
            gt = np.repeat(gt, sr.shape[2], axis=2)
    return sr, gt, cropped


def evaluate_pair(sr: np.ndarray, gt: np.ndarray, scale: int, crop_border: int | None = None, with_niqe: bool = True) -> PairScores:
    """PSNR/SSIM (RGB and Y) of ``sr`` against ``gt`` and NIQE of ``sr``.

    Args:
        sr: ``(H, W[, C])`` ``uint8`` (or ``[0, 255]`` float) RGB or gray SR output.
        gt: the ground truth (see :func:`match_sizes` for the accepted size differences).
        scale: SR factor (for the GT mod-crop and the default ``crop_border``).
        crop_border: pixels removed on each side before every metric; default ``scale``.
        with_niqe: also compute NIQE (Y) of the SR image; an image too small for it gives
            ``niqe=None`` and a ``niqe_error`` instead of failing the pair.

    Returns:
        The :class:`PairScores`; never NaN.

    Raises:
        MetricError: mismatched sizes, or an image too small for SSIM after cropping.
    """
    border = int(scale) if crop_border is None else int(crop_border)
    sr, gt, cropped = match_sizes(np.asarray(sr), np.asarray(gt), scale)
    scores = dict(
        psnr=psnr(sr, gt, border, False),
        ssim=ssim(sr, gt, border, False),
        psnr_y=psnr(sr, gt, border, True),
        ssim_y=ssim(sr, gt, border, True),
    )
    for k, v in scores.items():
        if math.isnan(v):
            raise MetricError(f"{k} is undefined for this pair")
    value, error = None, None
    if with_niqe:
        try:
            value = niqe(sr, crop_border=border, convert="y")
        except MetricError as exc:
            error = str(exc)
    return PairScores(**scores, niqe=value, niqe_error=error, gt_cropped=cropped)
