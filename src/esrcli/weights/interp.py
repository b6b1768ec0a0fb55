"""Network interpolation (ESRGAN, Wang et al. ECCVW 2018, Sec. 3.4).

``theta = (1 - alpha) * theta_A + alpha * theta_B`` for every floating tensor; non-float
tensors (e.g. BatchNorm's ``num_batches_tracked``) are copied from A. ``alpha = 0`` gives A,
``alpha = 1`` gives B; typically A is the PSNR-oriented net and B the GAN net.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

from esrcli.errors import WeightsError
from esrcli.weights.detect import ModelInfo, params_text
from esrcli.weights.io import read_pair, save_model

__all__ = ["interpolate", "interpolate_files"]


def interpolate(sd_a: dict[str, Tensor], sd_b: dict[str, Tensor], alpha: float) -> dict[str, Tensor]:
    """Interpolate two state dicts of the same network.

    Args:
        sd_a: weights at ``alpha = 0``.
        sd_b: weights at ``alpha = 1`` (same keys and shapes as ``sd_a``).
        alpha: blend factor in ``[0, 1]``.

    Returns:
        A new state dict; floating tensors are computed in float32 (float64 stays float64).

    Raises:
        ValueError: ``alpha`` outside ``[0, 1]``.
        WeightsError: different keys or shapes (the message lists the differences).
    """
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha: must be in [0, 1], got {alpha}")
    only_a = sorted(set(sd_a) - set(sd_b))
    only_b = sorted(set(sd_b) - set(sd_a))
    if only_a or only_b:
        raise WeightsError(
            f"different layers (only in A: {', '.join(only_a[:3]) or '-'}; only in B: {', '.join(only_b[:3]) or '-'})"
        )
    out: dict[str, Tensor] = {}
    for k, a in sd_a.items():
        b = sd_b[k]
        if a.shape != b.shape:
            raise WeightsError(f"{k}: shape {tuple(a.shape)} in A vs {tuple(b.shape)} in B")
        if a.is_floating_point() and b.is_floating_point():
            dtype = torch.float64 if a.dtype == torch.float64 else torch.float32
            out[k] = torch.lerp(a.to(dtype), b.to(dtype), alpha)
        else:
            out[k] = a.clone()
    return out


def interpolate_files(
    path_a: str | os.PathLike,
    path_b: str | os.PathLike,
    alpha: float,
    out: str | os.PathLike,
    half: bool = False,
) -> ModelInfo:
    """Interpolate two models into an esr safetensors file.

    Each input is a model file (``.pth`` or ``.safetensors``) or, when no such file exists, a
    model name as ``esr upscale --model`` takes it (embedded, e.g. ``esr-general-x4-net``, or
    official, downloaded on first use). The output metadata records ``parents`` (the two paths
    or model names as given, comma separated) and ``alpha``.

    Returns:
        The :class:`ModelInfo` written.

    Raises:
        ValueError: ``alpha`` outside ``[0, 1]``.
        WeightsError: unreadable inputs or unknown names, or the two models differ in architecture or
            hyper-parameters (the message names both files and what differs).
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha: must be in [0, 1], got {alpha}")
    sd_a, info_a, sd_b, _ = read_pair(path_a, path_b)
    try:
        sd = interpolate(sd_a, sd_b, alpha)
    except WeightsError as exc:
        raise WeightsError(f"{path_a} and {path_b}: {exc}") from None
    info = ModelInfo(arch=info_a.arch, params=dict(info_a.params), scale=info_a.scale, metadata={})
    extra = {
        "parents": f"{path_a},{path_b}",  # as given: a run's export is always net_g_ema.safetensors
        "alpha": repr(float(alpha)),
        "provenance": f"network interpolation (1-alpha)*A + alpha*B, {info.arch} {params_text(info.params)}",
    }
    save_model(out, sd, info, extra_metadata=extra, half=half)
    return info
