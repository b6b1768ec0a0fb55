"""Pixel losses between a super-resolved image and its ground truth."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["pixel_loss", "PIXEL_CRITERIA"]

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
