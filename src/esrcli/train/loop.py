"""The two-stage Real-ESRGAN training loop (``esr train-net`` and ``esr train-gan``).

Source: Wang et al., "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure
Synthetic Data", ICCVW 2021, Sec. 3-4: Real-ESRNet is trained with the L1 loss on pairs made
on the fly by the second-order degradation; Real-ESRGAN starts from it and adds a VGG19
perceptual loss and a U-Net discriminator with spectral normalisation (weights 1, 1, 0.1).
USM-sharpened ground truth feeds the L1 and perceptual terms, the plain ground truth the GAN.

Reading order: :func:`train` (the loop) calls small functions: ``make_pairs`` (data and
degradation), :func:`train_step_net` / :func:`train_step_gan`, ``ema_update``,
:func:`~esrcli.train.validate.validate`, :func:`save_checkpoint` / :func:`load_checkpoint`.
Library code never prints: progress goes to ``on_step``, warnings to ``on_message``.

With ``model.predict_degradation`` (CSRGAN's joint model) a small head ``net_p`` reads the
generator's trunk features and regresses each sample's degradation parameters; its MSE,
weighted by ``train.predict_weight``, joins the generator's loss (``l_pred``; ``pred_mae`` is
the unweighted mean absolute error of the normalised parameters).
"""

from __future__ import annotations

import math
import random
import time
import warnings
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from esrcli.archs.srvgg import compiled_prelu_backward_error
from esrcli.atomic import folder_lock, remove_stale_parts
from esrcli.config import from_toml, to_toml
from esrcli.config.train import TrainGanConfig, TrainNetConfig
from esrcli.data.dataset import mix_seed, scan_images
from esrcli.errors import ConfigError, TrainingError, folder_failure
from esrcli.losses import (
    discriminator_gan_loss,
    feature_matching_loss,
    generator_gan_loss,
    phase_loss,
    pixel_loss,
    texture_loss,
)
from esrcli.train import build
from esrcli.train.cpu import single_thread_on_cpu, torch_threads
from esrcli.train.checkpoint import CHECKPOINT_DIR, checkpoint_path, latest_checkpoint, read_checkpoint, write_checkpoint
from esrcli.train.distributed import DistInfo, barrier, cleanup_distributed, select_device, setup_distributed
from esrcli.train.ema import ema_update, make_ema
from esrcli.train.logger import MetricsLog
from esrcli.train.pairs import PairMaker
from esrcli.train.validate import load_validation_set, validate

__all__ = ["Nets", "Optim", "StepInfo", "TrainResult", "train", "train_step_net", "train_step_gan", "save_checkpoint", "load_checkpoint"]

Config = TrainNetConfig | TrainGanConfig


@dataclass
class Nets:
    """The networks of a run (``net_g`` / ``net_d`` may be wrapped in DistributedDataParallel)."""

    net_g: nn.Module
    net_g_ema: nn.Module
    net_d: nn.Module | None = None
    perceptual: nn.Module | None = None
    teacher: build.Teacher | None = None  # frozen, never in checkpoints
    forward_g: Callable[[Tensor], Tensor] | None = None  # compiled ``net_g`` (train.compile)
    net_p: nn.Module | None = None  # degradation head (model.predict_degradation)
    tap: Any = None  # TrunkTap on net_g feeding net_p

    def g(self, lq: Tensor) -> Tensor:
        """The generator's training forward pass (compiled when ``train.compile``)."""
        return (self.net_g if self.forward_g is None else self.forward_g)(lq)


@dataclass
class Optim:
    """Optimisers, schedulers and the fp16 grad scaler."""

    opt_g: torch.optim.Optimizer
    sched_g: Any
    scaler: torch.amp.GradScaler
    opt_d: torch.optim.Optimizer | None = None
    sched_d: Any = None


@dataclass(frozen=True)
class StepInfo:
    """What ``on_step`` receives after each iteration."""

    iteration: int
    total: int
    losses: dict[str, float]
    lr: float
    val: dict[str, float] | None = None
    checkpoint: Path | None = None


@dataclass(frozen=True)
class TrainResult:
    """The outcome of :func:`train`.

    Attributes:
        iteration: the last completed iteration.
        total: ``train.total_iter``.
        stopped: ``"done"``, ``"time-limit"`` or ``"interrupted"`` (``stop_requested``).
        export: the final EMA export (safetensors), ``None`` on ranks other than 0.
        checkpoint: the last checkpoint written.
        resumed_from: the checkpoint the run started from.
        losses: losses of the last iteration.
        val: the last validation metrics (empty when there was none).
        seconds: wall-clock time of the loop.
        iters_per_s: mean training speed of this process.
        precision: the autocast precision used (``fp32``, ``bf16``, ``fp16``).
    """

    iteration: int
    total: int
    stopped: str
    export: Path | None
    checkpoint: Path | None
    resumed_from: Path | None
    losses: dict[str, float]
    val: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    iters_per_s: float = 0.0
    precision: str = "fp32"


