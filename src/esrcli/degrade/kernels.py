"""Random blur and sinc kernels of Real-ESRGAN's degradation model, as JSON-able parameters.

Sampling follows Real-ESRGAN's ``RealESRGANDataset.__getitem__`` and BasicSR's
``random_mixed_kernels``: a kernel size from ``kernel_range``; with ``sinc_prob`` a sinc kernel
(omega_c ~ U[pi/3, pi] for sizes < 13, else U[pi/5, pi]); otherwise a family from
``kernel_list`` / ``kernel_prob`` with sigma_x (and, anisotropic, sigma_y and a rotation
~ U[-pi, pi]) from ``blur_sigma``; shape parameters beta are drawn from ``[min, 1]`` or
``[1, max]`` with probability 1/2 each (as BasicSR does) when the range contains 1.

A kernel is described by a plain dict (``type``, ``size``, ``sigma_x``, ``sigma_y``, ``theta``,
``beta`` or ``omega_c``) so it can be logged and rebuilt with :func:`make_kernel`. Kernels are
built at their own size: filtering with the 21x21 zero-padded kernel Real-ESRGAN uses gives
the same result at a fraction of the cost.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from esrcli.config.degrade import KERNEL_TYPES, FinalConfig, StageConfig
from esrcli.degrade.draws import Draws
from esrcli.ops.filters import (
    bivariate_gaussian,
    bivariate_generalized_gaussian,
    bivariate_plateau,
    circular_lowpass_kernel,
)

__all__ = ["sample_blur_kernel", "sample_final_sinc", "make_kernel"]


def _beta(draws: Draws, lo: float, hi: float) -> float:
    if lo <= 1.0 <= hi:
        return draws.uniform(lo, 1.0) if draws.random() < 0.5 else draws.uniform(1.0, hi)
    return draws.uniform(lo, hi)


def sample_blur_kernel(stage: StageConfig, draws: Draws) -> dict[str, Any]:
    """Draw the blur kernel of one degradation stage for one sample.

    Returns:
        ``{"type": "sinc", "size", "omega_c"}`` or ``{"type": <family>, "size", "sigma_x",
        "sigma_y", "theta", "beta"}`` (``beta`` is ``None`` for Gaussian families).
    """
    size = draws.choice(stage.kernel_range)
    if draws.random() < stage.sinc_prob:
        omega_c = draws.uniform(math.pi / 3, math.pi) if size < 13 else draws.uniform(math.pi / 5, math.pi)
        return {"type": "sinc", "size": size, "omega_c": omega_c}
    family = draws.choices(stage.kernel_list, stage.kernel_prob)
    sigma_x = draws.uniform(*stage.blur_sigma)
    if family.endswith("aniso"):
        sigma_y = draws.uniform(*stage.blur_sigma)
        theta = draws.uniform(-math.pi, math.pi)
    else:
        sigma_y, theta = sigma_x, 0.0
    beta = None
    if family.startswith("generalized"):
        beta = _beta(draws, *stage.betag_range)
    elif family.startswith("plateau"):
        beta = _beta(draws, *stage.betap_range)
    return {"type": family, "size": size, "sigma_x": sigma_x, "sigma_y": sigma_y, "theta": theta, "beta": beta}


def sample_final_sinc(final: FinalConfig, draws: Draws) -> dict[str, Any] | None:
    """Draw the final sinc filter for one sample: ``{"type": "sinc", "size", "omega_c"}`` or ``None``."""
    if draws.random() >= final.sinc_prob:
        return None
    size = draws.choice(final.kernel_range)
    return {"type": "sinc", "size": size, "omega_c": draws.uniform(*final.sinc_omega_range)}


def make_kernel(params: dict[str, Any], device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Build the ``(size, size)`` kernel described by a dict from :func:`sample_blur_kernel`.

    Raises:
        ValueError: an unknown kernel type or invalid parameters.
    """
    kind, size = params.get("type"), int(params.get("size", 0))
    if kind not in ("sinc", *KERNEL_TYPES):
        raise ValueError(f"unknown kernel type {kind!r}")
    if kind == "sinc":
        return circular_lowpass_kernel(float(params["omega_c"]), size, device=device, dtype=dtype)
    sx, sy, th = float(params["sigma_x"]), float(params["sigma_y"]), float(params["theta"])
    if kind in ("iso", "aniso"):
        return bivariate_gaussian(size, sx, sy, th, device=device, dtype=dtype)
    if kind in ("generalized_iso", "generalized_aniso"):
        return bivariate_generalized_gaussian(size, sx, sy, th, float(params["beta"]), device=device, dtype=dtype)
    return bivariate_plateau(size, sx, sy, th, float(params["beta"]), device=device, dtype=dtype)
