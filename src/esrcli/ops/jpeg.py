"""Real JPEG compression artifacts through libjpeg (OpenCV ``imencode`` / ``imdecode``).

Real-ESRGAN trains with a differentiable JPEG approximation (DiffJPEG) on the GPU; esr uses
the real codec (baseline JPEG, 4:2:0 chroma subsampling, OpenCV's default) so the blocking
and ringing are exactly those of real files. Tensors on another device make a round trip
through the CPU. Not differentiable.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

__all__ = ["jpeg_compress", "jpeg_roundtrip_uint8"]


def jpeg_roundtrip_uint8(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode one ``(H, W, 3)`` uint8 RGB array at ``quality`` (1..100).

    Raises:
        ValueError: quality outside 1..100, wrong array layout, or an encoder failure.
    """
    q = int(quality)
    if not 1 <= q <= 100:
        raise ValueError(f"JPEG quality must be in [1, 100], got {quality}")
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, q])
    if not ok:
        raise ValueError("JPEG encoding failed")
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return bgr[:, :, ::-1]


def jpeg_compress(img: torch.Tensor, quality: int | Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Compress and decompress each image of a batch with libjpeg at a quality factor.

    The input is clamped to ``[0, 1]`` and rounded to 8-bit levels first (as a file would be).

    Args:
        img: ``(B, 3, H, W)`` float RGB in ``[0, 1]``, any device.
        quality: JPEG quality 1..100 (higher is better); one int for the batch, or one per
            sample (sequence or ``(B,)`` tensor; floats are rounded).

    Returns:
        ``(B, 3, H, W)`` tensor of 8-bit levels / 255, same dtype and device as ``img``.

    Raises:
        ValueError: not a ``(B, 3, H, W)`` tensor, a quality outside 1..100 or a count of
            qualities that does not match the batch.
    """
    if not isinstance(img, torch.Tensor) or img.dim() != 4 or img.shape[1] != 3:
        shape = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
        raise ValueError(f"expected an RGB batch (B, 3, H, W), got {shape}")
    b = img.shape[0]
    if isinstance(quality, torch.Tensor):
        qs = [int(round(float(q))) for q in quality.reshape(-1).tolist()]
    elif isinstance(quality, (int, float)):
        qs = [int(round(quality))] * b
    else:
        qs = [int(round(float(q))) for q in quality]
    if len(qs) != b:
        raise ValueError(f"got {len(qs)} JPEG qualities for a batch of {b}")
    u8 = (img.detach().clamp(0, 1) * 255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = np.stack([jpeg_roundtrip_uint8(u8[i], qs[i]) for i in range(b)])
    t = torch.from_numpy(out).permute(0, 3, 1, 2)
    return t.to(device=img.device, dtype=img.dtype).div_(255.0)
