"""Plain tensor resizing with PyTorch's area, bilinear and bicubic interpolation.

This is the resize of Real-ESRGAN's degradation model (``F.interpolate`` without
anti-aliasing, ``align_corners=False``). MATLAB-style bicubic ``imresize`` lives in
:mod:`esrcli.ops.imresize`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["RESIZE_MODES", "resize", "scaled_size"]

RESIZE_MODES = ("area", "bilinear", "bicubic")


def scaled_size(h: int, w: int, scale: float) -> tuple[int, int]:
    """Output size ``(floor(h * scale), floor(w * scale))`` as ``F.interpolate`` computes it, at least 1."""
    return max(1, math.floor(h * scale)), max(1, math.floor(w * scale))


def resize(
    img: torch.Tensor,
    size: tuple[int, int] | None = None,
    scale_factor: float | None = None,
    mode: str = "bilinear",
) -> torch.Tensor:
    """Resize a batch by a scale factor or to a size (exactly one of them).

    With ``scale_factor`` the sampling grid uses ``1 / scale_factor`` like
    ``F.interpolate(x, scale_factor=s, mode=mode)`` does in Real-ESRGAN; the output size is
    ``floor(H * s)`` (at least 1). Bicubic can overshoot ``[0, 1]``; nothing is clamped here.

    Args:
        img: ``(B, C, H, W)`` float tensor.
        size: output ``(height, width)``, both >= 1.
        scale_factor: positive factor (> 1 enlarges).
        mode: ``"area"``, ``"bilinear"`` or ``"bicubic"``.

    Returns:
        ``(B, C, H', W')`` tensor, same dtype and device.

    Raises:
        ValueError: an unknown mode, not exactly one of size/scale_factor, or a bad value.
    """
    if not isinstance(img, torch.Tensor) or img.dim() != 4:
        raise ValueError("expected an image batch (B, C, H, W)")
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r} (choose from {', '.join(RESIZE_MODES)})")
    if (size is None) == (scale_factor is None):
        raise ValueError("give exactly one of size and scale_factor")
    h, w = img.shape[-2:]
    align = None if mode == "area" else False
    if scale_factor is not None:
        if not scale_factor > 0:
            raise ValueError(f"scale_factor must be > 0, got {scale_factor}")
        if scale_factor == 1:
            return img
        if math.floor(h * scale_factor) >= 1 and math.floor(w * scale_factor) >= 1:
            return F.interpolate(img, scale_factor=scale_factor, mode=mode, align_corners=align)
        size = scaled_size(h, w, scale_factor)
    oh, ow = int(size[0]), int(size[1])
    if oh < 1 or ow < 1:
        raise ValueError(f"output size must be >= 1, got {size}")
    if (oh, ow) == (h, w):
        return img
    return F.interpolate(img, size=(oh, ow), mode=mode, align_corners=align)
