"""Builders for a training run: networks, pretrained weights, optimisers, precision, data.

Each function does one thing from the frozen config; :mod:`esrcli.train.loop` calls them.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from esrcli.archs import SRVGGNetCompact, UNetDiscriminatorSN, VGGStyleDiscriminator, build_generator
from esrcli.config.train import ModelConfig, NetDConfig, TeacherConfig, TrainGanConfig, TrainNetConfig, TrainOptions
from esrcli.data.dataset import HRCropDataset, InfiniteSampler, ScanResult, ignore_stop_signals, mix_seed
from esrcli.errors import TrainingError, WeightsError
from esrcli.train.schedule import build_scheduler
from esrcli.weights import ModelInfo, params_text, read_model_info

__all__ = [
    "Precision",
    "select_precision",
    "generator_info",
    "build_net_g",
    "load_pretrained",
    "build_net_d",
    "build_net_p",
    "build_optimizers",
    "build_loader",
    "build_teacher",
    "Teacher",
    "EXPORT_NAME",
]

EXPORT_NAME = "net_g_ema.safetensors"


@dataclass(frozen=True)
class Precision:
    """Mixed-precision choice: ``dtype`` of autocast (``None``: fp32) and whether fp16 needs a grad scaler."""

    name: str
    dtype: torch.dtype | None
    device_type: str

    @property
    def use_scaler(self) -> bool:
        return self.dtype == torch.float16

    def autocast(self) -> ContextManager:
        """The autocast context for forward passes (a no-op for fp32)."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


def _cpu_bf16_supported() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def select_precision(name: str, device: torch.device) -> Precision:
    """Resolve ``train.precision`` for ``device``.

    ``"auto"``: bf16 on GPUs that support it (Ampere+), fp16 with a grad scaler on older GPUs,
    bf16 on CPUs with native bf16 (AVX512-BF16 / AMX), else fp32.

    Raises:
        TrainingError: bf16 asked on a device without bf16 support.
    """
    dt = device.type
    if name == "fp32":
        return Precision("fp32", None, dt)
    if name == "fp16":
        return Precision("fp16", torch.float16, dt)
    bf16_ok = torch.cuda.is_bf16_supported() if dt == "cuda" else _cpu_bf16_supported()
    if name == "bf16":
        if not bf16_ok and dt == "cuda":
            raise TrainingError("train.precision: this GPU does not support bf16", hint="use precision = \"fp16\" or \"auto\"")
        return Precision("bf16", torch.bfloat16, dt)
    if bf16_ok:
        return Precision("bf16", torch.bfloat16, dt)
    return Precision("fp16", torch.float16, dt) if dt == "cuda" else Precision("fp32", None, dt)


def generator_info(model: ModelConfig) -> ModelInfo:
    """The :class:`~esrcli.weights.ModelInfo` of the configured generator (for exports)."""
    return ModelInfo(arch=model.arch, params=model.generator_params(), scale=model.scale, metadata={})


