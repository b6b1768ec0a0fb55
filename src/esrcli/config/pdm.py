"""Configuration of ``esr train-pdm``: a learned, probabilistic degradation model (PDM).

PDM (Luo et al., "Learning the Degradation Distribution for Blind Image Super-Resolution",
CVPR 2022; official code ``greatlog/UnpairedSR``, ``codes/config/PDM-SR``) learns
``y = (x * k)↓s + n`` from unpaired HR images and LR images of a target domain. The paper's
values are quoted in each field's description; where the default differs it is because the
paper's recipe (200k iterations of batch 32 on a GPU) does not converge in the ~30 minutes of
2 CPU cores this project aims at (see ``docs/pdm.md``).

Tables: ``[model]`` (:class:`PdmModelConfig`), ``[data]`` (:class:`PdmDataConfig`),
``[train]`` (:class:`PdmTrainOptions`) and the optional ``[sr]`` (:class:`PdmSrConfig`, joint
PDM-SR training of an esr generator). Unknown keys and wrong types are
:class:`~esrcli.errors.ConfigError` naming the dotted key.

Example TOML::

    [data]
    hr = ["photos/hr"]
    lr = ["camera/lr"]

    [model]
    scale = 4
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from esrcli.config.train import ModelConfig, check_betas_and_ema
from esrcli.errors import ConfigError

__all__ = ["PdmModelConfig", "PdmDataConfig", "PdmTrainOptions", "PdmSrConfig", "PdmConfig"]


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{name}: must be > 0, got {value}")


def _non_negative(name: str, value: float) -> None:
    if value < 0:
        raise ConfigError(f"{name}: must be >= 0, got {value}")


@dataclass(frozen=True)
class PdmModelConfig:
    """``[model]``: the degradation model and its discriminator.

    Attributes:
        scale: subsampling factor s (1, 2, 3, 4 or 8).
        kernel_size: side k of the blur kernel (odd; paper 21).
        kernel: ``"gaussian"``: the kernel module predicts an anisotropic Gaussian (the
            Cholesky factor of its covariance) per code, made into a k x k kernel by a
            softmax over ``-0.5 p^T Sigma^-1 p``: smooth, centred, starts as a delta-like
            kernel of width ``init_sigma``. ``"free"``: the paper's k*k logits and softmax,
            started as a delta (centre logit ``+12``), kept centred by
            ``train.center_weight``.
        init_sigma: starting width of the Gaussian kernel (pixels).
        code_channels: channels of the random codes z_k and z_n (paper 3), drawn N(0, I).
        spatial: spatially variant kernels (one code and kernel per LR pixel, 3x3
            convolutions); false: one kernel per image (1x1 convolutions, the paper's default).
        kernel_feat: features of the kernel module (paper 64).
        kernel_blocks: residual blocks of the kernel module (paper 8).
        noise: learn additive noise (false for clean domains).
        noise_channels: 1 (same noise in R, G, B) or 3 (paper: 1 or 3).
        noise_feat: features of the noise module (paper 32).
        noise_blocks: residual blocks of the noise module (paper 8).
        disc_feat: features of the PatchGAN discriminator's first layer (paper 64).
        disc_layers: the official ``nb`` of the discriminator (paper 3).
        disc_highpass: the discriminator judges the high-pass image (blur, aliasing and
            noise rather than content; not in the paper, see
            :class:`~esrcli.degrade.pdm.PatchDiscriminator`).
    """

    scale: int = 4
    kernel_size: int = 21
    kernel: Literal["gaussian", "free"] = "gaussian"
    init_sigma: float = 0.45
    code_channels: int = 3
    spatial: bool = False
    kernel_feat: int = 64
    kernel_blocks: int = 8
    noise: bool = True
    noise_channels: int = 3
    noise_feat: int = 32
    noise_blocks: int = 4
    disc_feat: int = 32
    disc_layers: int = 3
    disc_highpass: bool = True

    def __post_init__(self) -> None:
        if self.scale not in (1, 2, 3, 4, 8):
            raise ConfigError(f"scale: expected 1, 2, 3, 4 or 8, got {self.scale}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size: must be a positive odd integer, got {self.kernel_size}")
        if self.noise_channels not in (1, 3):
            raise ConfigError(f"noise_channels: expected 1 or 3, got {self.noise_channels}")
        if self.init_sigma <= 0.3:
            raise ConfigError(f"init_sigma: must be > 0.3 (the narrowest kernel), got {self.init_sigma}")
        for name in ("code_channels", "kernel_feat", "noise_feat", "disc_feat", "disc_layers"):
            _positive(name, getattr(self, name))
        for name in ("kernel_blocks", "noise_blocks"):
            _non_negative(name, getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (stored in the safetensors metadata of a PDM file)."""
        return asdict(self)


@dataclass(frozen=True)
class PdmDataConfig:
    """``[data]``: the unpaired training images.

    Attributes:
        hr: folders (or files) of HR images, searched recursively; content should be of the
            same kind as the LR domain (see docs/pdm.md).
        lr: folders (or files) of LR images of the target domain, searched recursively.
        lr_crop: side of the LR patches (paper 32); HR patches are ``lr_crop * scale``.
        augment: ``"rot180"``: random 180-degree rotations only (keeps an anisotropic
            kernel's orientation); ``"none"``; ``"full"``: flips and 90-degree rotations (the
            paper's; they turn an oriented kernel into a mixture of orientations).
        cache_mb: decoded images kept in memory (uint8), in MiB; further images are read
            from disk at every use.
    """

    hr: tuple[Path, ...] = ()
    lr: tuple[Path, ...] = ()
    lr_crop: int = 32
    augment: Literal["rot180", "none", "full"] = "rot180"
    cache_mb: int = 2048

    def __post_init__(self) -> None:
        _positive("lr_crop", self.lr_crop)
        _non_negative("cache_mb", self.cache_mb)


@dataclass(frozen=True)
class PdmTrainOptions:
    """``[train]``: optimisation and checkpoints.

    The defaults are sized for 2 CPU cores (about 30 minutes); the paper's GPU values are
    batch 32, lr 2e-4, 200k iterations halved at 50k/100k/150k.

    Attributes:
        total_iter: iterations to train.
        batch_size: HR and LR patches per iteration (paper 32).
        lr: Adam learning rate of the degradation model's networks (paper 2e-4).
        kernel_lr: Adam learning rate of the mean kernel's own parameters (the Gaussian's
            log-widths and shear, or the free kernel's logits): larger than ``lr`` so the
            kernel can travel from a delta to a wide blur within a CPU-sized run.
        lr_d: Adam learning rate of the discriminator (paper 2e-4).
        d_warmup: first iterations that train only the discriminator, so the model's first
            steps follow a discriminator that already tells real from degraded patches
            (a random one pushed the kernel to a delta and the noise up).
        betas: Adam betas.
        milestones: iterations where both learning rates are multiplied by ``gamma``.
        gamma: learning-rate factor at each milestone.
        grad_clip: gradient-norm clip of both networks (paper 50; 0: none).
        ema_decay: decay of the exponential moving average of the model's weights, which is
            what ``pdm.safetensors`` holds (it averages out the adversarial oscillations).
        noise_mean_weight: weight of the squared mean of the noise (paper 100), taken per
            image and colour channel (a per-image mean let the noise module add a colour cast
            on the real_noisy domain).
        center_weight: weight of the squared distance (pixels) of the kernel's centroid from
            the centre (against the shift ambiguity of unpaired training; the Gaussian kernel
            is centred by construction).
        seed: seed of every random choice (crops, codes, initialisation).
        threads: CPU threads for torch (0: leave torch's default).
        checkpoint_interval: iterations between checkpoints.
        keep_checkpoints: how many checkpoints to keep.
        log_interval: iterations between lines in ``metrics.jsonl``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    """

    total_iter: int = 6000
    batch_size: int = 16
    lr: float = 1e-4
    kernel_lr: float = 1e-3
    lr_d: float = 5e-4
    d_warmup: int = 100
    betas: tuple[float, float] = (0.5, 0.999)
    milestones: tuple[int, ...] = (3000, 4500)
    gamma: float = 0.5
    grad_clip: float = 50.0
    ema_decay: float = 0.99
    noise_mean_weight: float = 100.0
    center_weight: float = 0.1
    seed: int = 0
    threads: int = 0
    checkpoint_interval: int = 500
    keep_checkpoints: int = 2
    log_interval: int = 50
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("total_iter", "batch_size", "lr", "lr_d", "checkpoint_interval", "keep_checkpoints", "log_interval", "gamma"):
            _positive(name, getattr(self, name))
        for name in ("grad_clip", "noise_mean_weight", "center_weight", "threads", "d_warmup", "kernel_lr"):
            _non_negative(name, getattr(self, name))
        check_betas_and_ema(self.betas, self.ema_decay)
        if list(self.milestones) != sorted(self.milestones):
            raise ConfigError("milestones: must be increasing")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"device: expected auto, cpu, cuda or cuda:N, got {self.device!r}")


