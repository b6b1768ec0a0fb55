"""A patch-wise texture loss on fixed random filters: EnhanceNet's texture loss without ImageNet weights.

A per-pixel loss (L1 to the GT or to a teacher) rewards the average of every texture whose exact
place the LQ input no longer tells, and that average is flat. EnhanceNet (Sajjadi et al., ICCV
2017, Sec. 4.2.3) matches instead the Gram matrices of VGG feature maps inside small patches:
statistics of the texture that do not depend on where inside the patch each detail lies. VGG's
ImageNet weights are not always available; Ustyuzhaninov et al. (ICLR 2017, "What does it take
to generate natural textures?") showed that a single layer of random filters of a few sizes
followed by a ReLU already describes natural textures well. This module uses such filters.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["random_texture_filters", "texture_loss", "TEXTURE_PATCH"]

TEXTURE_PATCH = 16  # EnhanceNet's patch side, in output pixels


def random_texture_filters(sizes: tuple[int, ...] = (3, 5, 9), per_size: int = 32, in_ch: int = 3, seed: int = 0) -> list[Tensor]:
    """Fixed random filter banks: Gaussian weights, zero mean (blind to flat colour), unit L2 norm.

    Args:
        sizes: odd filter sides in pixels, each at least 3; one bank per size.
        per_size: filters per bank.
        in_ch: input channels (3 for RGB).
        seed: the generator's seed; the same arguments always give the same filters.

    Returns:
        One ``(per_size, in_ch, k, k)`` float32 CPU tensor per size.

    Raises:
        ValueError: a size that is even or below 3, or ``per_size`` / ``in_ch`` below 1.
    """
    if per_size < 1 or in_ch < 1 or any(k < 3 or k % 2 == 0 for k in sizes):
        raise ValueError(f"random_texture_filters: odd sizes >= 3 and positive counts needed, got sizes {sizes}, per_size {per_size}, in_ch {in_ch}")
    g = torch.Generator().manual_seed(seed)
    banks = []
    for k in sizes:
        w = torch.randn(per_size, in_ch, k, k, generator=g)
        w = w - w.mean(dim=(1, 2, 3), keepdim=True)
        banks.append(w / w.flatten(1).norm(dim=1).view(-1, 1, 1, 1))
    return banks


@lru_cache(maxsize=8)
def _default_banks(in_ch: int, device: torch.device) -> tuple[Tensor, ...]:
    return tuple(b.to(device) for b in random_texture_filters(in_ch=in_ch))


def _patch_grams(x: Tensor, bank: Tensor, patch: int) -> Tensor:
    b, _, h, w = x.shape
    h, w = h - h % patch, w - w % patch
    k = bank.shape[-1]
    pad = k // 2
    if pad:
        x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    f = F.relu(F.conv2d(x, bank))[..., :h, :w]
    c = f.shape[1]
    f = f.reshape(b, c, h // patch, patch, w // patch, patch).permute(0, 2, 4, 1, 3, 5).reshape(-1, c, patch * patch)
    return f @ f.transpose(1, 2) / (patch * patch)


def texture_loss(sr: Tensor, gt: Tensor, banks: list[Tensor] | tuple[Tensor, ...] | None = None, patch: int = TEXTURE_PATCH) -> Tensor:
    """Patch-wise Gram-matrix distance between ``sr`` and ``gt`` on random-filter responses.

    For each bank, ``F = relu(conv(x, bank))`` (reflect-padded to the input's size); the image is
    cut into ``patch`` x ``patch`` windows (the right and bottom rest is dropped), and in each
    window the Gram matrix ``G = F F^T / patch^2`` of the bank's responses is taken. The loss is
    the mean absolute difference of the Gram matrices of ``sr`` and ``gt``, averaged over the
    banks (EnhanceNet, Sajjadi et al. ICCV 2017, Sec. 4.2.3 and Eq. 4, with L1 in place of the
    squared norm, on the random single-layer filters of Ustyuzhaninov et al. ICLR 2017). It does
    not change when a texture moves inside a window, and it is not met by a flat average.
    Computed in float32 outside autocast.

    Args:
        sr: ``(B, C, H, W)`` network output, float, ``[0, 1]`` nominal range.
        gt: ``(B, C, H, W)`` target, same shape.
        banks: filter banks ``(K, C, k, k)`` (odd ``k``); default :func:`random_texture_filters` with
            its defaults for ``C`` channels (3 x 32 filters of sides 3, 5 and 9).
        patch: window side in pixels.

    Returns:
        A scalar float32 tensor (in squared image units).

    Raises:
        ValueError: mismatched shapes, or images smaller than one window.
    """
    if sr.shape != gt.shape:
        raise ValueError(f"texture_loss: sr {tuple(sr.shape)} and gt {tuple(gt.shape)} differ in shape")
    if sr.ndim != 4 or min(sr.shape[-2:]) < patch:
        raise ValueError(f"texture_loss: expected (B, C, H, W) images of at least {patch}x{patch}, got {tuple(sr.shape)}")
    if banks is None:
        banks = _default_banks(sr.shape[1], sr.device)  # made and moved once per channel count and device
    else:
        banks = [b.to(sr.device, torch.float32) for b in banks]
    with torch.autocast(sr.device.type, enabled=False):
        sr, gt = sr.float(), gt.float()
        return sum((_patch_grams(sr, k, patch) - _patch_grams(gt, k, patch)).abs().mean() for k in banks) / len(banks)