class _NonFinite(Exception):
    """A loss became NaN or infinite (converted to TrainingError by :func:`train`)."""


def _unwrap(net: nn.Module) -> nn.Module:
    return net.module if isinstance(net, DistributedDataParallel) else net


def _finite(name: str, value: Tensor) -> float:
    v = float(value.detach())
    if not math.isfinite(v):
        raise _NonFinite(f"{name} is {v}")
    return v


def _optimizer_step(loss: Tensor, net: nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, grad_clip: float, last: bool) -> None:
    scaler.scale(loss).backward()
    if not last:
        return
    with single_thread_on_cpu(opt.param_groups[0]["params"]):
        if grad_clip > 0:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
        scaler.step(opt)
        scaler.update()


def _no_sync(net: nn.Module, last: bool):
    return net.no_sync() if isinstance(net, DistributedDataParallel) and not last else nullcontext()


def _no_sync_g(nets: Nets, last: bool) -> ExitStack:
    """``no_sync`` of the generator and, when there is one, of the degradation head."""
    stack = ExitStack()
    stack.enter_context(_no_sync(nets.net_g, last))
    if nets.net_p is not None:
        stack.enter_context(_no_sync(nets.net_p, last))
    return stack


def predict_loss(nets: Nets, deg: Tensor, weight: float) -> tuple[Tensor, float]:
    """The degradation-prediction term of the last generator forward pass.

    Args:
        nets: with ``net_p`` and ``tap`` (``model.predict_degradation``).
        deg: ``(B, K)`` float32 target parameters (:func:`esrcli.degrade.vector.param_vector`).
        weight: ``train.predict_weight`` (lambda).

    Returns:
        ``(weight * MSE(net_p(features), deg), mean absolute error)``, the MSE in float32.

    Source: CSRGAN's joint loss ``L = L_SR + lambda * L_pred`` (L_pred an MSE on the
    degradation parameters).
    """
    feat = nets.tap.pop()
    with torch.autocast(feat.device.type, enabled=False):  # a tiny MLP: float32 throughout
        pred = nets.net_p(feat.float())
    target = deg.to(pred.device, torch.float32)
    return weight * F.mse_loss(pred, target), float((pred.detach() - target).abs().mean())


def train_step_net(nets: Nets, optim: Optim, batches: list[dict[str, Tensor]], cfg: Config, prec: build.Precision) -> dict[str, float]:
    """One Real-ESRNet iteration: L1 (or L2/Charbonnier) between ``net_g(lq)`` and the (USM) GT.

    Args:
        batches: ``train.accum_steps`` micro-batches ``{"lq", "gt", "gt_usm"[, "deg"]}``.

    Returns:
        ``{"l_pix": mean over micro-batches}``, plus ``l_pred`` and ``pred_mae`` with the
        degradation head.
    """
    optim.opt_g.zero_grad(set_to_none=True)
    n = len(batches)
    logs = {"l_pix": 0.0}
    for i, b in enumerate(batches):
        last = i == n - 1
        target = b["gt_usm"] if cfg.train.gt_usm else b["gt"]
        with _no_sync_g(nets, last), prec.autocast():
            sr = nets.g(b["lq"])
        l_pix = cfg.loss.pixel_weight * pixel_loss(sr, target, cfg.loss.pixel_criterion)
        loss = l_pix
        logs["l_pix"] += _finite("l_pix", l_pix) / n
        if nets.net_p is not None:
            with _no_sync_g(nets, last):
                l_pred, mae = predict_loss(nets, b["deg"], cfg.train.predict_weight)
            loss = l_pix + l_pred
            logs["l_pred"] = logs.get("l_pred", 0.0) + _finite("l_pred", l_pred) / n
            logs["pred_mae"] = logs.get("pred_mae", 0.0) + mae / n
        with _no_sync_g(nets, last):
            _optimizer_step(loss / n, nets.net_g, optim.opt_g, optim.scaler, cfg.train.grad_clip, last)
    return logs


