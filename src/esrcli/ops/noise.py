"""Additive Gaussian and Poisson (shot) noise, colour or gray, as in Real-ESRGAN.

Follows BasicSR's ``generate_gaussian_noise_pt`` / ``generate_poisson_noise_pt``
(Real-ESRGAN, Wang et al. ICCVW 2021, Sec. 3.2): Gaussian sigma is in units of 1/255;
Poisson noise is drawn on the image quantised to 8-bit levels with ``vals`` photon counts
per unit, ``vals = 2 ** ceil(log2(number of distinct levels))``, then multiplied by
``scale``. Gray noise is one noise field (computed on the luma ``0.299 R + 0.587 G + 0.114 B``
for Poisson) added to all three channels.

Parameters may be scalars (one value for the batch) or ``(B,)`` tensors (one per sample).
"""

from __future__ import annotations

import math

import torch

__all__ = ["gaussian_noise", "poisson_noise", "add_gaussian_noise", "add_poisson_noise"]

_LUMA = (0.299, 0.587, 0.114)


def _check(img: torch.Tensor) -> None:
    if not isinstance(img, torch.Tensor) or img.dim() != 4:
        shape = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
        raise ValueError(f"expected an image batch (B, C, H, W), got {shape}")


def _per_sample(v: float | bool | torch.Tensor, b: int, img: torch.Tensor) -> torch.Tensor:
    """A ``(B, 1, 1, 1)`` tensor of per-sample values."""
    t = torch.as_tensor(v, device=img.device, dtype=img.dtype)
    if t.dim() == 0:
        return t.expand(b).reshape(b, 1, 1, 1)
    if t.numel() != b:
        raise ValueError(f"got {t.numel()} per-sample values for a batch of {b}")
    return t.reshape(b, 1, 1, 1)


def _gray_flags(gray: bool | torch.Tensor, b: int) -> list[bool]:
    if isinstance(gray, torch.Tensor) and gray.dim() > 0:
        if gray.numel() != b:
            raise ValueError(f"got {gray.numel()} gray flags for a batch of {b}")
        return [bool(x) for x in gray.reshape(-1).tolist()]
    return [bool(gray)] * b


def gaussian_noise(
    img: torch.Tensor,
    sigma: float | torch.Tensor,
    gray: bool | torch.Tensor = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero-mean Gaussian noise for ``img`` (the noise only, not added).

    Args:
        img: ``(B, C, H, W)`` float tensor; only its shape, dtype and device are used.
        sigma: standard deviation in units of 1/255 (e.g. 10 -> 10/255); float or ``(B,)``.
        gray: one noise field shared by all channels; bool or ``(B,)`` bool tensor.
        generator: random generator on ``img``'s device.

    Returns:
        ``(B, C, H, W)`` noise, same dtype and device.

    Raises:
        ValueError: not a 4-D tensor or per-sample values that do not match the batch.
    """
    _check(img)
    b, c, h, w = img.shape
    s = _per_sample(sigma, b, img) / 255.0
    flags = _gray_flags(gray, b)
    if all(flags) or not any(flags):
        ch = 1 if flags[0] else c
        n = torch.randn((b, ch, h, w), generator=generator, device=img.device, dtype=img.dtype)
        return (n * s).expand(b, c, h, w) if ch == 1 else n * s
    color = torch.randn((b, c, h, w), generator=generator, device=img.device, dtype=img.dtype)
    mono = torch.randn((b, 1, h, w), generator=generator, device=img.device, dtype=img.dtype)
    g = torch.tensor(flags, device=img.device).view(b, 1, 1, 1)
    return torch.where(g, mono, color) * s


def _quantise(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp((x * 255.0).round(), 0, 255)


def _shot_noise(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Per-sample Poisson noise of ``x`` (B, C, H, W), relative to its 8-bit quantisation."""
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        lv = _quantise(x[i])
        distinct = int((torch.bincount(lv.reshape(-1).long(), minlength=256) > 0).sum())
        vals = 2 ** math.ceil(math.log2(distinct)) if distinct > 1 else 1
        counts = torch.poisson(lv * (vals / 255.0), generator=generator)
        out[i] = (counts - lv * (vals / 255.0)) / vals
    return out


def poisson_noise(
    img: torch.Tensor,
    scale: float | torch.Tensor,
    gray: bool | torch.Tensor = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Poisson (shot) noise for ``img`` (the noise only, not added), BasicSR semantics.

    Args:
        img: ``(B, 3, H, W)`` float RGB in ``[0, 1]`` (gray noise needs 3 channels).
        scale: noise scale (Real-ESRGAN ``poisson_scale_range``); float or ``(B,)``.
        gray: noise drawn on the luma and shared by all channels; bool or ``(B,)`` bool tensor.
        generator: random generator on ``img``'s device.

    Returns:
        ``(B, C, H, W)`` noise, same dtype and device.

    Raises:
        ValueError: not a 4-D tensor, per-sample values that do not match the batch, or gray
            noise asked for an image without 3 channels.
    """
    _check(img)
    b, c, h, w = img.shape
    s = _per_sample(scale, b, img)
    flags = _gray_flags(gray, b)
    noise = torch.empty_like(img)
    g_idx = [i for i, f in enumerate(flags) if f]
    c_idx = [i for i, f in enumerate(flags) if not f]
    if g_idx:
        if c != 3:
            raise ValueError(f"gray Poisson noise needs 3 channels, got {c}")
        sub = img[g_idx]
        luma = sub[:, 0:1] * _LUMA[0] + sub[:, 1:2] * _LUMA[1] + sub[:, 2:3] * _LUMA[2]
        noise[g_idx] = _shot_noise(luma, generator).expand(len(g_idx), c, h, w)
    if c_idx:
        noise[c_idx] = _shot_noise(img[c_idx], generator)
    return noise * s


def add_gaussian_noise(
    img: torch.Tensor,
    sigma: float | torch.Tensor,
    gray: bool | torch.Tensor = False,
    generator: torch.Generator | None = None,
    clip: bool = True,
) -> torch.Tensor:
    """``img + gaussian_noise(...)``, clamped to ``[0, 1]`` when ``clip`` (Real-ESRGAN does).

    See :func:`gaussian_noise` for the arguments and errors.
    """
    out = img + gaussian_noise(img, sigma, gray, generator)
    return out.clamp_(0, 1) if clip else out


def add_poisson_noise(
    img: torch.Tensor,
    scale: float | torch.Tensor,
    gray: bool | torch.Tensor = False,
    generator: torch.Generator | None = None,
    clip: bool = True,
) -> torch.Tensor:
    """``img + poisson_noise(...)``, clamped to ``[0, 1]`` when ``clip`` (Real-ESRGAN does).

    See :func:`poisson_noise` for the arguments and errors.
    """
    out = img + poisson_noise(img, scale, gray, generator)
    return out.clamp_(0, 1) if clip else out