def build_net_g(model: ModelConfig, seed: int) -> nn.Module:
    """The generator, initialised deterministically from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(mix_seed(seed, 0x6E6574))
        try:
            return build_generator(model.arch, model.generator_params())
        except WeightsError as exc:
            raise TrainingError(f"model: {exc}") from None


def use_compiled_kernels(net_g: nn.Module, train: TrainOptions, device: torch.device) -> bool:
    """Switch on ``train.compile_kernels`` (SRVGGNetCompact's compiled PReLU backward) where it
    applies: on the CPU, without whole-model ``train.compile``. Returns whether it did."""
    if isinstance(net_g, SRVGGNetCompact) and device.type == "cpu" and train.compile_kernels and not train.compile:
        net_g.use_compiled_prelu_backward()
        return True
    return False


def _resolve_pretrained(path: Path) -> Path:
    """A train-net output folder stands for its final export."""
    if path.is_dir():
        candidates = [path / EXPORT_NAME] + sorted((path / "exports").glob("*.safetensors"), reverse=True)
        for c in candidates:
            if c.is_file():
                return c
        raise TrainingError(f"{path}: no exported model ({EXPORT_NAME}) in this training folder")
    return path


def load_pretrained(net_g: nn.Module, model: ModelConfig, notify: Callable[[str], None] | None = None) -> Path | None:
    """Load ``model.pretrained`` into ``net_g`` (EMA weights of official/esr files are preferred).

    SRVGGNetCompact weights trained on another global residual (``upsample``, nearest vs
    bilinear: same keys) load, as a deliberate fine-tune would need, and ``notify`` gets a
    line saying so (the first outputs differ from the file's until the run adapts).

    Returns:
        The file actually read, or ``None`` when no pretrained file is configured.

    Raises:
        TrainingError: unreadable file, or weights of another architecture / other
            hyper-parameters (one line naming both).
    """
    if model.pretrained is None:
        return None
    path = _resolve_pretrained(Path(model.pretrained))
    try:
        sd, info = read_model_info(path)
    except WeightsError as exc:
        raise TrainingError(f"model.pretrained: {exc}", exc.hint) from None
    want = model.generator_params()
    residual = {k: v for k, v in want.items() if k != "upsample"}
    mismatch = info.arch != model.arch or any(info.params.get(k) != v for k, v in residual.items() if k in info.params)
    if mismatch:
        raise TrainingError(
            f"{path}: pretrained weights are {info.arch}({params_text(info.params)}), "
            f"but [model] asks for {model.arch}({params_text(want)})"
        )
    try:
        net_g.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    except RuntimeError as exc:
        raise TrainingError(f"{path}: weights do not fit the generator ({str(exc).splitlines()[0]})") from None
    had, has = str(info.params.get("upsample", "nearest")), str(want.get("upsample", "nearest"))
    if model.arch == "SRVGGNetCompact" and had != has and notify is not None:
        notify(f"note: {path.name} was trained on a {had} global residual; this run uses {has} (model.upsample)")
    return path


def build_net_d(cfg: NetDConfig, gt_size: int, seed: int) -> nn.Module:
    """The discriminator: UNetDiscriminatorSN (Real-ESRGAN) or VGGStyleDiscriminator (ESRGAN)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(mix_seed(seed, 0x6E6574, 0x64))
        if cfg.type == "unet":
            return UNetDiscriminatorSN(num_in_ch=3, num_feat=cfg.num_feat, skip_connection=cfg.skip_connection)
        return VGGStyleDiscriminator(num_in_ch=3, num_feat=cfg.num_feat, input_size=gt_size)


def build_net_p(net_g: nn.Module, seed: int) -> tuple[nn.Module, Any]:
    """The degradation-prediction head of ``model.predict_degradation`` and the tap that feeds it.

    Returns:
        ``(net_p, tap)``: a :class:`~esrcli.archs.deghead.DegradationHead` (float32, CPU,
        initialised from ``seed``) and the :class:`~esrcli.archs.deghead.TrunkTap` hooked on
        ``net_g`` (not wrapped).

    Raises:
        TrainingError: a generator without known trunk features.
    """
    from esrcli.archs.deghead import DegradationHead, TrunkTap
    from esrcli.degrade.vector import PARAM_NAMES

    try:
        tap = TrunkTap(net_g)
    except ValueError as exc:
        raise TrainingError(f"model.predict_degradation: {exc}") from None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(mix_seed(seed, 0x6E6574, 0x70))
        return DegradationHead(tap.num_feat, len(PARAM_NAMES)), tap


@dataclass
class Teacher:
    """A frozen teacher network for train-gan's ``[teacher]`` term.

    Attributes:
        net: the network on the training device, eval mode, no grads, in ``dtype``.
        dtype: its compute dtype (bf16, fp16 or fp32).
        source: what was loaded (a file path or an embedded model name), for metadata.
    """

    net: nn.Module
    dtype: torch.dtype
    source: str

    def __call__(self, lq: Tensor) -> Tensor:
        """The teacher's output on ``lq`` ``(B, 3, h, w)`` float in [0, 1]: float32
        ``(B, 3, h*s, w*s)`` clamped to [0, 1], computed without gradients."""
        # Outside the training step's autocast: the teacher runs in its own dtype.
        with torch.no_grad(), torch.autocast(lq.device.type, enabled=False):
            x = lq.to(self.dtype)
            if x.device.type in ("cpu", "cuda"):
                x = x.contiguous(memory_format=torch.channels_last)
            return self.net(x).float().clamp_(0, 1)


def teacher_source(model: Path) -> str:
    """``teacher.model`` as something :func:`esrcli.weights.load_model` opens: the file when it
    exists, else the embedded model of that (bare) name.

    Raises:
        TrainingError: neither a file nor an embedded model name.
    """
    from esrcli.weights import catalogue, find_entry

    model = Path(model)
    if model.is_file():
        return str(model)
    if not model.suffix and find_entry(model.name) is not None:
        return model.name
    names = ", ".join(e.name for e in catalogue()) or "none"
    raise TrainingError(f"teacher.model: {model}: no such model file or embedded model (embedded: {names})")


def build_teacher(cfg: TeacherConfig, scale: int, device: torch.device) -> Teacher | None:
    """Load the ``[teacher]`` network frozen in half precision, or ``None`` without one.

    Raises:
        TrainingError: no such file or model, unreadable weights, or a teacher whose scale
            differs from ``model.scale``.
    """
    if cfg.model is None:
        return None
    from esrcli.weights import load_model

    source = teacher_source(cfg.model)
    try:
        net, info = load_model(source, device="cpu")
    except WeightsError as exc:
        raise TrainingError(f"teacher.model: {exc}", exc.hint) from None
    if info.scale != scale:
        raise TrainingError(f"teacher.model: {source} is x{info.scale}, the generator is x{scale}")
    name = cfg.precision
    if name == "auto":
        bf16 = torch.cuda.is_bf16_supported() if device.type == "cuda" else _cpu_bf16_supported()
        name = "bf16" if bf16 else ("fp16" if device.type == "cuda" else "fp32")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]
    net = net.eval().requires_grad_(False).to(device=device, dtype=dtype)
    if device.type in ("cpu", "cuda"):
        net = net.to(memory_format=torch.channels_last)
    return Teacher(net, dtype, source)


def _fused_ok(net: nn.Module) -> bool | None:
    """Fused Adam (one kernel for all parameters) where torch has it: float32 on CPU or CUDA."""
    params = list(net.parameters())
    if params and all(p.dtype == torch.float32 and p.device.type in ("cpu", "cuda") for p in params):
        return True
    return None


def build_optimizers(
    net_g: nn.Module, net_d: nn.Module | None, cfg: TrainNetConfig | TrainGanConfig, net_p: nn.Module | None = None
) -> dict[str, Any]:
    """Adam optimisers and schedulers: ``{"opt_g", "sched_g"[, "opt_d", "sched_d"]}``.

    The degradation head ``net_p`` (``model.predict_degradation``), when given, is a second
    parameter group of ``opt_g``: same lr, schedule and step as the generator.
    """
    t: TrainOptions = cfg.train
    fused = _fused_ok(net_g)
    groups: list[dict[str, Any]] = [{"params": list(net_g.parameters())}]
    if net_p is not None:
        groups.append({"params": list(net_p.parameters())})
    opt_g = torch.optim.Adam(groups, lr=t.lr, betas=t.betas, weight_decay=t.weight_decay, fused=fused)
    out: dict[str, Any] = {"opt_g": opt_g, "sched_g": build_scheduler(opt_g, t)}
    if net_d is not None and isinstance(cfg, TrainGanConfig):
        d = cfg.net_d
        opt_d = torch.optim.Adam(net_d.parameters(), lr=d.lr, betas=d.betas, weight_decay=t.weight_decay, fused=_fused_ok(net_d))
        # The discriminator follows the same schedule shape with its own base lr.
        out.update(opt_d=opt_d, sched_d=build_scheduler(opt_d, t))
    return out


def build_loader(
    scan: ScanResult,
    cfg: TrainNetConfig | TrainGanConfig,
    start_iter: int,
    rank: int = 0,
    world: int = 1,
) -> tuple[HRCropDataset, DataLoader]:
    """The endless loader of HR crops, positioned at ``start_iter`` (exact resume).

    Each iteration reads ``train.accum_steps`` batches of ``train.batch_size`` crops.
    """
    t = cfg.train
    dataset = HRCropDataset(scan, cfg.data.crop_size, cfg.data.use_hflip, cfg.data.use_rot, seed=t.seed)
    start = start_iter * t.batch_size * t.accum_steps
    sampler = InfiniteSampler(len(dataset), seed=t.seed, start=start, rank=rank, world=world)
    workers = cfg.data.num_workers
    loader = DataLoader(
        dataset,
        batch_size=t.batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=True,
        persistent_workers=workers > 0,
        prefetch_factor=2 if workers > 0 else None,
        worker_init_fn=ignore_stop_signals if workers > 0 else None,
    )
    return dataset, loader