def _set_requires_grad(net: nn.Module, flag: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(flag)


def train_step_gan(
    nets: Nets, optim: Optim, batches: list[dict[str, Tensor]], cfg: TrainGanConfig, prec: build.Precision, iteration: int
) -> dict[str, float]:
    """One Real-ESRGAN iteration: generator (pixel + perceptual + GAN [+ feature matching]
    [+ teacher] [+ sub-pixel phase] [+ patch texture]), then discriminator.

    USM GT for the pixel, perceptual, phase and texture terms (when ``train.gt_usm``), plain GT for the GAN
    and feature-matching terms (Real-ESRGAN's ``l1_gt_usm``/``percep_gt_usm`` true,
    ``gan_gt_usm`` false); the teacher term is L1 to the frozen teacher's output on the same
    LQ. During the first ``net_d.d_init_iters`` iterations only the discriminator learns.

    Returns:
        ``l_g_pix``, ``l_g_percep``, ``l_g_gan``, ``l_d_real``, ``l_d_fake``, ``out_d_real``,
        ``out_d_fake`` (mean logits), and ``l_g_fm`` / ``l_g_teacher`` / ``l_g_phase`` / ``l_g_texture`` / ``l_g_pred`` and
        ``pred_mae`` when those terms are on, each averaged over micro-batches.
    """
    lc, n = cfg.loss, len(batches)
    net_g, net_d = nets.net_g, nets.net_d
    logs: dict[str, float] = {}
    add = lambda k, v: logs.__setitem__(k, logs.get(k, 0.0) + v / n)  # noqa: E731
    train_g = iteration >= cfg.net_d.d_init_iters
    outputs = []
    _set_requires_grad(net_d, False)
    optim.opt_g.zero_grad(set_to_none=True)
    for i, b in enumerate(batches):
        last = i == n - 1
        target = b["gt_usm"] if cfg.train.gt_usm else b["gt"]
        with _no_sync_g(nets, last or not train_g), prec.autocast():
            sr = nets.g(b["lq"])
            pred_term = predict_loss(nets, b["deg"], cfg.train.predict_weight) if nets.net_p is not None and train_g else None
        if nets.tap is not None and not train_g:
            nets.tap.pop()  # drop the features (and their graph) of this forward pass
        outputs.append(sr.detach())
        if not train_g:
            continue
        with _no_sync_g(nets, last), prec.autocast():
            l_pix = lc.pixel_weight * pixel_loss(sr, target, lc.pixel_criterion)
            use_percep = lc.perceptual_weight > 0 and nets.perceptual is not None
            l_percep = lc.perceptual_weight * nets.perceptual(sr, target) if use_percep else sr.new_zeros(())
            terms = [("l_g_pix", l_pix), ("l_g_percep", l_percep)]
            if lc.phase_weight > 0:
                terms.append(("l_g_phase", lc.phase_weight * phase_loss(sr, target, cfg.model.scale)))
            if lc.texture_weight > 0:
                terms.append(("l_g_texture", lc.texture_weight * texture_loss(sr, target)))
            if lc.feature_matching_weight > 0:
                fake_pred, fake_feats = net_d(sr, return_features=True)
                with torch.no_grad():
                    real_out, real_feats = net_d(b["gt"], return_features=True)
                real_pred = real_out if lc.gan_type == "ragan" else None
                terms.append(("l_g_fm", lc.feature_matching_weight * feature_matching_loss(fake_feats, real_feats)))
                del fake_feats, real_feats
            else:
                fake_pred = net_d(sr)
                real_pred = net_d(b["gt"]).detach() if lc.gan_type == "ragan" else None
            terms.insert(2, ("l_g_gan", lc.gan_weight * generator_gan_loss(fake_pred, real_pred, lc.gan_type)))
            if nets.teacher is not None and cfg.teacher.weight > 0:
                teacher_sr = nets.teacher(b["lq"])
                terms.append(("l_g_teacher", cfg.teacher.weight * pixel_loss(sr, teacher_sr, "l1")))
            if pred_term is not None:
                terms.append(("l_g_pred", pred_term[0]))
                add("pred_mae", pred_term[1])
            loss = sum(v for _, v in terms)
            for k, v in terms:
                add(k, _finite(k, v))
            _optimizer_step(loss.float() / n, net_g, optim.opt_g, optim.scaler, cfg.train.grad_clip, last)
    _set_requires_grad(net_d, True)
    optim.opt_d.zero_grad(set_to_none=True)
    for i, (b, sr) in enumerate(zip(batches, outputs)):
        last = i == n - 1
        with _no_sync(net_d, last), prec.autocast():
            real_pred = net_d(b["gt"])
            fake_pred = net_d(sr.clone())
            l_real, l_fake = discriminator_gan_loss(real_pred, fake_pred, lc.gan_type)
            add("l_d_real", _finite("l_d_real", l_real))
            add("l_d_fake", _finite("l_d_fake", l_fake))
            add("out_d_real", float(real_pred.detach().float().mean()))
            add("out_d_fake", float(fake_pred.detach().float().mean()))
            _optimizer_step((l_real + l_fake).float() / n, net_d, optim.opt_d, optim.scaler, cfg.train.grad_clip, last)
    return logs


def _rng_state(pairs: PairMaker) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": _py_state(), "degrade": pairs.generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _py_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def save_checkpoint(out_dir: Path, iteration: int, cfg: Config, nets: Nets, optim: Optim, pairs: PairMaker) -> Path:
    """Write the full training state of ``iteration`` atomically (rank 0) and rotate old ones.

    Raises:
        TrainingError: the write failed; earlier checkpoints are intact.
    """
    state: dict[str, Any] = {
        "format": "esr-train/1",
        "stage": "gan" if isinstance(cfg, TrainGanConfig) else "net",
        "iteration": iteration,
        "config": to_toml(cfg),
        "net_g": _unwrap(nets.net_g).state_dict(),
        "net_g_ema": nets.net_g_ema.state_dict(),
        "opt_g": optim.opt_g.state_dict(),
        "sched_g": optim.sched_g.state_dict(),
        "scaler": optim.scaler.state_dict(),
        "rng": _rng_state(pairs),
        "pool": pairs.state_dict(),
    }
    if nets.net_d is not None:
        state.update(net_d=_unwrap(nets.net_d).state_dict(), opt_d=optim.opt_d.state_dict(), sched_d=optim.sched_d.state_dict())
    if nets.net_p is not None:
        state["net_p"] = _unwrap(nets.net_p).state_dict()
    return write_checkpoint(checkpoint_path(out_dir, iteration), state, cfg.train.keep_checkpoints)


def _set_hparams(opt: torch.optim.Optimizer, sched: Any, lr: float, betas: tuple[float, float], weight_decay: float, t: Any) -> None:
    """Give a restored Adam and its schedule the configured base rate, betas and weight decay."""
    from esrcli.train.schedule import lr_factor

    sched.base_lrs = [lr] * len(opt.param_groups)
    for group in opt.param_groups:
        group.update(initial_lr=lr, betas=tuple(betas), weight_decay=weight_decay)
        group["lr"] = lr * lr_factor(max(0, sched.last_epoch), t)


#: Settings a checkpoint's networks were built with: a resumed run must keep them (``pretrained``
#: only seeds a new run; the discriminator's lr, betas and warm-up are the config's).
_NET_D_KEYS = ("type", "num_feat", "skip_connection")


def _check_networks_unchanged(state: dict[str, Any], cfg: Config) -> None:
    """Refuse a config whose networks differ from those of the checkpoint's run.

    Raises:
        TrainingError: names the first setting that changed, with both values.
    """
    try:
        then = from_toml(type(cfg), str(state.get("config", "")))
    except ConfigError:
        return  # an old or foreign checkpoint: load_state_dict still checks the shapes
    model_keys = ["arch"] + [k for k in cfg.model.generator_params() if k not in ("num_in_ch", "num_out_ch")]
    if cfg.model.arch == "SRVGGNetCompact":
        model_keys.append("upsample")
    for table, keys in (("model", model_keys), ("net_d", _NET_D_KEYS)):
        now, old_table = getattr(cfg, table, None), getattr(then, table, None)
        if now is None or old_table is None:
            continue
        for key in keys:
            old, new = getattr(old_table, key), getattr(now, key)
            if old != new:
                raise TrainingError(
                    f"{table}.{key} is {new!r}, but the checkpoint's run was built with {old!r}",
                    hint=f"keep [{table}] as it was when the run started, or use another output folder",
                )


def load_checkpoint(
    state: dict[str, Any], cfg: Config, nets: Nets, optim: Optim, pairs: PairMaker, restore_rng: bool = True,
    say: Callable[[str], None] = lambda m: None,
) -> int:
    """Restore a checkpoint read by :func:`~esrcli.train.checkpoint.read_checkpoint`; returns its iteration.

    The learning rates, betas and weight decay come from ``cfg``, not from the checkpoint (a
    changed ``train.lr`` is announced through ``say``); the optimiser moments, the schedule's
    position, the pair pool and the RNG states come from the checkpoint.

    Raises:
        TrainingError: a checkpoint of the other stage, of a different generator, or of
            another batch size, pool size or GT size.
    """
    stage = "gan" if isinstance(cfg, TrainGanConfig) else "net"
    if state.get("stage") != stage:
        raise TrainingError(f"checkpoint is from train-{state.get('stage')}, this is train-{stage} (use another output folder)")
    _check_networks_unchanged(state, cfg)
    if ("net_p" in state) != (nets.net_p is not None):
        have = "has a" if "net_p" in state else "has no"
        raise TrainingError(f"checkpoint {have} degradation head, model.predict_degradation is {str(nets.net_p is not None).lower()}",
                            hint="keep model.predict_degradation as it was, or use another output folder")
    try:
        _unwrap(nets.net_g).load_state_dict(state["net_g"])
        nets.net_g_ema.load_state_dict(state["net_g_ema"])
        if nets.net_d is not None:
            _unwrap(nets.net_d).load_state_dict(state["net_d"])
        if nets.net_p is not None:
            _unwrap(nets.net_p).load_state_dict(state["net_p"])
    except (RuntimeError, KeyError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else (lines[0] if lines else type(exc).__name__)  # torch: a title, then the keys
        raise TrainingError(f"checkpoint does not fit the configured networks ({detail[:300]})",
                            hint="[model] and [net_d] must stay as they were when the run started; or use another output folder") from None
    try:
        optim.opt_g.load_state_dict(state["opt_g"])
        optim.sched_g.load_state_dict(state["sched_g"])
        optim.scaler.load_state_dict(state["scaler"])
        if optim.opt_d is not None:
            optim.opt_d.load_state_dict(state["opt_d"])
            optim.sched_d.load_state_dict(state["sched_d"])
        pairs.load_state_dict(state["pool"])
    except (ValueError, KeyError) as exc:  # e.g. another batch or pool size than the checkpoint's
        raise TrainingError(f"checkpoint does not fit the configuration ({exc})",
                            hint="train.batch_size, train.pool_size and data.gt_size must stay as they were; or use another output folder") from None
    # The optimiser hyper-parameters are the config's, as the loss weights and the schedule are:
    # the checkpoint's moments are kept, its learning rate, betas and weight decay are not.
    t = cfg.train
    old_lr = optim.opt_g.param_groups[0].get("initial_lr", t.lr)
    _set_hparams(optim.opt_g, optim.sched_g, t.lr, t.betas, t.weight_decay, t)
    if optim.opt_d is not None:
        _set_hparams(optim.opt_d, optim.sched_d, cfg.net_d.lr, cfg.net_d.betas, t.weight_decay, t)
    if not math.isclose(old_lr, t.lr, rel_tol=1e-9):
        say(f"train.lr is {t.lr:g} (the checkpoint's run had {old_lr:g}): the schedule goes on from the new rate")
    if restore_rng:
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        version, internal, gauss = rng["python"]
        random.setstate((version, tuple(internal), gauss))
        pairs.generator.set_state(rng["degrade"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
    return int(state["iteration"])


def _pairs_text(cfg: Config) -> str:
    """Where the run's training pairs come from, for the log and the export's metadata."""
    d = cfg.degrade
    if d.source == "second-order":
        return "second-order (Real-ESRGAN)"
    pdm = Path(d.pdm).name if d.pdm is not None else "?"
    return f"PDM {pdm}" if d.source == "pdm" else f"mix: PDM {pdm} with probability {d.pdm_prob:g}, else second-order"


def _export(out_dir: Path, name: str, nets: Nets, cfg: Config, iteration: int) -> Path:
    from esrcli.weights import save_model

    path = out_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    stage = "train-gan" if isinstance(cfg, TrainGanConfig) else "train-net"
    extra = {"provenance": f"esr {stage}", "iterations": str(iteration), "degradation": _pairs_text(cfg)}
    if isinstance(cfg, TrainGanConfig):
        lc = cfg.loss
        percep = lc.perceptual_weight if nets.perceptual is not None else 0.0
        extra["losses"] = (f"pixel {lc.pixel_weight:g} ({lc.pixel_criterion}), perceptual {percep:g}, "
                           f"gan {lc.gan_weight:g} ({lc.gan_type}), feature_matching {lc.feature_matching_weight:g}")
        if lc.phase_weight > 0:
            extra["losses"] += f", phase {lc.phase_weight:g}"
        if lc.texture_weight > 0:
            extra["losses"] += f", texture {lc.texture_weight:g}"
        if nets.teacher is not None:
            extra["losses"] += f", teacher {cfg.teacher.weight:g}"
            extra["teacher"] = f"{nets.teacher.source} ({str(nets.teacher.dtype).removeprefix('torch.')})"
    save_model(path, nets.net_g_ema, build.generator_info(cfg.model), extra_metadata=extra)
    return path


def _build_nets(cfg: Config, device: torch.device, say: Callable[[str], None], resuming: bool) -> Nets:
    t = cfg.train
    net_g = build.build_net_g(cfg.model, t.seed)
    if not resuming:
        src = build.load_pretrained(net_g, cfg.model, say)
        if src is not None:
            say(f"generator initialised from {src}")
        elif isinstance(cfg, TrainGanConfig):
            say("warning: train-gan without model.pretrained starts from random weights (Real-ESRGAN starts from a train-net result)")
    fmt = torch.channels_last if t.channels_last else torch.contiguous_format
    net_g = net_g.to(device, memory_format=fmt).train()
    if build.use_compiled_kernels(net_g, t, device):
        say("PReLU backward: one compiled kernel per layer, compiled during the first iteration (train.compile_kernels)")
    nets = Nets(net_g, make_ema(net_g))
    if cfg.model.predict_degradation:  # after make_ema: the hook stays on net_g only
        net_p, nets.tap = build.build_net_p(net_g, t.seed)
        nets.net_p = net_p.to(device).train()
        say(f"degradation head on the generator's trunk features (predict_weight {t.predict_weight:g})")
    if isinstance(cfg, TrainGanConfig):
        from esrcli.losses.perceptual import PerceptualLoss

        nets.net_d = build.build_net_d(cfg.net_d, cfg.data.gt_size, t.seed).to(device, memory_format=fmt).train()
        lc = cfg.loss
        if lc.perceptual_weight > 0:
            try:
                nets.perceptual = PerceptualLoss(lc.vgg_weights, lc.perceptual_layers, lc.perceptual_layer_weights).to(device, memory_format=fmt)
            except TrainingError as exc:
                if not lc.perceptual_optional:
                    raise
                say(f"note: no VGG19 perceptual loss ({str(exc).split(' (')[0]}; loss.perceptual_optional)")
        nets.teacher = build.build_teacher(cfg.teacher, cfg.model.scale, device)
        if nets.teacher is not None:
            say(f"teacher: {nets.teacher.source} in {str(nets.teacher.dtype).removeprefix('torch.')}, frozen (weight {cfg.teacher.weight:g})")
    return nets


def _find_resume(out_dir: Path, resume: bool | None) -> Path | None:
    latest = latest_checkpoint(out_dir)
    if resume is False and latest is not None:
        raise TrainingError(
            f"{out_dir}: holds a checkpoint ({latest.name}) and --no-resume was given",
            hint="choose another output folder, or drop --no-resume to continue from it",
        )
    if resume is True and latest is None:
        raise TrainingError(f"{out_dir}: --resume given but there is no checkpoint here")
    if resume is None and latest is None:
        done = [p.name for p in (out_dir / build.EXPORT_NAME, out_dir / "exports") if p.is_file() or (p.is_dir() and any(p.iterdir()))]
        if done:
            raise TrainingError(
                f"{out_dir}: holds an earlier run's {' and '.join(done)} but no checkpoint to continue from",
                hint="choose another output folder, or pass --no-resume to start over in this one (its files are replaced)",
            )
    return latest


def remove_if_empty(out_dir: Path) -> None:
    """Remove a run folder that a failed start left empty (and its empty sub-folders)."""
    for sub in (out_dir / CHECKPOINT_DIR, out_dir / "exports", out_dir):
        try:
            sub.rmdir()
        except OSError:
            pass


def make_run_folder(out_dir: Path) -> None:
    """Create the run folder.

    Raises:
        TrainingError: the path is a file, or the folder cannot be created (message names it).
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrainingError(folder_failure(out_dir, exc, "the run folder"), hint="-o names the run folder") from None


STOP_REASONS = ("done", "time-limit", "interrupted")


def stop_reason(deadline: float | None, iter_seconds: float, requested: Callable[[], bool] | None = None) -> str | None:
    """``"interrupted"`` when ``requested()`` says so, ``"time-limit"`` when the next iteration
    (``iter_seconds`` long) would pass ``deadline`` (:func:`time.monotonic` seconds), else ``None``."""
    if requested is not None and requested():
        return "interrupted"
    if deadline is not None and time.monotonic() + iter_seconds >= deadline:
        return "time-limit"
    return None


def _should_stop(
    deadline: float | None, iter_seconds: float, dist_info: DistInfo, device: torch.device, requested: Callable[[], bool] | None = None
) -> str | None:
    """:func:`stop_reason`; under torchrun rank 0 decides for all."""
    stop = stop_reason(deadline, iter_seconds, requested)
    if dist_info.enabled:  # all ranks stop at the same iteration (every rank takes part, whatever it was given)
        flag = torch.tensor([float(STOP_REASONS.index(stop) if stop else 0)], device=device)
        dist.broadcast(flag, 0)
        code = int(flag.item())
        stop = STOP_REASONS[code] if code else None
    return stop


def train(
    cfg: Config,
    out_dir: Path,
    resume: bool | None = None,
    time_limit: float | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
    on_message: Callable[[str], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train a generator (``TrainNetConfig``: Real-ESRNet; ``TrainGanConfig``: Real-ESRGAN).

    Args:
        cfg: the frozen configuration.
        out_dir: run folder: ``checkpoints/``, ``exports/``, ``net_g_ema.safetensors``,
            ``metrics.jsonl``, ``val/``, ``config.toml``, ``tb/`` (with tensorboard).
        resume: ``None`` resumes when ``out_dir`` holds a checkpoint, ``True`` requires one,
            ``False`` refuses a folder that has one.
        time_limit: wall-clock budget in seconds; the run stops cleanly before it with a
            checkpoint and an export.
        on_step: called after every iteration (rank 0 only) with a :class:`StepInfo`.
        on_message: one-line notices and warnings (rank 0 only).
        stop_requested: polled after every iteration (rank 0's answer counts); ``True``
            stops the run as ``time_limit`` does, with a checkpoint and an export
            (``stopped = "interrupted"``): the CLI sets it on Ctrl-C or SIGTERM.

    Returns:
        A :class:`TrainResult`.

    Raises:
        TrainingError: NaN/inf loss (the last good checkpoint is kept), missing VGG19 weights,
            incompatible pretrained weights or checkpoint, failed checkpoint write.
        DataError: empty or missing data folders.
    """
    t, gan = cfg.train, isinstance(cfg, TrainGanConfig)
    start_time = time.monotonic()
    deadline = start_time + time_limit if time_limit else None
    dist_info = setup_distributed(t.device)
    main = dist_info.is_main
    say = on_message if (on_message and main) else (lambda m: None)
    device = select_device(t.device, dist_info)
    if device.type == "cuda":  # fixed patch sizes: cuDNN picks its fastest algorithms once
        torch.backends.cudnn.benchmark = True
    out_dir = Path(out_dir)
    created = main and not out_dir.exists()
    held = ExitStack()
    try:
        held.enter_context(torch_threads(t.threads))
        prec = build.select_precision(t.precision, device)
        if main:  # one run per folder: a second one would interleave its checkpoints and logs
            make_run_folder(out_dir)
            if not held.enter_context(folder_lock(out_dir)):
                created = False  # the other run's folder, not ours to remove
                raise TrainingError(f"{out_dir}: another esr training run is writing to this folder",
                                    hint="wait for it to finish, or choose another output folder")
            for folder in (out_dir, out_dir / CHECKPOINT_DIR, out_dir / "exports"):
                remove_stale_parts(folder)  # half-written files of a run killed mid-write
        resume_path = _find_resume(out_dir, resume)
        scan = scan_images(cfg.data.folders, cfg.data.crop_size, cfg.data.min_size)
        if scan.skipped:
            say(f"warning: {len(scan.skipped)} training file(s) skipped, e.g. {scan.skipped[0][0]}: {scan.skipped[0][1]}")
        if scan.padded:
            say(f"warning: {scan.padded} training image(s) smaller than data.crop_size {cfg.data.crop_size} are reflect-padded")
        if cfg.degrade.source != "second-order":
            say(f"training pairs: {_pairs_text(cfg)}")
        nets = _build_nets(cfg, device, say, resuming=resume_path is not None)
        if gan and cfg.net_d.d_init_iters >= t.total_iter:
            say(f"warning: net_d.d_init_iters ({cfg.net_d.d_init_iters}) >= train.total_iter ({t.total_iter}): "
                "only the discriminator trains, the exported generator is the pretrained one")
        opts = build.build_optimizers(nets.net_g, nets.net_d, cfg, nets.net_p)
        optim = Optim(opts["opt_g"], opts["sched_g"], torch.amp.GradScaler(device.type, enabled=prec.use_scaler), opts.get("opt_d"), opts.get("sched_d"))
        pairs = PairMaker(cfg, device, mix_seed(t.seed, 0xDE9, dist_info.rank))
        state = read_checkpoint(resume_path) if resume_path else None
        start_iter = int(state["iteration"]) if state else 0
        _, loader = build.build_loader(scan, cfg, start_iter, dist_info.rank, dist_info.world)
        batches = iter(loader)  # before restoring RNG: creating the iterator draws from torch's RNG
        if state is not None:
            load_checkpoint(state, cfg, nets, optim, pairs, restore_rng=dist_info.rank == 0, say=say)
            say(f"resumed from {resume_path} (iteration {start_iter})")
            del state
        if dist_info.enabled:
            nets.net_g = DistributedDataParallel(nets.net_g, device_ids=[device.index] if device.type == "cuda" else None)
            if nets.net_d is not None:
                nets.net_d = DistributedDataParallel(nets.net_d, device_ids=[device.index] if device.type == "cuda" else None)
            if nets.net_p is not None:
                nets.net_p = DistributedDataParallel(nets.net_p, device_ids=[device.index] if device.type == "cuda" else None)
        if t.compile:
            nets.forward_g = torch.compile(nets.net_g)
        val_images, val_skipped = load_validation_set(cfg.val, cfg.model.scale) if main else ([], [])
        if val_skipped:
            say(f"warning: {len(val_skipped)} validation file(s) skipped, e.g. {val_skipped[0][1]}")
        log = MetricsLog(out_dir, start_iter, enabled=main)
        if main:
            (out_dir / "config.toml").write_text(to_toml(cfg) + "\n", encoding="utf-8")
        it, stopped, ckpt, losses, val = start_iter, "done", resume_path, {}, {}
        unscored: set[str] = set()  # configured validation metrics no image could be scored with
        loop_start, iter_seconds = time.monotonic(), 0.0
        while it < t.total_iter:
            tick = time.monotonic()
            micro = [pairs.make(next(batches)) for _ in range(t.accum_steps)]
            try:
                losses = train_step_gan(nets, optim, micro, cfg, prec, it) if gan else train_step_net(nets, optim, micro, cfg, prec)
            except _NonFinite as exc:
                good = latest_checkpoint(out_dir)
                kept = f"last good checkpoint kept: {good}" if good else "no checkpoint written yet"
                raise TrainingError(f"iteration {it + 1}: {exc}; training stopped ({kept})",
                                    hint="lower train.lr, enable train.grad_clip, or use precision = \"fp32\"") from None
            ema_update(nets.net_g_ema, _unwrap(nets.net_g), t.ema_decay)
            lr = optim.opt_g.param_groups[0]["lr"]  # the lr this iteration used
            with warnings.catch_warnings():
                # The schedules count iterations. The generator's optimizer does not step during
                # net_d.d_init_iters (nor when the fp16 scaler skips a step), which torch warns of.
                warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before", category=UserWarning)
                optim.sched_g.step()
                if optim.sched_d is not None:
                    optim.sched_d.step()
            it += 1
            if it == start_iter + 1 and (kernel_error := compiled_prelu_backward_error()) is not None:
                say(f"note: compiled PReLU backward unavailable, eager kernels used ({kernel_error})")
            iter_seconds = 0.9 * iter_seconds + 0.1 * (time.monotonic() - tick) if iter_seconds else time.monotonic() - tick
            if it % t.log_interval == 0 or it == t.total_iter:
                log.write({"iter": it, **losses, "lr": lr, "time": round(time.monotonic() - start_time, 3)})
            step_val = None
            if main and val_images and (it % cfg.val.interval == 0 or it == t.total_iter):
                save_dir = out_dir / "val" / f"iter_{it:08d}" if cfg.val.save_images else None
                val = step_val = validate(nets.net_g_ema, val_images, cfg.val, device, save_dir)
                log.write({"iter": it, **val})
                for name in [m for m in cfg.val.metrics if f"val/{m}" not in val and m not in unscored]:
                    unscored.add(name)  # said once
                    why = " (NIQE needs 96x96 pixels after val.crop_border)" if name == "niqe" else ""
                    say(f"warning: val.metrics {name}: no validation image could be scored{why}")
            stop = _should_stop(deadline, iter_seconds, dist_info, device, stop_requested)
            step_ckpt = None
            if it % t.checkpoint_interval == 0 or it == t.total_iter or stop:
                if main:
                    ckpt = step_ckpt = save_checkpoint(out_dir, it, cfg, nets, optim, pairs)
                    _export(out_dir, f"exports/net_g_ema_iter_{it:08d}.safetensors", nets, cfg, it)
                barrier(dist_info)
            if on_step is not None and main:
                on_step(StepInfo(it, t.total_iter, losses, lr, step_val, step_ckpt))
            if stop:
                stopped = stop if it < t.total_iter else "done"
                break
        export = _export(out_dir, build.EXPORT_NAME, nets, cfg, it) if main else None
        log.close()
        seconds = time.monotonic() - loop_start
        done = it - start_iter
        return TrainResult(it, t.total_iter, stopped, export, ckpt, resume_path, losses, val, seconds,
                           done / seconds if seconds > 0 else 0.0, prec.name)
    except BaseException:
        if created:  # a run that failed before writing anything leaves no empty folder behind
            remove_if_empty(out_dir)
        raise
    finally:
        held.close()
        cleanup_distributed(dist_info)
