"""``esr train-pdm``: learn a degradation model from unpaired HR and LR images.

Source: Luo et al., "Learning the Degradation Distribution for Blind Image
Super-Resolution", CVPR 2022, Sec. 3.3 (official code ``greatlog/UnpairedSR``,
``codes/config/PDM-SR/models/deg_sr_model.py``): the degradation model (kernel and noise
modules, :mod:`esrcli.degrade.pdm`) turns HR patches into fake LR patches; a PatchGAN
discriminator learns to tell them from real LR patches with the LSGAN loss; the model is
also pushed towards zero-mean noise (``100 * mean(n)^2``). Both use Adam and a gradient-norm
clip of 50.

Determinism: the crops and codes of iteration ``i`` are a pure function of
``(train.seed, i)``, so a run resumed from a checkpoint on the CPU reproduces the
uninterrupted run exactly (same thread count).

Reading order: :func:`train_pdm` (the loop) calls :class:`UnpairedPatches` (data),
:func:`pdm_step` (one iteration), :func:`save_pdm_checkpoint` / :func:`load_pdm_checkpoint`.
Library code never prints: progress goes to ``on_step``, notices to ``on_message``.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from esrcli.atomic import folder_lock, remove_stale_parts
from esrcli.config import to_toml
from esrcli.config.pdm import PdmConfig, PdmSrConfig
from esrcli.data.dataset import ScanResult, mix_seed, scan_images
from esrcli.data.imageio import read_image
from esrcli.degrade.pdm import PatchDiscriminator, PdmModel, highpass, kernel_moments, save_pdm
from esrcli.errors import DataError, ImageError, TrainingError
from esrcli.losses.pixel import pixel_loss
from esrcli.train import build
from esrcli.train.checkpoint import CHECKPOINT_DIR, checkpoint_path, latest_checkpoint, read_checkpoint, write_checkpoint
from esrcli.train.cpu import single_thread_on_cpu, torch_threads
from esrcli.train.ema import ema_update, make_ema
from esrcli.train.logger import MetricsLog
from esrcli.train.loop import StepInfo, _find_resume, make_run_folder, remove_if_empty, stop_reason

__all__ = ["PDM_EXPORT", "SR_EXPORT", "UnpairedPatches", "SrNets", "PdmNets", "PdmResult", "pdm_step", "sr_step",
           "kernel_stats", "calibrated_export", "train_pdm"]

PDM_EXPORT = "pdm.safetensors"
SR_EXPORT = build.EXPORT_NAME  # net_g_ema.safetensors, as train-net: a run folder works as model.pretrained


def _scan(folders: tuple[Path, ...], key: str, min_side: int) -> tuple[ScanResult, list[tuple[Path, str]]]:
    """Scan ``folders`` and drop images with a side below ``min_side`` (returned as skipped)."""
    if not folders:
        raise DataError(f"data.{key}: no folder given")
    try:
        scan = scan_images(folders)
    except DataError as exc:
        raise DataError(f"data.{key}: {exc}") from None
    keep = [(f, s) for f, s in zip(scan.files, scan.sizes) if min(s) >= min_side]
    small = [(f, f"{s[1]}x{s[0]} is smaller than the crop ({min_side})") for f, s in zip(scan.files, scan.sizes) if min(s) < min_side]
    if not keep:
        f, why = small[0]
        raise DataError(f"data.{key}: {f}: image {why}; every {key.upper()} image is smaller than the {key.upper()} crop",
                        hint="use larger images or lower data.lr_crop")
    files, sizes = zip(*keep)
    return ScanResult(tuple(files), tuple(sizes), scan.skipped, 0), list(scan.skipped) + small


class _ImageStore:
    """Decoded uint8 ``(3, H, W)`` images, cached in memory up to ``budget`` bytes."""

    def __init__(self, files: tuple[Path, ...], budget: int) -> None:
        self.files = files
        self.budget = budget
        self.used = 0
        self.cache: dict[int, Tensor] = {}
        self.failed: list[Path] = []

    def get(self, index: int) -> Tensor:
        for k in range(len(self.files)):
            i = (index + k) % len(self.files)
            if i in self.cache:
                return self.cache[i]
            try:
                color = read_image(self.files[i]).color
            except ImageError:
                if self.files[i] not in self.failed:
                    self.failed.append(self.files[i])
                continue
            t = torch.from_numpy(color).permute(2, 0, 1)
            t = (t.expand(3, -1, -1) if t.shape[0] == 1 else t).mul(255).round().to(torch.uint8).contiguous()
            if self.used + t.numel() <= self.budget:
                self.cache[i] = t
                self.used += t.numel()
            return t
        raise DataError(f"{self.files[0].parent}: no training image could be decoded")


class UnpairedPatches:
    """Random HR and LR patches for one iteration, a pure function of ``(seed, iteration)``.

    Args:
        cfg: the full configuration (``data`` and ``model.scale``).

    Attributes:
        hr_scan, lr_scan: the usable images.
        skipped: ``(file, reason)`` for unreadable or too small files of both sides.
    """

    def __init__(self, cfg: PdmConfig) -> None:
        d = cfg.data
        self.lr_crop = d.lr_crop
        self.hr_crop = d.lr_crop * cfg.model.scale
        self.augment = d.augment
        self.seed = cfg.train.seed
        self.hr_scan, hr_skipped = _scan(d.hr, "hr", self.hr_crop)
        self.lr_scan, lr_skipped = _scan(d.lr, "lr", self.lr_crop)
        self.skipped = hr_skipped + lr_skipped
        budget = d.cache_mb * 2**20
        self.hr = _ImageStore(self.hr_scan.files, budget // 2)
        self.lr = _ImageStore(self.lr_scan.files, budget // 2)

    def _crop(self, store: _ImageStore, size: int, g: torch.Generator) -> Tensor:
        img = store.get(int(torch.randint(0, len(store.files), (1,), generator=g)))
        if min(img.shape[-2:]) < size:  # a file that changed since the scan
            img = F.pad(img[None].float(), (0, max(0, size - img.shape[2]), 0, max(0, size - img.shape[1])), mode="replicate")[0]
        top = int(torch.randint(0, img.shape[1] - size + 1, (1,), generator=g))
        left = int(torch.randint(0, img.shape[2] - size + 1, (1,), generator=g))
        patch = img[:, top : top + size, left : left + size].float() / 255.0
        r = torch.rand(3, generator=g)
        if self.augment == "rot180" and r[0] < 0.5:
            patch = patch.flip(1, 2)
        elif self.augment == "full":
            if r[0] < 0.5:
                patch = patch.flip(2)
            if r[1] < 0.5:
                patch = patch.flip(1)
            if r[2] < 0.5:
                patch = patch.transpose(1, 2)
        return patch.contiguous()

    def batch(self, iteration: int, size: int) -> tuple[Tensor, Tensor]:
        """``(hr, lr)``: ``(B, 3, lr_crop*s, lr_crop*s)`` and ``(B, 3, lr_crop, lr_crop)`` in [0, 1]."""
        g = torch.Generator().manual_seed(mix_seed(self.seed, iteration, 0x9D))
        hr = torch.stack([self._crop(self.hr, self.hr_crop, g) for _ in range(size)])
        lr = torch.stack([self._crop(self.lr, self.lr_crop, g) for _ in range(size)])
        return hr, lr


@dataclass
class SrNets:
    """The ``[sr]`` generator of joint PDM-SR training, its EMA, optimiser and schedule."""

    net_g: torch.nn.Module
    net_g_ema: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: Any
    perceptual: torch.nn.Module | None = None


@dataclass
class PdmNets:
    """The degradation model, the discriminator and their optimisers.

    ``noise_energy`` is the running mean (decay ``train.ema_decay``) of the live model's
    per-channel high-pass noise energy, ``mean(highpass(n)^2)``, over the iterations that
    trained the model (``None`` before the first); :func:`calibrated_export` matches the
    exported EMA model's noise to it.
    """

    model: PdmModel
    ema: PdmModel
    disc: PatchDiscriminator
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    sched_g: Any
    sched_d: Any
    noise_energy: Tensor | None = None
    sr: SrNets | None = None


def build_pdm_nets(cfg: PdmConfig, device: torch.device, notify: Callable[[str], None] | None = None) -> PdmNets:
    """Networks (seeded by ``train.seed``), Adam optimisers and MultiStepLR schedules;
    ``notify`` gets :func:`esrcli.train.build.load_pretrained`'s notes on ``[sr]``'s start."""
    torch.manual_seed(mix_seed(cfg.train.seed, 0x1417))
    model = PdmModel(cfg.model).to(device)
    disc = PatchDiscriminator(cfg.model.disc_feat, cfg.model.disc_layers, cfg.model.disc_highpass).to(device)
    t = cfg.train
    base = [model.kernel_net.base]
    rest = [p for p in model.parameters() if p is not model.kernel_net.base]
    opt_g = torch.optim.Adam([{"params": rest, "lr": t.lr}, {"params": base, "lr": t.kernel_lr}], betas=t.betas)
    opt_d = torch.optim.Adam(disc.parameters(), lr=t.lr_d, betas=t.betas)
    sched_g = torch.optim.lr_scheduler.MultiStepLR(opt_g, list(t.milestones), t.gamma)
    sched_d = torch.optim.lr_scheduler.MultiStepLR(opt_d, list(t.milestones), t.gamma)
    sr = build_sr_nets(cfg.sr, cfg, device, notify) if cfg.sr is not None else None
    return PdmNets(model, make_ema(model), disc, opt_g, opt_d, sched_g, sched_d, sr=sr)


def build_sr_nets(sr: PdmSrConfig, cfg: PdmConfig, device: torch.device, notify: Callable[[str], None] | None = None) -> SrNets:
    """The ``[sr]`` generator (seeded by ``train.seed``; ``sr.model.pretrained`` loaded),
    its EMA, Adam and the MultiStepLR of ``train.milestones``.

    Raises:
        TrainingError: an unusable ``sr.model.pretrained`` or missing VGG19 weights for
            ``sr.perceptual_weight``.
    """
    net_g = build.build_net_g(sr.model, cfg.train.seed)
    try:
        build.load_pretrained(net_g, sr.model, notify)
    except TrainingError as exc:
        msg = str(exc)
        raise TrainingError("sr." + msg if msg.startswith("model.") else msg, exc.hint) from None
    net_g = net_g.to(device).train()
    opt = torch.optim.Adam(net_g.parameters(), lr=sr.lr, betas=sr.betas)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(cfg.train.milestones), cfg.train.gamma)
    perceptual = None
    if sr.perceptual_weight > 0:
        from esrcli.losses.perceptual import PerceptualLoss

        perceptual = PerceptualLoss(sr.vgg_weights, sr.perceptual_layers, sr.perceptual_layer_weights, config_key="sr.vgg_weights").to(device)
    return SrNets(net_g, make_ema(net_g), opt, sched, perceptual)


def sr_step(nets: SrNets, hr: Tensor, fake_lr: Tensor, sr: PdmSrConfig, grad_clip: float) -> dict[str, float]:
    """One update of the ``[sr]`` generator on ``(PDM(hr), hr)`` pairs, then its EMA.

    The fake LR images are detached, clipped to [0, 1] and rounded to 8-bit levels (as the
    official ``DegSRModel``): the SR network sees what real LR files hold, and no gradient
    reaches the degradation model.

    Args:
        nets: the generator, its EMA and optimiser.
        hr: ``(B, 3, H, W)`` HR patches in [0, 1] (targets).
        fake_lr: ``(B, 3, H/s, W/s)`` the degradation model's output for ``hr``.
        sr: the ``[sr]`` configuration.
        grad_clip: gradient-norm clip (``train.grad_clip``; 0: none).

    Returns:
        ``{"loss_sr_pix": ..., "loss_sr_percep": ...}`` (the second with a perceptual loss).

    Raises:
        _NonFinite: the loss is NaN or infinite.
    """
    lq = fake_lr.detach().clamp(0, 1).mul(255).round().div(255)
    out = nets.net_g(lq)
    loss_pix = pixel_loss(out, hr, sr.pixel_criterion) * sr.pixel_weight
    loss = loss_pix
    result = {"loss_sr_pix": _finite("loss_sr_pix", loss_pix)}
    if nets.perceptual is not None:
        loss_percep = nets.perceptual(out, hr) * sr.perceptual_weight
        loss = loss + loss_percep
        result["loss_sr_percep"] = _finite("loss_sr_percep", loss_percep)
    nets.opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(nets.net_g.parameters(), grad_clip)
    with single_thread_on_cpu(list(nets.net_g.parameters())):
        nets.opt.step()
    ema_update(nets.net_g_ema, nets.net_g, sr.ema_decay)
    return result


def kernel_stats(kernels: Tensor) -> dict[str, float]:
    """Principal widths (pixels), orientation (degrees) and centroid offset of the mean kernel.

    Args:
        kernels: ``(N, k, k)`` kernels (or ``(N, k*k, ...)`` from the kernel module: the
            spatial positions are averaged too).

    Returns:
        ``sigma_major``, ``sigma_minor`` (square roots of the eigenvalues of the second
        central moments), ``theta`` (angle of the major axis from the x axis towards +y,
        rows down, in [0, 180)), ``shift`` (centroid distance from the centre, pixels).
    """
    if kernels.dim() == 4:
        n, kk = kernels.shape[:2]
        k = math.isqrt(kk)
        kernels = kernels.permute(0, 2, 3, 1).reshape(-1, k, k)
    mean = kernels.double().mean(dim=0, keepdim=True)
    mu, cov = kernel_moments(mean)
    ev, evec = torch.linalg.eigh(cov[0])
    major = evec[:, 1]
    theta = math.degrees(math.atan2(float(major[1]), float(major[0]))) % 180.0
    return {"sigma_major": float(ev[1].clamp_min(0).sqrt()), "sigma_minor": float(ev[0].clamp_min(0).sqrt()),
            "theta": theta, "shift": float(mu[0].norm())}


def _centroid_penalty(kernels: Tensor) -> Tensor:
    """Mean squared centroid distance (pixels^2) of ``(B, k*k, h, w)`` kernels."""
    b, kk = kernels.shape[:2]
    k = math.isqrt(kk)
    ax = torch.arange(k, device=kernels.device, dtype=kernels.dtype) - k // 2
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    mx = (kernels * xx.reshape(1, -1, 1, 1)).sum(1)
    my = (kernels * yy.reshape(1, -1, 1, 1)).sum(1)
    return (mx * mx + my * my).mean()


class _NonFinite(Exception):
    pass


def _finite(name: str, v: Tensor) -> float:
    x = float(v.detach())
    if not math.isfinite(x):
        raise _NonFinite(f"{name} is {x}")
    return x


def pdm_step(nets: PdmNets, hr: Tensor, lr: Tensor, zk: Tensor, zn: Tensor | None, cfg: PdmConfig, train_g: bool = True,
             train_sr: bool = False) -> dict[str, float]:
    """One iteration: the degradation model against the discriminator, then the discriminator,
    then (``train_sr``) the ``[sr]`` generator on the degraded patches (:func:`sr_step`).

    Args:
        nets: networks and optimisers.
        hr: ``(B, 3, H, W)`` HR patches in [0, 1].
        lr: ``(B, 3, H/s, W/s)`` real LR patches in [0, 1].
        zk, zn: the codes of this iteration (:meth:`PdmModel.draw_codes`).
        cfg: the configuration.
        train_g: update the degradation model (false during ``train.d_warmup``).
        train_sr: update the ``[sr]`` generator (needs ``nets.sr`` and ``cfg.sr``).

    Returns:
        Losses and statistics of this iteration (floats).

    Raises:
        _NonFinite: a loss is NaN or infinite.
    """
    t = cfg.train
    model, disc = nets.model, nets.disc
    fake, kernels, noise = model(hr, zk, zn)
    # degradation model: LSGAN towards "real", zero-mean noise, centred kernel
    for p in disc.parameters():
        p.requires_grad_(False)
    d_out = disc(fake)
    loss_adv = F.mse_loss(d_out, torch.ones_like(d_out))
    loss_g = loss_adv
    loss_mean = torch.zeros((), device=hr.device)
    if noise is not None and t.noise_mean_weight:
        # per image and channel: a noise with a colour bias would be a colour cast, not noise
        loss_mean = noise.mean(dim=(2, 3)).pow(2).mean() * t.noise_mean_weight
        loss_g = loss_g + loss_mean
    loss_center = torch.zeros((), device=hr.device)
    if t.center_weight and cfg.model.kernel == "free":
        loss_center = _centroid_penalty(kernels) * t.center_weight
        loss_g = loss_g + loss_center
    _finite("loss_g", loss_g)
    if train_g:
        nets.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        if t.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        with single_thread_on_cpu(list(model.parameters())):
            nets.opt_g.step()
    for p in disc.parameters():
        p.requires_grad_(True)
    # discriminator: real LR -> 1, fake -> 0
    d_real = disc(lr)
    d_fake = disc(fake.detach())
    loss_d = 0.5 * (F.mse_loss(d_real, torch.ones_like(d_real)) + F.mse_loss(d_fake, torch.zeros_like(d_fake)))
    _finite("loss_d", loss_d)
    nets.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    if t.grad_clip:
        torch.nn.utils.clip_grad_norm_(disc.parameters(), t.grad_clip)
    with single_thread_on_cpu(list(disc.parameters())):
        nets.opt_d.step()
    out = {k: float(v.detach()) for k, v in (("loss_adv", loss_adv), ("loss_mean", loss_mean), ("loss_center", loss_center), ("loss_d", loss_d))}
    if noise is not None:
        out["noise_std"] = float(noise.detach().std())
        if train_g:
            energy = highpass(noise.detach()).pow(2).mean(dim=(0, 2, 3))
            prev = nets.noise_energy
            nets.noise_energy = energy if prev is None else torch.lerp(prev, energy, 1.0 - t.ema_decay)
    with torch.no_grad():
        ks = kernel_stats(kernels.detach())
    out.update({f"k_{k}": v for k, v in ks.items()})
    if train_sr and nets.sr is not None and cfg.sr is not None:
        out.update(sr_step(nets.sr, hr, fake, cfg.sr, t.grad_clip))
    return out


_GAIN_RANGE = (0.25, 4.0)


@torch.no_grad()
def calibrated_export(nets: PdmNets, hr: Tensor, seed: int) -> tuple[PdmModel, Tensor | None]:
    """The EMA model with its noise gain matched to the live model's noise energy.

    Averaging the weights of a generator that oscillates around the adversarial
    equilibrium shrinks its output: on the synthetic domains of
    ``benchmarks/pdm_recovery.py`` the EMA model's noise had 10-20% less high-frequency
    energy than the live model's, whose energy matched the true noise's within 1-5% (the
    discriminator sees high frequencies; see docs/pdm.md). The copy returned has
    ``noise_net.gain = sqrt(noise_energy / E)`` per channel, E the EMA model's own
    ``mean(highpass(n)^2)`` on ``hr`` with codes drawn from ``seed``; clamped to
    [0.25, 4]; 1 before the model has trained.

    Args:
        nets: the networks (``ema`` and ``noise_energy`` are read, not changed).
        hr: ``(B, 3, H, W)`` HR patches in [0, 1] (the current batch).
        seed: seed of the codes.

    Returns:
        ``(model, gain)``: a new :class:`PdmModel` and the gain (``None`` without a noise
        module).
    """
    model = copy.deepcopy(nets.ema)
    if model.noise_net is None or nets.noise_energy is None:
        return model, None
    g = torch.Generator().manual_seed(seed)
    zk, zn = model.draw_codes(hr.shape[0], (hr.shape[-2] // model.scale, hr.shape[-1] // model.scale), g)
    _, _, noise = model(hr, zk, zn)
    energy = highpass(noise).pow(2).mean(dim=(0, 2, 3))
    gain = (nets.noise_energy.to(energy) / energy.clamp_min(1e-12)).sqrt().clamp(*_GAIN_RANGE)
    model.noise_net.gain.copy_(gain)
    return model, gain


def save_pdm_checkpoint(out_dir: Path, iteration: int, cfg: PdmConfig, nets: PdmNets) -> Path:
    """Write ``checkpoints/iter_N.pt`` (networks, optimisers, schedules; no RNG state needed)."""
    state = {
        "iteration": iteration,
        "kind": "pdm",
        "config": to_toml(cfg),
        "net_g": nets.model.state_dict(),
        "net_g_ema": nets.ema.state_dict(),
        "net_d": nets.disc.state_dict(),
        "opt_g": nets.opt_g.state_dict(),
        "opt_d": nets.opt_d.state_dict(),
        "sched_g": nets.sched_g.state_dict(),
        "sched_d": nets.sched_d.state_dict(),
        "noise_energy": nets.noise_energy,
    }
    if nets.sr is not None:
        state["sr"] = {"net_g": nets.sr.net_g.state_dict(), "net_g_ema": nets.sr.net_g_ema.state_dict(),
                       "opt": nets.sr.opt.state_dict(), "sched": nets.sr.sched.state_dict()}
    return write_checkpoint(checkpoint_path(out_dir, iteration), state, cfg.train.keep_checkpoints)


def load_pdm_checkpoint(path: Path, nets: PdmNets) -> int:
    """Restore a checkpoint of :func:`save_pdm_checkpoint`; returns its iteration.

    The ``[sr]`` generator is restored when both the checkpoint and ``nets`` have one; a
    checkpoint without it leaves ``nets.sr`` as built (an ``[sr]`` table added to a PDM run
    starts its generator at the resumed iteration).

    Raises:
        TrainingError: not a train-pdm checkpoint, or one of another model (or ``[sr.model]``)
            configuration.
    """
    state = read_checkpoint(path)
    if state.get("kind") != "pdm":
        raise TrainingError(f"{path}: not a train-pdm checkpoint (written by train-net/train-gan?)")
    for key in ("net_g", "net_g_ema"):  # checkpoints from before the noise gain buffer
        if nets.model.noise_net is not None:
            state[key].setdefault("noise_net.gain", torch.ones_like(nets.model.noise_net.gain))
    try:
        nets.model.load_state_dict(state["net_g"])
        nets.ema.load_state_dict(state["net_g_ema"])
        nets.disc.load_state_dict(state["net_d"])
    except RuntimeError as exc:
        raise TrainingError(f"{path}: checkpoint does not match the [model] table ({str(exc).splitlines()[0][:120]})") from None
    nets.opt_g.load_state_dict(state["opt_g"])
    nets.opt_d.load_state_dict(state["opt_d"])
    nets.sched_g.load_state_dict(state["sched_g"])
    nets.sched_d.load_state_dict(state["sched_d"])
    energy = state.get("noise_energy")
    nets.noise_energy = None if energy is None else energy.to(next(nets.model.parameters()).device)
    if nets.sr is not None and "sr" in state:
        sr = state["sr"]
        try:
            nets.sr.net_g.load_state_dict(sr["net_g"])
            nets.sr.net_g_ema.load_state_dict(sr["net_g_ema"])
        except RuntimeError as exc:
            raise TrainingError(f"{path}: checkpoint does not match the [sr.model] table ({str(exc).splitlines()[0][:120]})") from None
        nets.sr.opt.load_state_dict(sr["opt"])
        nets.sr.sched.load_state_dict(sr["sched"])
    return int(state["iteration"])


def _export_sr(out_dir: Path, nets: SrNets, cfg: PdmConfig, iteration: int) -> Path:
    from esrcli.weights import save_model

    assert cfg.sr is not None
    s = cfg.sr
    percep = f", perceptual {s.perceptual_weight:g}" if nets.perceptual is not None else ""
    extra = {"provenance": "esr train-pdm (joint PDM-SR)", "iterations": str(iteration),
             "losses": f"pixel {s.pixel_weight:g} ({s.pixel_criterion}){percep}", "pairs": f"learned PDM ({PDM_EXPORT} of the same run)"}
    path = out_dir / SR_EXPORT
    save_model(path, nets.net_g_ema, build.generator_info(s.model), extra_metadata=extra)
    return path


@dataclass(frozen=True)
class PdmResult:
    """The outcome of :func:`train_pdm`.

    Attributes:
        iteration: the last completed iteration.
        total: ``train.total_iter``.
        stopped: ``"done"``, ``"time-limit"`` or ``"interrupted"`` (``stop_requested``).
        export: ``RUN/pdm.safetensors``.
        checkpoint: the last checkpoint written.
        resumed_from: the checkpoint the run started from.
        losses: losses and statistics of the last iteration.
        skipped: ``(file, reason)`` of the training files not used.
        seconds: wall-clock time of the loop.
        iters_per_s: mean speed.
        sr_export: ``RUN/net_g_ema.safetensors`` with an ``[sr]`` table, else ``None``.
    """

    iteration: int
    total: int
    stopped: str
    export: Path
    checkpoint: Path | None
    resumed_from: Path | None
    losses: dict[str, float]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0
    iters_per_s: float = 0.0
    sr_export: Path | None = None


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"train.device: {name!r} requested but CUDA is not available")
    return torch.device(name)


def train_pdm(
    cfg: PdmConfig,
    out_dir: Path,
    resume: bool | None = None,
    time_limit: float | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
    on_message: Callable[[str], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
) -> PdmResult:
    """Train a PDM degradation model.

    Args:
        cfg: the frozen configuration.
        out_dir: run folder: ``checkpoints/``, ``pdm.safetensors``, ``metrics.jsonl``,
            ``config.toml``, and ``net_g_ema.safetensors`` with an ``[sr]`` table.
        resume: ``None`` resumes when ``out_dir`` holds a checkpoint, ``True`` requires one,
            ``False`` refuses a folder that has one.
        time_limit: wall-clock budget in seconds; the run stops before it with a checkpoint
            and an export.
        on_step: called after every iteration with a :class:`~esrcli.train.loop.StepInfo`.
        on_message: one-line notices.
        stop_requested: polled after every iteration; ``True`` stops the run as
            ``time_limit`` does (``stopped = "interrupted"``; the CLI sets it on Ctrl-C).

    Returns:
        A :class:`PdmResult`.

    Raises:
        DataError: empty/missing/unreadable ``data.hr`` or ``data.lr``, LR images smaller
            than ``data.lr_crop``.
        TrainingError: NaN/inf loss (the last good checkpoint is kept), an incompatible
            checkpoint, a failed checkpoint write, an unusable ``sr.model.pretrained``,
            ``out_dir`` a file, or another run writing to it.
    """
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    make_run_folder(out_dir)
    with folder_lock(out_dir) as mine:  # one run per folder
        if not mine:
            raise TrainingError(f"{out_dir}: another esr training run is writing to this folder",
                                hint="wait for it to finish, or choose another output folder")
        for folder in (out_dir, out_dir / CHECKPOINT_DIR):
            remove_stale_parts(folder)
        try:
            with torch_threads(cfg.train.threads):
                return _train_pdm(cfg, out_dir, resume, time_limit, on_step, on_message, stop_requested)
        except BaseException:
            if created:  # a run that failed before writing anything leaves no empty folder behind
                remove_if_empty(out_dir)
            raise


def _train_pdm(
    cfg: PdmConfig,
    out_dir: Path,
    resume: bool | None,
    time_limit: float | None,
    on_step: Callable[[StepInfo], None] | None,
    on_message: Callable[[str], None] | None,
    stop_requested: Callable[[], bool] | None = None,
) -> PdmResult:
    t = cfg.train
    say = on_message or (lambda m: None)
    start_time = time.monotonic()
    deadline = start_time + time_limit if time_limit else None
    device = _device(t.device)
    out_dir = Path(out_dir)
    resume_path = _find_resume(out_dir, resume)
    data = UnpairedPatches(cfg)
    if data.skipped:
        say(f"warning: {len(data.skipped)} training file(s) skipped, e.g. {data.skipped[0][0]}: {data.skipped[0][1]}")
    say(f"data: {len(data.hr_scan.files)} HR and {len(data.lr_scan.files)} LR images")
    nets = build_pdm_nets(cfg, device, say)
    if cfg.sr is not None:
        m = cfg.sr.model
        n_params = sum(p.numel() for p in nets.sr.net_g.parameters())
        start = f", from iteration {cfg.sr.start_iter}" if cfg.sr.start_iter else ""
        say(f"[sr]: joint training of {m.arch} x{m.scale} ({n_params / 1e6:.2f} M parameters{start})"
            + (f", initialised from {m.pretrained}" if m.pretrained is not None else ""))
    start_iter = 0
    if resume_path is not None:
        start_iter = load_pdm_checkpoint(resume_path, nets)
        say(f"resumed from {resume_path} (iteration {start_iter})")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.toml").write_text(to_toml(cfg) + "\n", encoding="utf-8")
    log = MetricsLog(out_dir, start_iter, tensorboard=False)
    it, stopped, ckpt, losses = start_iter, "done", resume_path, {}
    loop_start, iter_seconds = time.monotonic(), 0.0
    nets.model.train()
    try:
        while it < t.total_iter:
            tick = time.monotonic()
            hr, lr = data.batch(it, t.batch_size)
            hr, lr = hr.to(device), lr.to(device)
            g = torch.Generator().manual_seed(mix_seed(t.seed, it, 0xC0DE))
            zk, zn = nets.model.draw_codes(hr.shape[0], lr.shape[-2:], g)
            lr_now = nets.opt_g.param_groups[0]["lr"]
            try:
                losses = pdm_step(nets, hr, lr, zk, zn, cfg, train_g=it >= t.d_warmup,
                                  train_sr=cfg.sr is not None and it >= cfg.sr.start_iter)
            except _NonFinite as exc:
                good = latest_checkpoint(out_dir)
                kept = f"last good checkpoint kept: {good}" if good else "no checkpoint written yet"
                raise TrainingError(f"iteration {it + 1}: {exc}; training stopped ({kept})", hint="lower train.lr or train.lr_d") from None
            if it >= t.d_warmup:
                ema_update(nets.ema, nets.model, t.ema_decay)
            with warnings.catch_warnings():  # during train.d_warmup the model's optimiser has not stepped yet
                warnings.simplefilter("ignore", UserWarning)
                nets.sched_g.step()
            nets.sched_d.step()
            if nets.sr is not None:
                with warnings.catch_warnings():  # before sr.start_iter its optimiser has not stepped
                    warnings.simplefilter("ignore", UserWarning)
                    nets.sr.sched.step()
            it += 1
            dt = time.monotonic() - tick
            iter_seconds = 0.9 * iter_seconds + 0.1 * dt if iter_seconds else dt
            if it % t.log_interval == 0 or it == t.total_iter:
                ema_k = kernel_stats(nets.ema.sample_kernels(64, generator=torch.Generator().manual_seed(0)))
                losses.update({f"ema_k_{k}": v for k, v in ema_k.items()})
                _, gain = calibrated_export(nets, hr, mix_seed(t.seed, it, 0xE7))
                if gain is not None:
                    losses["ema_noise_gain"] = float(gain.mean())
                log.write({"iter": it, **losses, "lr": lr_now, "time": round(time.monotonic() - start_time, 3)})
            stop = stop_reason(deadline, iter_seconds, stop_requested)
            step_ckpt = None
            if it % t.checkpoint_interval == 0 or it == t.total_iter or stop:
                ckpt = step_ckpt = save_pdm_checkpoint(out_dir, it, cfg, nets)
                save_pdm(out_dir / PDM_EXPORT, calibrated_export(nets, hr, mix_seed(t.seed, it, 0xE7))[0], {"iterations": str(it)})
                if nets.sr is not None:
                    _export_sr(out_dir, nets.sr, cfg, it)
            if on_step is not None:
                on_step(StepInfo(it, t.total_iter, losses, lr_now, None, step_ckpt))
            if stop:
                stopped = stop if it < t.total_iter else "done"
                break
    finally:
        log.close()
    if ckpt is None or not (out_dir / PDM_EXPORT).exists():
        hr, _ = data.batch(it, t.batch_size)
        save_pdm(out_dir / PDM_EXPORT, calibrated_export(nets, hr.to(device), mix_seed(t.seed, it, 0xE7))[0], {"iterations": str(it)})
    sr_export = None
    if nets.sr is not None:
        sr_export = out_dir / SR_EXPORT
        if ckpt is None or not sr_export.exists():
            _export_sr(out_dir, nets.sr, cfg, it)
    failed = data.hr.failed + data.lr.failed
    skipped = data.skipped + [(f, "could not be decoded") for f in failed]
    seconds = time.monotonic() - loop_start
    return PdmResult(it, t.total_iter, stopped, out_dir / PDM_EXPORT, ckpt, resume_path, losses, skipped,
                     seconds, (it - start_iter) / seconds if seconds > 0 else 0.0, sr_export)