@dataclass(frozen=True)
class PdmSrConfig:
    """``[sr]``: train an esr generator on ``(x, PDM(x))`` pairs while the PDM learns (PDM-SR).

    The paper's PDM-SR (Luo et al. 2022, Sec. 3.3; official ``DegSRModel``): every
    iteration, the HR patches degraded by the current degradation model, clipped and
    rounded to 8 bits, detached (no gradient reaches the PDM), are the SR network's input,
    and the HR patches its target. The generator's EMA is exported as
    ``RUN/net_g_ema.safetensors``. The GAN stage is ``esr train-gan`` with
    ``[degrade] source = "pdm"`` and this export as ``model.pretrained``.

    Attributes:
        model: ``[sr.model]``, the generator, as train-net's ``[model]`` (``pretrained``
            starts it from a file, e.g. an official model to adapt to the domain). Its
            ``scale`` must equal ``model.scale``.
        lr: Adam learning rate (paper 2e-4), multiplied by ``train.gamma`` at
            ``train.milestones`` like the PDM's.
        betas: Adam betas.
        ema_decay: decay of the exported EMA (Real-ESRGAN 0.999 over 10^5+ iterations;
            0.99 suits CPU-sized runs of a few thousand).
        pixel_criterion: ``"l1"`` (paper), ``"l2"`` or ``"charbonnier"``.
        pixel_weight: weight of the pixel loss (paper 1).
        perceptual_weight: weight of the VGG19 perceptual loss (0: none; the official
            perceptual configs use 1 on ``conv5_4``); needs the VGG19 weights (see
            docs/training.md).
        perceptual_layers: VGG19 layers of the perceptual loss.
        perceptual_layer_weights: one weight per layer.
        vgg_weights: the VGG19 file (default: the torch hub cache).
        start_iter: iteration where the SR network starts training (0: from the first
            model update, as the paper; later: on pairs from a PDM that has found its
            kernel).
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.99)
    ema_decay: float = 0.99
    pixel_criterion: Literal["l1", "l2", "charbonnier"] = "l1"
    pixel_weight: float = 1.0
    perceptual_weight: float = 0.0
    perceptual_layers: tuple[str, ...] = ("conv5_4",)
    perceptual_layer_weights: tuple[float, ...] = (1.0,)
    vgg_weights: Path | None = None
    start_iter: int = 0

    def __post_init__(self) -> None:
        _positive("lr", self.lr)
        for name in ("pixel_weight", "perceptual_weight", "start_iter"):
            _non_negative(name, getattr(self, name))
        check_betas_and_ema(self.betas, self.ema_decay)
        if len(self.perceptual_layers) != len(self.perceptual_layer_weights):
            raise ConfigError("perceptual_layer_weights: needs one weight per entry of perceptual_layers")
        from esrcli.config.train import check_vgg_layers

        check_vgg_layers(self.perceptual_layers)
        if self.model.predict_degradation:
            raise ConfigError("model.predict_degradation: not available in [sr] (PDM pairs have no degradation parameters)")


@dataclass(frozen=True)
class PdmConfig:
    """``esr train-pdm``: all tables (``sr`` is ``None`` without an ``[sr]`` table)."""

    model: PdmModelConfig = field(default_factory=PdmModelConfig)
    data: PdmDataConfig = field(default_factory=PdmDataConfig)
    train: PdmTrainOptions = field(default_factory=PdmTrainOptions)
    sr: PdmSrConfig | None = None

    def __post_init__(self) -> None:
        if self.sr is not None and self.sr.model.scale != self.model.scale:
            raise ConfigError(f"sr.model.scale: must equal model.scale ({self.model.scale}), got {self.sr.model.scale}")
