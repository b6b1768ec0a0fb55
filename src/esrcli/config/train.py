"""Training configuration: the TOML tables of ``esr train-net`` and ``esr train-gan``.

Two top-level frozen dataclasses share their tables: :class:`TrainNetConfig` (Real-ESRNet,
L1 only) and :class:`TrainGanConfig` (Real-ESRGAN, L1 + perceptual + GAN, with a
discriminator). Their defaults are Real-ESRGAN's published training options
(``train_realesrnet_x4plus.yml`` / ``train_realesrgan_x4plus.yml``, Wang et al., ICCVW 2021,
Sec. 4.1): Adam with betas (0.9, 0.99), lr 2e-4 (ESRNet) or 1e-4 (ESRGAN), EMA 0.999,
gt_size 256, a training-pair pool of 180, USM-sharpened ground truth for the L1 and
perceptual terms.

Tables: ``[model]``, ``[data]``, ``[degrade.*]`` (:class:`~esrcli.config.degrade.DegradeConfig`),
``[train]``, ``[val]``, ``[loss]`` and (GAN only) ``[net_d]`` and ``[teacher]``. Paths resolve relative to the
config file; unknown keys and wrong types are :class:`~esrcli.errors.ConfigError` naming the
dotted key.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from esrcli.config.degrade import DegradeConfig
from esrcli.errors import ConfigError

__all__ = [
    "ModelConfig",
    "DataConfig",
    "TrainOptions",
    "GanTrainOptions",
    "ValConfig",
    "LossConfig",
    "GanLossConfig",
    "NetDConfig",
    "TeacherConfig",
    "TrainNetConfig",
    "TrainGanConfig",
    "VGG_LAYERS",
]

VGG_LAYERS = ("conv1_2", "conv2_2", "conv3_4", "conv4_4", "conv5_4")
_VGG_BLOCK_CONVS = (2, 2, 4, 4, 4)  # VGG19's convolutions per block (esrcli.archs.vgg, without torch)


def check_vgg_layers(names: tuple[str, ...]) -> None:
    """Raise :class:`ConfigError` (``perceptual_layers[i]: ...``) for a name that is no VGG19 layer."""
    import re

    for i, name in enumerate(names):
        m = re.fullmatch(r"(?:conv|relu)([1-5])_([1-4])|pool([1-5])", str(name))
        if m is None or (m.group(1) and int(m.group(2)) > _VGG_BLOCK_CONVS[int(m.group(1)) - 1]):
            raise ConfigError(f"perceptual_layers[{i}]: {name!r} is no VGG19 layer (convB_I, reluB_I or poolB, e.g. conv5_4)")


def check_betas_and_ema(betas: tuple[float, float], ema_decay: float) -> None:
    """The Adam ``betas`` and the ``ema_decay`` of a training table (train-net, train-gan,
    train-pdm and its ``[sr]``): each in [0, 1).

    Raises:
        ConfigError: naming ``betas`` or ``ema_decay``.
    """
    if not all(0 <= b < 1 for b in betas):
        raise ConfigError(f"betas: each must be in [0, 1), got {list(betas)}")
    if not 0 <= ema_decay < 1:
        raise ConfigError(f"ema_decay: must be in [0, 1), got {ema_decay}")


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{name}: must be > 0, got {value}")


@dataclass(frozen=True)
class ModelConfig:
    """``[model]``: the generator and where its weights start from.

    Attributes:
        arch: ``"SRVGGNetCompact"`` or ``"RRDBNet"``.
        scale: upscaling factor: 1, 2, 3, 4 or 8 (RRDBNet: 1, 2 or 4, with pixel-unshuffle below 4).
        num_feat: feature channels.
        num_block: RRDB blocks (RRDBNet only).
        num_grow_ch: growth channels (RRDBNet only).
        num_conv: hidden convolutions (SRVGGNetCompact only).
        act_type: activation of SRVGGNetCompact (``prelu``, ``relu``, ``leakyrelu``).
        upsample: SRVGGNetCompact's global residual, ``nearest`` (Real-ESRGAN's) or
            ``bilinear`` (esr's compact models; see :class:`esrcli.archs.SRVGGNetCompact`).
        pretrained: optional starting weights (``.pth`` or ``.safetensors``); for train-gan
            the train-net export (its EMA weights).
        predict_degradation: CSRGAN-style joint model: a small head (``net_p``) on the
            generator's trunk features predicts each training sample's degradation
            parameters (:data:`esrcli.degrade.vector.PARAM_NAMES`), with the MSE weighted
            by ``train.predict_weight`` added to the generator's loss. The head is saved in
            checkpoints, never in exports; the generator's weights keep their layout.
            Measured in docs/estimate.md ("CSRGAN joint model").
    """

    arch: Literal["SRVGGNetCompact", "RRDBNet"] = "SRVGGNetCompact"
    scale: int = 4
    num_feat: int = 64
    num_block: int = 23
    num_grow_ch: int = 32
    num_conv: int = 32
    act_type: Literal["prelu", "relu", "leakyrelu"] = "prelu"
    upsample: Literal["nearest", "bilinear"] = "nearest"
    pretrained: Path | None = None
    predict_degradation: bool = False

    def __post_init__(self) -> None:
        if self.scale not in (1, 2, 3, 4, 8):
            raise ConfigError(f"scale: expected 1, 2, 3, 4 or 8, got {self.scale}")
        if self.arch == "RRDBNet" and self.scale not in (1, 2, 4):
            raise ConfigError(f"scale: RRDBNet supports 1, 2 or 4, got {self.scale}")
        for name in ("num_feat", "num_block", "num_grow_ch"):
            _positive(name, getattr(self, name))
        if self.num_conv < 0:
            raise ConfigError(f"num_conv: must be >= 0, got {self.num_conv}")

    def generator_params(self) -> dict[str, int | str]:
        """Hyper-parameters for :func:`esrcli.archs.build_generator` (only those of ``arch``)."""
        if self.arch == "RRDBNet":
            return {"num_in_ch": 3, "num_out_ch": 3, "scale": self.scale, "num_feat": self.num_feat,
                    "num_block": self.num_block, "num_grow_ch": self.num_grow_ch}
        params: dict[str, int | str] = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": self.num_feat, "num_conv": self.num_conv,
                                        "scale": self.scale, "act_type": self.act_type}
        if self.upsample != "nearest":  # as esrcli.weights.detect_arch gives it
            params["upsample"] = self.upsample
        return params


@dataclass(frozen=True)
class DataConfig:
    """``[data]``: high-resolution training images.

    Attributes:
        folders: folders searched recursively for images (png, jpg, jpeg, webp, bmp, tif).
        gt_size: side of the ground-truth patch the networks train on (pixels).
        crop_size: side of the random crop taken before degradation (Real-ESRGAN's
            ``crop_pad_size``, 400); images smaller than it are reflect-padded.
        use_hflip: random horizontal flips.
        use_rot: random 90-degree rotations and vertical flips.
        min_size: images whose shorter side is below this are skipped (0 keeps all).
        num_workers: data-loading worker processes (0 loads in the training process).
    """

    folders: tuple[Path, ...] = ()
    gt_size: int = 256
    crop_size: int = 400
    use_hflip: bool = True
    use_rot: bool = False
    min_size: int = 0
    num_workers: int = 2

    def __post_init__(self) -> None:
        _positive("gt_size", self.gt_size)
        if self.crop_size < self.gt_size:
            raise ConfigError(f"crop_size: must be >= gt_size ({self.gt_size}), got {self.crop_size}")
        if self.min_size < 0 or self.num_workers < 0:
            raise ConfigError("min_size: must be >= 0" if self.min_size < 0 else "num_workers: must be >= 0")


@dataclass(frozen=True)
class TrainOptions:
    """``[train]``: optimisation, precision and checkpoints (Real-ESRNet defaults).

    Attributes:
        total_iter: iterations to train.
        batch_size: patches per iteration and process.
        lr: Adam learning rate of the generator.
        betas: Adam betas.
        weight_decay: Adam weight decay.
        scheduler: ``"multistep"`` (MultiStepLR) or ``"cosine"`` (cosine annealing to ``eta_min``).
        milestones: MultiStepLR iterations where the lr is multiplied by ``gamma``.
        gamma: MultiStepLR factor.
        eta_min: final lr of the cosine schedule.
        warmup_iter: linear warm-up iterations (0: none).
        ema_decay: decay of the exponential moving average of the generator (0 disables it).
        pool_size: size of the training-pair pool that mixes degradations across batches
            (Real-ESRGAN's queue, 180); rounded down to a multiple of ``batch_size`` as
            Real-ESRGAN does (at least one batch); 0 disables it.
        gt_usm: sharpen the ground truth with USM for the L1 (and perceptual) terms.
        seed: seed of every random choice (data, degradation, initialisation).
        precision: ``"auto"`` (bf16 where the device supports it, fp16 + grad scaler on older
            GPUs, else fp32), ``"fp32"``, ``"bf16"`` or ``"fp16"`` autocast.
        channels_last: NHWC memory format (faster convolutions with mixed precision).
        compile: ``torch.compile`` the generator's training forward pass (fewer, fused kernels;
            needs a C++ compiler on CPU; the first iterations are slow while it compiles).
        compile_kernels: without ``compile``, on the CPU, compute SRVGGNetCompact's PReLU
            gradients with one ``torch.compile``-generated kernel per layer (8% faster steps;
            about 20 s of compiling at the first iteration, seconds once cached); falls back
            to the eager kernels with a note where no C++ compiler works.
        grad_clip: clip the gradient norm to this value (0: no clipping).
        accum_steps: gradient accumulation steps per iteration (each reads a full batch).
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        degrade_on_cpu: synthesise the training pairs on the CPU (one thread per sample) and
            move them to ``device`` (for GPUs on machines with many cores: the JPEG steps run
            on the CPU anyway); false: on ``device``.
        checkpoint_interval: iterations between checkpoints (and EMA exports).
        keep_checkpoints: how many checkpoints to keep (oldest deleted first).
        log_interval: iterations between lines in ``metrics.jsonl``.
        threads: CPU threads for torch (0: leave torch's default).
        predict_weight: lambda of the degradation-prediction MSE (used with
            ``model.predict_degradation``). With 0.1, fine-tuning esr-general-x4-net, the
            term starts at about a quarter of the L1 pixel loss (0.015 against 0.055) and
            falls below a tenth within 500 iterations as the head learns: an auxiliary
            term that never dominates. CSRGAN's own value is not published in a form
            found here.
    """

    total_iter: int = 1_000_000
    batch_size: int = 12
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    scheduler: Literal["multistep", "cosine"] = "multistep"
    milestones: tuple[int, ...] = (1_000_000,)
    gamma: float = 0.5
    eta_min: float = 1e-7
    warmup_iter: int = 0
    ema_decay: float = 0.999
    pool_size: int = 180
    gt_usm: bool = True
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    channels_last: bool = True
    compile: bool = False
    compile_kernels: bool = True
    grad_clip: float = 0.0
    accum_steps: int = 1
    device: str = "auto"
    degrade_on_cpu: bool = False
    checkpoint_interval: int = 5000
    keep_checkpoints: int = 3
    log_interval: int = 100
    threads: int = 0
    predict_weight: float = 0.1

    def __post_init__(self) -> None:
        for name in ("total_iter", "batch_size", "lr", "accum_steps", "checkpoint_interval", "keep_checkpoints", "log_interval"):
            _positive(name, getattr(self, name))
        check_betas_and_ema(self.betas, self.ema_decay)
        if self.pool_size < 0:
            raise ConfigError(f"pool_size: must be >= 0, got {self.pool_size}")
        if list(self.milestones) != sorted(self.milestones):
            raise ConfigError("milestones: must be increasing")
        for name in ("grad_clip", "warmup_iter", "weight_decay", "threads"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if not self.predict_weight >= 0:
            raise ConfigError(f"predict_weight: must be >= 0, got {self.predict_weight}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"device: expected auto, cpu, cuda or cuda:N, got {self.device!r}")


@dataclass(frozen=True)
class GanTrainOptions(TrainOptions):
    """``[train]`` of train-gan: Real-ESRGAN defaults (lr 1e-4, 400k iterations)."""

    total_iter: int = 400_000
    lr: float = 1e-4
    milestones: tuple[int, ...] = (400_000,)


@dataclass(frozen=True)
class ValConfig:
    """``[val]``: validation on HR folders (each LR input made by MATLAB-style bicubic).

    Attributes:
        folders: HR validation folders (empty: no validation).
        interval: iterations between validations.
        metrics: any of ``psnr_y``, ``ssim_y`` (on Y of YCbCr, BasicSR conventions) and ``niqe``.
        crop_border: pixels cropped at each border before PSNR/SSIM (usually ``scale``).
        save_images: how many validation SR images to save per validation.
        tile: tile size for the validation forward pass (0: whole image).
    """

    folders: tuple[Path, ...] = ()
    interval: int = 5000
    metrics: tuple[Literal["psnr_y", "ssim_y", "niqe"], ...] = ("psnr_y", "ssim_y")
    crop_border: int = 4
    save_images: int = 5
    tile: int = 0

    def __post_init__(self) -> None:
        _positive("interval", self.interval)
        for name in ("crop_border", "save_images", "tile"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class LossConfig:
    """``[loss]`` of train-net: the pixel loss.

    Attributes:
        pixel_weight: weight of the pixel loss.
        pixel_criterion: ``"l1"``, ``"l2"`` or ``"charbonnier"``.
    """

    pixel_weight: float = 1.0
    pixel_criterion: Literal["l1", "l2", "charbonnier"] = "l1"

    def __post_init__(self) -> None:
        if self.pixel_weight < 0:
            raise ConfigError(f"pixel_weight: must be >= 0, got {self.pixel_weight}")


@dataclass(frozen=True)
class GanLossConfig(LossConfig):
    """``[loss]`` of train-gan: pixel + perceptual + adversarial (Real-ESRGAN weights 1, 1, 0.1).

    Attributes:
        perceptual_weight: weight of the VGG19 perceptual loss.
        perceptual_layers: VGG19 conv layers (features before activation).
        perceptual_layer_weights: one weight per layer (0.1, 0.1, 1, 1, 1).
        vgg_weights: torchvision's ``vgg19-dcbb9e9d.pth``; unset: the torch hub cache.
        perceptual_optional: when the VGG19 file is absent, train without the perceptual
            term (a notice says so) instead of stopping with an error.
        gan_type: ``"vanilla"``, ``"lsgan"``, ``"hinge"`` or ``"ragan"`` (ESRGAN's relativistic average).
        gan_weight: weight of the adversarial term for the generator.
        feature_matching_weight: weight of the discriminator feature-matching loss (L1
            between the discriminator's intermediate activations on real and generated
            images, pix2pixHD Eq. 4; 0 disables it). Needs no ImageNet weights.
        phase_weight: weight of the sub-pixel phase loss against the (USM) GT
            (:func:`esrcli.losses.phase_loss` with the model's scale as period: a penalty on a
            fixed pixel-shuffle grid in the output; 0 disables it).
        texture_weight: weight of the patch-wise texture loss against the (USM) GT
            (:func:`esrcli.losses.texture_loss`; 0 disables it).
    """

    perceptual_weight: float = 1.0
    perceptual_layers: tuple[str, ...] = VGG_LAYERS
    perceptual_layer_weights: tuple[float, ...] = (0.1, 0.1, 1.0, 1.0, 1.0)
    vgg_weights: Path | None = None
    perceptual_optional: bool = False
    gan_type: Literal["vanilla", "lsgan", "hinge", "ragan"] = "vanilla"
    gan_weight: float = 0.1
    feature_matching_weight: float = 0.0
    phase_weight: float = 0.0
    texture_weight: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.perceptual_layers) != len(self.perceptual_layer_weights):
            raise ConfigError("perceptual_layer_weights: needs one weight per perceptual layer")
        check_vgg_layers(self.perceptual_layers)
        for name in ("perceptual_weight", "gan_weight", "feature_matching_weight", "phase_weight", "texture_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class NetDConfig:
    """``[net_d]``: the discriminator of train-gan.

    Attributes:
        type: ``"unet"`` (Real-ESRGAN's UNetDiscriminatorSN, spectral norm) or ``"vgg"``
            (ESRGAN's VGG-style discriminator; needs gt_size 128 or 256).
        num_feat: base channels (64).
        skip_connection: U-Net skip connections.
        lr: Adam learning rate of the discriminator.
        betas: Adam betas.
        d_init_iters: iterations at the start that train only the discriminator.
    """

    type: Literal["unet", "vgg"] = "unet"
    num_feat: int = 64
    skip_connection: bool = True
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    d_init_iters: int = 0

    def __post_init__(self) -> None:
        _positive("num_feat", self.num_feat)
        _positive("lr", self.lr)
        if self.d_init_iters < 0:
            raise ConfigError("d_init_iters: must be >= 0")


@dataclass(frozen=True)
class TeacherConfig:
    """``[teacher]`` of train-gan (optional): L1 between the generator's output and a frozen
    teacher network's output on the same LQ input (knowledge distillation).

    The teacher runs without gradients in half precision; its weights are never stored in
    checkpoints (a resumed run loads it again); the export's metadata records it.

    Attributes:
        model: a model file esr loads (``.safetensors`` / ``.pth``, relative to the config
            file) or, when no such file exists, an embedded model name such as
            ``"realesrgan-x4plus"``; unset: no teacher term.
        weight: weight of the teacher L1 term.
        precision: ``"auto"`` (bf16 on GPUs and CPUs that support it, else fp16 on GPUs and
            fp32 on CPUs), ``"bf16"``, ``"fp16"`` or ``"fp32"``.
    """

    model: Path | None = None
    weight: float = 1.0
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ConfigError(f"weight: must be >= 0, got {self.weight}")


def _check_common(cfg: TrainNetConfig | TrainGanConfig) -> None:
    """Cross-table checks; ``degrade.scale`` / ``degrade.gt_size`` follow ``model.scale`` / ``data.gt_size``.

    A ``[degrade]`` value left at its default is taken from ``[model]`` / ``[data]``; one set
    to something else is an error (the two tables must agree).
    """
    if cfg.data.gt_size % cfg.model.scale:
        raise ConfigError(f"data.gt_size: must be a multiple of model.scale ({cfg.model.scale}), got {cfg.data.gt_size}")
    defaults = DegradeConfig()
    for key, want, source in (("scale", cfg.model.scale, "model.scale"), ("gt_size", cfg.data.gt_size, "data.gt_size")):
        have = getattr(cfg.degrade, key)
        if have != want and have != getattr(defaults, key):
            raise ConfigError(f"degrade.{key}: must equal {source} ({want}), got {have}")
    if (cfg.degrade.scale, cfg.degrade.gt_size) != (cfg.model.scale, cfg.data.gt_size):
        synced = replace(cfg.degrade, scale=cfg.model.scale, gt_size=cfg.data.gt_size)
        object.__setattr__(cfg, "degrade", synced)  # frozen: fill the derived values once, at construction


@dataclass(frozen=True)
class TrainNetConfig:
    """``esr train-net``: Real-ESRNet, the generator trained with the pixel loss only."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    degrade: DegradeConfig = field(default_factory=DegradeConfig)
    train: TrainOptions = field(default_factory=TrainOptions)
    val: ValConfig = field(default_factory=ValConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        _check_common(self)


@dataclass(frozen=True)
class TrainGanConfig:
    """``esr train-gan``: Real-ESRGAN, the generator against a discriminator."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    degrade: DegradeConfig = field(default_factory=DegradeConfig)
    train: GanTrainOptions = field(default_factory=GanTrainOptions)
    val: ValConfig = field(default_factory=ValConfig)
    loss: GanLossConfig = field(default_factory=GanLossConfig)
    net_d: NetDConfig = field(default_factory=NetDConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)

    def __post_init__(self) -> None:
        _check_common(self)
        if self.net_d.type == "vgg" and self.data.gt_size not in (128, 256):
            raise ConfigError(f"net_d.type: 'vgg' needs data.gt_size 128 or 256, got {self.data.gt_size}")
        if self.loss.texture_weight > 0 and self.data.gt_size < 16:  # esrcli.losses.texture.TEXTURE_PATCH
            raise ConfigError(f"loss.texture_weight: needs data.gt_size >= 16 (its window), got {self.data.gt_size}")


def is_gan(cfg: TrainNetConfig | TrainGanConfig) -> bool:
    """True for a train-gan configuration."""
    return isinstance(cfg, TrainGanConfig)
