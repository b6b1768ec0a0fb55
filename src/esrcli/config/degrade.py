"""Configuration of Real-ESRGAN's high-order degradation model (``[degrade]`` TOML tables).

Defaults are those of Real-ESRGAN's ``options/train_realesrnet_x4plus.yml`` (Wang et al.,
"Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic Data", ICCVW 2021).
Real-ESRGAN's ``_2`` suffixed keys live in ``[degrade.second]`` under the same names; the
final step (resize back plus sinc filter, and JPEG) has its own ``[degrade.final]`` table,
and its JPEG quality range is ``[degrade.second].jpeg_range`` (Real-ESRGAN's ``jpeg_range2``).

Example TOML::

    [degrade]
    scale = 4
    gt_size = 256

    [degrade.first]
    noise_range = [1.0, 20.0]

    [degrade.second]
    blur_prob = 0.5
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from esrcli.errors import ConfigError

__all__ = [
    "KERNEL_TYPES",
    "RESIZE_MODES",
    "MAX_KERNEL_SIZE",
    "StageConfig",
    "SecondStageConfig",
    "FinalConfig",
    "DegradeConfig",
]

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")
MAX_KERNEL_SIZE = 21  # every blur/sinc kernel is zero-padded to 21x21 (Real-ESRGAN)
KERNEL_RANGE = tuple(range(7, MAX_KERNEL_SIZE + 1, 2))

KernelType = Literal["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"]
ResizeMode = Literal["area", "bilinear", "bicubic"]


def _prob(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"{name}: probability must be in [0, 1], got {p}")


def _range(name: str, r: tuple[float, float], lo: float | None = None, hi: float | None = None, positive: bool = False) -> None:
    a, b = r
    if not (math.isfinite(a) and math.isfinite(b)):
        raise ConfigError(f"{name}: values must be finite, got {list(r)}")
    if a > b:
        raise ConfigError(f"{name}: lower bound {a} is above upper bound {b}")
    if positive and a <= 0:
        raise ConfigError(f"{name}: values must be > 0, got {list(r)}")
    if lo is not None and a < lo:
        raise ConfigError(f"{name}: values must be >= {lo}, got {list(r)}")
    if hi is not None and b > hi:
        raise ConfigError(f"{name}: values must be <= {hi}, got {list(r)}")


def _distribution(name: str, probs: tuple[float, ...], n: int) -> None:
    if len(probs) != n:
        raise ConfigError(f"{name}: expected {n} probabilities, got {len(probs)}")
    if any(p < 0 for p in probs):
        raise ConfigError(f"{name}: probabilities must be >= 0, got {list(probs)}")
    if abs(sum(probs) - 1.0) > 1e-6:
        raise ConfigError(f"{name}: probabilities must sum to 1, got {sum(probs):g}")


def _kernel_sizes(name: str, sizes: tuple[int, ...]) -> None:
    if not sizes:
        raise ConfigError(f"{name}: needs at least one kernel size")
    for s in sizes:
        if s % 2 == 0 or not 3 <= s <= MAX_KERNEL_SIZE:
            raise ConfigError(f"{name}: kernel sizes must be odd and in [3, {MAX_KERNEL_SIZE}], got {s}")


def _modes(name: str, modes: tuple[str, ...]) -> None:
    if not modes:
        raise ConfigError(f"{name}: needs at least one interpolation mode")


@dataclass(frozen=True)
class StageConfig:
    """One degradation stage (blur, random resize, noise, JPEG): ``[degrade.first]``.

    Attributes:
        blur_prob: probability to apply the blur of this stage (Real-ESRGAN: 1 for the first
            stage, ``second_blur_prob`` = 0.8 for the second).
        kernel_range: odd kernel sizes drawn uniformly (each kernel is padded to 21x21).
        kernel_list: blur kernel families, drawn with ``kernel_prob``.
        kernel_prob: probabilities of ``kernel_list`` (must sum to 1).
        sinc_prob: probability that the blur kernel is a sinc (ringing) kernel instead.
        blur_sigma: range of the Gaussian standard deviations sigma_x, sigma_y (pixels).
        betag_range: shape parameter range of the generalized Gaussian kernels.
        betap_range: shape parameter range of the plateau kernels.
        resize_prob: probabilities of resizing up, down, or keeping the size (sum 1).
        resize_range: scale factor range; "up" draws from [1, max], "down" from [min, 1].
        resize_modes: interpolation modes drawn uniformly.
        gaussian_noise_prob: probability of Gaussian noise (else Poisson noise).
        noise_range: Gaussian noise sigma range, in units of 1/255.
        poisson_scale_range: Poisson noise scale range.
        gray_noise_prob: probability that the noise is the same in all channels (gray).
        jpeg_range: JPEG quality range (1..100). In ``[degrade.second]`` it is the range of the
            final JPEG compression (Real-ESRGAN's ``jpeg_range2``).
    """

    blur_prob: float = 1.0
    kernel_range: tuple[int, ...] = KERNEL_RANGE
    kernel_list: tuple[KernelType, ...] = KERNEL_TYPES
    kernel_prob: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)
    resize_range: tuple[float, float] = (0.15, 1.5)
    resize_modes: tuple[ResizeMode, ...] = RESIZE_MODES
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[float, float] = (30.0, 95.0)

    def __post_init__(self) -> None:
        _prob("blur_prob", self.blur_prob)
        _kernel_sizes("kernel_range", self.kernel_range)
        if not self.kernel_list:
            raise ConfigError("kernel_list: needs at least one kernel type")
        if len(set(self.kernel_list)) != len(self.kernel_list):
            raise ConfigError(f"kernel_list: duplicate kernel types in {list(self.kernel_list)}")
        _distribution("kernel_prob", self.kernel_prob, len(self.kernel_list))
        _prob("sinc_prob", self.sinc_prob)
        _range("blur_sigma", self.blur_sigma, positive=True)
        _range("betag_range", self.betag_range, positive=True)
        _range("betap_range", self.betap_range, positive=True)
        _distribution("resize_prob", self.resize_prob, 3)
        _range("resize_range", self.resize_range, positive=True)
        if self.resize_range[0] > 1.0 or self.resize_range[1] < 1.0:
            raise ConfigError(f"resize_range: must contain 1 ([min <= 1, max >= 1]), got {list(self.resize_range)}")
        _modes("resize_modes", self.resize_modes)
        _prob("gaussian_noise_prob", self.gaussian_noise_prob)
        _range("noise_range", self.noise_range, lo=0.0)
        _range("poisson_scale_range", self.poisson_scale_range, lo=0.0)
        _prob("gray_noise_prob", self.gray_noise_prob)
        _range("jpeg_range", self.jpeg_range, lo=1.0, hi=100.0)


@dataclass(frozen=True)
class SecondStageConfig(StageConfig):
    """The second degradation stage, ``[degrade.second]``: same keys, Real-ESRGAN's ``_2`` defaults."""

    blur_prob: float = 0.8
    blur_sigma: tuple[float, float] = (0.2, 1.5)
    resize_prob: tuple[float, float, float] = (0.3, 0.4, 0.3)
    resize_range: tuple[float, float] = (0.3, 1.2)
    noise_range: tuple[float, float] = (1.0, 25.0)
    poisson_scale_range: tuple[float, float] = (0.05, 2.5)


@dataclass(frozen=True)
class FinalConfig:
    """The final step, ``[degrade.final]``: resize to ``gt / scale`` plus a sinc filter, and JPEG.

    Attributes:
        sinc_prob: probability of the final sinc filter (Real-ESRGAN's ``final_sinc_prob``).
        sinc_omega_range: cutoff frequency range omega_c of the final sinc (radians/pixel).
        kernel_range: odd sinc kernel sizes drawn uniformly.
        sinc_first_prob: probability of "resize + sinc, then JPEG" (else JPEG first).
        resize_modes: interpolation modes of the final resize, drawn uniformly.
    """

    sinc_prob: float = 0.8
    sinc_omega_range: tuple[float, float] = (math.pi / 3, math.pi)
    kernel_range: tuple[int, ...] = KERNEL_RANGE
    sinc_first_prob: float = 0.5
    resize_modes: tuple[ResizeMode, ...] = RESIZE_MODES

    def __post_init__(self) -> None:
        _prob("sinc_prob", self.sinc_prob)
        _range("sinc_omega_range", self.sinc_omega_range, hi=math.pi, positive=True)
        _kernel_sizes("kernel_range", self.kernel_range)
        _prob("sinc_first_prob", self.sinc_first_prob)
        _modes("resize_modes", self.resize_modes)


@dataclass(frozen=True)
class DegradeConfig:
    """Real-ESRGAN's second-order degradation model, the ``[degrade]`` table.

    Attributes:
        scale: super-resolution factor; the LQ image is ``gt / scale`` in each dimension.
        gt_size: side of the square GT training crop (the LQ crop is ``gt_size / scale``).
        usm_radius: unsharp-mask Gaussian kernel size (made odd: 50 -> 51, sigma from OpenCV's rule).
        usm_weight: unsharp-mask weight of the residual.
        usm_threshold: residual threshold (in 8-bit levels) of the unsharp-mask soft mask.
        first: the first degradation stage.
        second: the second degradation stage.
        final: the final resize, sinc and JPEG step.
        source: where training pairs come from (train-net/train-gan): ``"second-order"``
            (this model), ``"pdm"`` (a learned degradation, ``esr train-pdm``'s
            ``pdm.safetensors``) or ``"mix"`` (each pair from the PDM with ``pdm_prob``).
        pdm: the PDM file (relative to the config file), needed by ``"pdm"`` and ``"mix"``.
        pdm_prob: probability of a PDM pair with ``source = "mix"``.
        jpeg_codec: ``"libjpeg"`` (OpenCV's libjpeg-turbo; tensors on a GPU make a round trip
            through the host) or ``"torch"`` (:func:`esrcli.ops.jpeg.jpeg_compress_torch`, the
            same steps and tables in torch on the images' device; within a level of libjpeg on
            most pixels, about 50 dB; slower than libjpeg on a CPU).
        per_batch_resize: draw the three resizes (direction, factor, interpolation mode) and
            the final step's order once per batch, as Real-ESRGAN's ``feed_data`` does, instead
            of per sample. All samples then keep one size through the pipeline, and on a GPU
            :func:`~esrcli.degrade.pipeline.degrade_with_params` degrades the batch at once
            (one grouped convolution per blur, one resize, one JPEG call per step) instead of
            sample by sample. Blur kernels, noise and JPEG qualities stay per sample.
    """

    scale: int = 4
    gt_size: int = 256
    usm_radius: int = 50
    usm_weight: float = 0.5
    usm_threshold: float = 10.0
    first: StageConfig = field(default_factory=StageConfig)
    second: SecondStageConfig = field(default_factory=SecondStageConfig)
    final: FinalConfig = field(default_factory=FinalConfig)
    source: Literal["second-order", "pdm", "mix"] = "second-order"
    pdm: Path | None = None
    pdm_prob: float = 0.5
    jpeg_codec: Literal["libjpeg", "torch"] = "libjpeg"
    per_batch_resize: bool = False

    def __post_init__(self) -> None:
        if self.source != "second-order" and self.pdm is None:
            raise ConfigError(f"pdm: a PDM file (esr train-pdm's pdm.safetensors) is needed with source = {self.source!r}")
        if self.source == "second-order" and self.pdm is not None:  # set but unused: surely a forgotten source
            raise ConfigError('pdm: given, but source = "second-order" does not use it (set source = "pdm" or "mix", or drop pdm)')
        if self.source != "mix" and self.pdm_prob != 0.5:
            raise ConfigError(f'pdm_prob: only source = "mix" uses it, and source = {self.source!r}')
        _prob("pdm_prob", self.pdm_prob)
        if not 1 <= self.scale <= 16:
            raise ConfigError(f"scale: must be an integer in [1, 16], got {self.scale}")
        if self.gt_size < self.scale or self.gt_size % self.scale:
            raise ConfigError(f"gt_size: must be a positive multiple of scale ({self.scale}), got {self.gt_size}")
        if self.usm_radius < 1:
            raise ConfigError(f"usm_radius: must be >= 1, got {self.usm_radius}")
        if not math.isfinite(self.usm_weight) or self.usm_weight < 0:
            raise ConfigError(f"usm_weight: must be >= 0, got {self.usm_weight}")
        if not 0 <= self.usm_threshold <= 255:
            raise ConfigError(f"usm_threshold: must be in [0, 255], got {self.usm_threshold}")
