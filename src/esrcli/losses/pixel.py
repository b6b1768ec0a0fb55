"""Pixel losses between a super-resolved image and its ground truth, and the sub-pixel phase loss."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["pixel_loss", "phase_loss", "phase_means", "PIXEL_CRITERIA"]

PIXEL_CRITERIA = ("l1", "l2", "charbonnier")


def pixel_loss(sr: Tensor, gt: Tensor, criterion: str = "l1", eps: float = 1e-12) -> Tensor:
    """Mean pixel loss.

    Args:
        sr: ``(B, C, H, W)`` network output, float, ``[0, 1]`` nominal range.
        gt: ``(B, C, H, W)`` target, same shape.
        criterion: ``"l1"`` (mean absolute error, Real-ESRGAN), ``"l2"`` (mean squared error) or
            ``"charbonnier"`` (``mean(sqrt((sr - gt)^2 + eps))``, Lai et al., LapSRN 2017).
        eps: Charbonnier's epsilon.

    Returns:
        A scalar float32 tensor (computed in float32 even for bf16/fp16 inputs).

    Raises:
        ValueError: mismatched shapes or an unknown criterion.
    """
    if sr.shape != gt.shape:
        raise ValueError(f"pixel_loss: sr {tuple(sr.shape)} and gt {tuple(gt.shape)} differ in shape")
    diff = sr.float() - gt.float()
    if criterion == "l1":
        return diff.abs().mean()
    if criterion == "l2":
        return diff.square().mean()
    if criterion == "charbonnier":
        return torch.sqrt(diff.square() + eps).mean()
    raise ValueError(f"criterion: expected one of {', '.join(PIXEL_CRITERIA)}, got {criterion!r}")


def phase_loss(sr: Tensor, gt: Tensor, period: int) -> Tensor:
    """Sub-pixel phase loss: a penalty on a fixed grid (checkerboard) pattern in ``sr - gt``.

    A sub-pixel convolution upsampler (pixel shuffle, Shi et al. 2016) produces each of the
    ``period**2`` output phases ``(y mod period, x mod period)`` with its own filters, so a
    generator that drifts apart on them draws a regular grid of ``period`` pixels, the
    "checkerboard artefact" of Odena et al. (2016), that pixel losses barely see: the grid is
    weak against the per-pixel error, and the error's sign is random. This term averages the
    error ``sr - gt`` over each phase of each sample and channel, removes the mean over the
    phases (a colour shift is not a grid), and takes the mean absolute value of what is
    left. It is zero when no phase is brighter than another on average, whatever the
    per-pixel error, and it costs one reshape.

    Args:
        sr: ``(B, C, H, W)`` network output, float, ``[0, 1]`` nominal range.
        gt: ``(B, C, H, W)`` target, same shape.
        period: the grid's period in pixels (the upsampler's scale); rows and columns past the
            last whole period are left out.

    Returns:
        A scalar float32 tensor in the images' units (``[0, 1]`` range: 1/255 is one 8-bit
        level of average phase offset).

    Raises:
        ValueError: mismatched shapes, ``period < 1`` or images smaller than one period.
    """
    if sr.shape != gt.shape:
        raise ValueError(f"phase_loss: sr {tuple(sr.shape)} and gt {tuple(gt.shape)} differ in shape")
    means = phase_means(sr.float() - gt.float(), period)  # (B, C, period, period)
    return (means - means.mean(dim=(2, 3), keepdim=True)).abs().mean()


def phase_means(x: Tensor, period: int) -> Tensor:
    """The mean of each sub-pixel phase ``(y mod period, x mod period)`` of each image and channel.

    Args:
        x: ``(B, C, H, W)`` float.
        period: the phase period in pixels; rows and columns past the last whole period are
            left out.

    Returns:
        ``(B, C, period, period)``: entry ``[b, c, py, px]`` is the mean of
        ``x[b, c, py::period, px::period]`` over whole periods.

    Raises:
        ValueError: ``period < 1`` or images smaller than one period.
    """
    b, c, h, w = x.shape
    if period < 1 or h < period or w < period:
        raise ValueError(f"phase_means: period {period} does not fit images of {w}x{h}")
    h, w = h - h % period, w - w % period
    return x[..., :h, :w].reshape(b, c, h // period, period, w // period, period).mean(dim=(2, 4))
