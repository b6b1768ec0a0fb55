"""Real JPEG compression artifacts: libjpeg (OpenCV ``imencode`` / ``imdecode``) or its torch twin.

Real-ESRGAN trains with a differentiable JPEG approximation (DiffJPEG) on the GPU; esr uses
the real codec (baseline JPEG, 4:2:0 chroma subsampling, OpenCV's default) so the blocking
and ringing are exactly those of real files. With :func:`jpeg_compress` tensors on another
device make a round trip through the CPU; :func:`jpeg_compress_torch` runs the same codec,
step for step, in torch on the tensors' device. Neither is differentiable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["jpeg_compress", "jpeg_compress_torch", "jpeg_roundtrip_uint8", "quant_tables"]


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


def _qualities(img: torch.Tensor, quality: int | Sequence[int] | torch.Tensor) -> list[int]:
    """Check the batch and return one integer quality in 1..100 per sample."""
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
    if any(not 1 <= q <= 100 for q in qs):
        raise ValueError(f"JPEG quality must be in [1, 100], got {qs}")
    return qs


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
    qs = _qualities(img, quality)
    b = img.shape[0]
    u8 = (img.detach().clamp(0, 1) * 255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = np.stack([jpeg_roundtrip_uint8(u8[i], qs[i]) for i in range(b)])
    t = torch.from_numpy(out).permute(0, 3, 1, 2)
    return t.to(device=img.device, dtype=img.dtype).div_(255.0)


# Annex K of ITU-T T.81 (the IJG's base tables), row-major.
_LUMA_TABLE = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
_CHROMA_TABLE = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
)  # fmt: skip


def quant_tables(quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """libjpeg's quantisation tables for each quality (``jpeg_quality_scaling``, baseline).

    Args:
        quality: ``(B,)`` integer qualities in 1..100.

    Returns:
        ``(luma, chroma)``, each ``(B, 8, 8)`` float32 divisors in 1..255 on ``quality``'s device.
    """
    q = quality.to(torch.int64).clamp(1, 100)
    scale = torch.where(q < 50, 5000 // q, 200 - 2 * q)[:, None, None]
    out = []
    for table in (_LUMA_TABLE, _CHROMA_TABLE):
        base = torch.tensor(table, dtype=torch.int64, device=q.device).reshape(1, 8, 8)
        out.append(torch.div(base * scale + 50, 100, rounding_mode="floor").clamp(1, 255).float())
    return out[0], out[1]


def _dct_matrix(device: torch.device) -> torch.Tensor:
    """The orthonormal 8-point DCT-II matrix ``(8, 8)``: JPEG's F(u, v) = D f D^T (T.81, A.3.3)."""
    n = torch.arange(8, dtype=torch.float64)
    d = torch.cos((2 * n[None, :] + 1) * n[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d.to(device=device, dtype=torch.float32)


def _codec_plane(plane: torch.Tensor, table: torch.Tensor, dct: torch.Tensor) -> torch.Tensor:
    """Level shift, 8x8 DCT, quantise (half away from zero), dequantise, inverse DCT.

    ``plane``: ``(B, H, W)`` samples 0..255 with ``H, W`` multiples of 8; ``table``: ``(B, 8, 8)``.
    Returns the decoded samples, rounded half up and clamped to 0..255.
    """
    b, h, w = plane.shape
    blocks = (plane - 128.0).reshape(b, h // 8, 8, w // 8, 8).transpose(2, 3)  # (B, h/8, w/8, 8, 8)
    # islow's forward DCT yields integers in units of 1/8; quantising those (libjpeg adds half
    # the divisor to the magnitude) keeps the exact ties of flat blocks, e.g. DC -696 / 16
    coef8 = torch.round(dct @ blocks @ dct.T * 8.0)
    t = table[:, None, None]
    q = torch.sign(coef8) * torch.floor((coef8.abs() + 4.0 * t) / (8.0 * t))
    rec = dct.T @ (q * t) @ dct
    return torch.floor(rec.transpose(2, 3).reshape(b, h, w) + 128.5).clamp(0, 255)  # islow's descale: half up


def _pad_to(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Replicate the last row and column of ``(B, C, H0, W0)`` out to ``(B, C, h, w)``."""
    return F.pad(x, (0, w - x.shape[-1], 0, h - x.shape[-2]), mode="replicate") if (h, w) != x.shape[-2:] else x


def _fancy_upsample(c: torch.Tensor) -> torch.Tensor:
    """libjpeg's h2v2 "fancy" (triangle) chroma upsampling of ``(B, 2, h, w)`` integer samples
    (for ``w <= 2`` libjpeg replicates each sample instead)."""
    if c.shape[-1] <= 2:
        return c.repeat_interleave(2, -2).repeat_interleave(2, -1)
    p = F.pad(c, (1, 1, 1, 1), mode="replicate")
    mid = p[..., 1:-1, :]
    upper = 3 * mid + p[..., :-2, :]  # column sums for the upper output row of each input row
    lower = 3 * mid + p[..., 2:, :]
    rows = []
    for cs in (upper, lower):
        centre = cs[..., 1:-1]
        even = torch.div(3 * centre + cs[..., :-2] + 8, 16, rounding_mode="floor")
        odd = torch.div(3 * centre + cs[..., 2:] + 7, 16, rounding_mode="floor")
        rows.append(torch.stack((even, odd), dim=-1).flatten(-2))  # (B, 2, h, 2w)
    return torch.stack(rows, dim=-2).flatten(-3, -2)  # (B, 2, 2h, 2w)


def jpeg_compress_torch(img: torch.Tensor, quality: int | Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Baseline JPEG compression and decompression in torch, on the images' device, batched.

    The same steps and integer rounding as libjpeg(-turbo) with OpenCV's defaults, so a GPU
    degradation needs no round trip through the host: JFIF RGB -> YCbCr (8-bit, libjpeg's
    rounding), 4:2:0 chroma subsampling (2x2 means with libjpeg's alternating bias 1, 2), edge
    replication to 16-pixel MCUs where libjpeg replicates, 8x8 DCT per block, quantisation with the IJG tables scaled
    by quality (T.81 Annex K; ``jpeg_quality_scaling``), and on decoding "fancy" triangle
    chroma upsampling and YCbCr -> RGB. The transforms are float32 where libjpeg's islow
    integer DCT rounds, so a coefficient at a rounding boundary may land one step apart:
    against OpenCV most pixels are equal and the rest one or two levels off (tests/test_ops_jpeg.py
    measures it). Unlike Real-ESRGAN's DiffJPEG it rounds for real (not differentiable) and
    keeps libjpeg's chroma filters.

    Args:
        img: ``(B, 3, H, W)`` float RGB in ``[0, 1]``, any device; clamped and rounded to 8-bit
            levels first, as a file would be.
        quality: JPEG quality 1..100; one for the batch or one per sample (sequence or ``(B,)``
            tensor; floats are rounded).

    Returns:
        ``(B, 3, H, W)`` 8-bit levels / 255, same dtype and device as ``img``.

    Raises:
        ValueError: not a ``(B, 3, H, W)`` tensor, a quality outside 1..100 or a count of
            qualities that does not match the batch.
    """
    qs = _qualities(img, quality)
    b, _, h, w = img.shape
    rgb = (img.detach().float().clamp(0, 1) * 255.0).round()
    r, g, bl = rgb.unbind(1)
    # rgb_ycc_convert: 16-bit fixed point; Y rounds half up, Cb/Cr just below half
    y = torch.floor(0.299 * r + 0.587 * g + 0.114 * bl + 0.5)
    cb = torch.floor(-0.168735892 * r - 0.331264108 * g + 0.5 * bl + 128.5 - 2**-16)
    cr = torch.floor(0.5 * r - 0.418687589 * g - 0.081312411 * bl + 128.5 - 2**-16)
    h16, w16, h2 = -(-h // 16) * 16, -(-w // 16) * 16, h + h % 2
    luma = _pad_to(y[:, None], h16, w16)[:, 0]
    # As libjpeg pads: the full-size rows to an even count and the columns to whole chroma
    # blocks before downsampling, the downsampled rows to whole blocks after it.
    # h2v2_downsample: (sum of 2x2 + bias) >> 2, bias 1 on even output columns, 2 on odd ones
    sums = _pad_to(torch.stack((cb, cr), 1), h2, w16).reshape(b, 2, h2 // 2, 2, w16 // 2, 2).sum((3, 5))
    bias = torch.tensor([1.0, 2.0], device=img.device).repeat(w16 // 4)
    chroma = _pad_to(torch.floor((sums + bias) / 4), h16 // 2, w16 // 2)
    qt = torch.tensor(qs, device=img.device)
    luma_t, chroma_t = quant_tables(qt)
    dct = _dct_matrix(img.device)
    y_dec = _codec_plane(luma, luma_t, dct)[:, :h, :w]
    c_dec = _codec_plane(chroma.flatten(0, 1), chroma_t.repeat_interleave(2, 0), dct).reshape(b, 2, h16 // 2, w16 // 2)
    c_up = _fancy_upsample(c_dec[..., : -(-h // 2), : -(-w // 2)])[..., :h, :w] - 128.0
    cb_d, cr_d = c_up.unbind(1)
    # ycc_rgb_convert: each chroma term rounded (half up), then range-limited
    out = torch.stack((
        y_dec + torch.floor(1.402 * cr_d + 0.5),
        y_dec + torch.floor(-0.344136286 * cb_d - 0.714136286 * cr_d + 0.5),
        y_dec + torch.floor(1.772 * cb_d + 0.5),
    ), 1).clamp(0, 255)  # fmt: skip
    return out.to(img.dtype).div_(255.0)
