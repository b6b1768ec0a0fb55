"""A fixed-length, normalised vector of the degradation parameters drawn for each sample.

:func:`~esrcli.degrade.pipeline.sample_params` describes every sample by a nested dict
(kernels, resize modes, noise types, orders). CSRGAN-style joint training
(``[model] predict_degradation``) regresses the strength of each step instead, so this
module reads those dicts into ``len(PARAM_NAMES)`` numbers, each roughly in ``[0, 1]``,
with 0 meaning "this step did nothing" (no blur, no noise of that type, no sinc):

========================  ==========================================================
``blur1_sigma``           first blur: ``sqrt(sigma_x * sigma_y) / 3`` px (Gaussian,
                          generalized and plateau families; 0 for a sinc kernel)
``blur1_sinc``            first blur is a sinc kernel: ``1 - omega_c / pi`` (else 0)
``resize1``               first resize factor / 1.5
``noise1_gauss``          first Gaussian noise sigma in 8-bit levels / 30 (0: Poisson)
``noise1_poisson``        first Poisson noise scale / 3 (0: Gaussian)
``jpeg1``                 first JPEG: ``(100 - quality) / 100``
``blur2_sigma``           second blur as ``blur1_sigma`` (0 also when it was skipped)
``blur2_sinc``            second blur sinc as ``blur1_sinc``
``resize2``               second resize factor / 1.5
``noise2_gauss``          second Gaussian noise sigma in 8-bit levels / 30
``noise2_poisson``        second Poisson noise scale / 3
``jpeg2``                 final JPEG: ``(100 - quality) / 100``
``final_sinc``            final sinc filter: ``1 - omega_c / pi`` (0 when none)
========================  ==========================================================

The divisors are fixed (Real-ESRGAN's largest defaults: blur sigma 3, resize 1.5, noise
30 levels, Poisson scale 3), not taken from the configuration, so a vector means the same
thing whatever ranges a run draws from. Reading the dicts draws nothing: the images made
for a seed are the same with or without this vector.
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["PARAM_NAMES", "param_vector"]

PARAM_NAMES = (
    "blur1_sigma", "blur1_sinc", "resize1", "noise1_gauss", "noise1_poisson", "jpeg1",
    "blur2_sigma", "blur2_sinc", "resize2", "noise2_gauss", "noise2_poisson", "jpeg2",
    "final_sinc",
)  # fmt: skip

_SIGMA, _RESIZE, _NOISE, _POISSON = 3.0, 1.5, 30.0, 3.0


def _blur(kernel: dict[str, Any] | None) -> tuple[float, float]:
    if kernel is None:
        return 0.0, 0.0
    if kernel["type"] == "sinc":
        return 0.0, 1.0 - float(kernel["omega_c"]) / math.pi
    return math.sqrt(float(kernel["sigma_x"]) * float(kernel["sigma_y"])) / _SIGMA, 0.0


def _noise(noise: dict[str, Any]) -> tuple[float, float]:
    if noise["type"] == "gaussian":
        return float(noise["sigma"]) / _NOISE, 0.0
    return 0.0, float(noise["scale"]) / _POISSON


def _stage(stage: dict[str, Any], quality: int) -> list[float]:
    return [*_blur(stage["blur"]), float(stage["resize"]["factor"]) / _RESIZE, *_noise(stage["noise"]), (100.0 - quality) / 100.0]


def param_vector(params: list[dict[str, Any]]) -> torch.Tensor:
    """The normalised parameter vectors of a batch (see the module docstring for each entry).

    Args:
        params: per-sample dicts from :func:`~esrcli.degrade.pipeline.sample_params` (or
            :func:`~esrcli.degrade.pipeline.degrade` / ``synthesize_pairs``).

    Returns:
        ``(B, len(PARAM_NAMES))`` float32 on the CPU, entries >= 0 and about <= 1.

    Raises:
        ValueError: a dict without the keys ``sample_params`` writes.

    Example:
        >>> import torch
        >>> from esrcli.config.degrade import DegradeConfig
        >>> from esrcli.degrade.pipeline import sample_params
        >>> p = sample_params(DegradeConfig(), 2, torch.Generator().manual_seed(0))
        >>> param_vector(p).shape
        torch.Size([2, 13])
    """
    rows = []
    for i, p in enumerate(params):
        try:
            fin = p["final"]
            sinc = 0.0 if fin["sinc"] is None else 1.0 - float(fin["sinc"]["omega_c"]) / math.pi
            second = _stage(p["second"], int(fin["jpeg_quality"]))
            rows.append(_stage(p["first"], int(p["first"]["jpeg_quality"])) + second + [sinc])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"degradation parameters of sample {i} lack {exc}") from None
    return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), len(PARAM_NAMES))
