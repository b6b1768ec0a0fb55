"""Which train-gan loss term pushes a fixed sub-pixel (pixel-shuffle) pattern into the generator?

Loads a train-gan run's latest checkpoint (live ``net_g`` and ``net_d``), makes one batch of
training pairs from the run's own ``data.folders`` (its crops and augmentation, its
degradation), and takes the gradient of each
generator term with respect to the SR output. For a gradient ``g (B, C, H, W)`` it reports the
variance over the ``scale**2`` phases ``(y mod s, x mod s)`` of the per-phase means, relative to
what white noise of the same energy gives (1.0):

* per sample: how strongly each sample's gradient has a phase pattern;
* summed over the batch: how much of it adds up in the generator's weights (patterns at random
  phases cancel).

Then the same for the discriminator terms (GAN + feature matching) with each sample's
discriminator input cropped by 8 px at random offsets in ``[0, s)`` (the experiment in
docs/training.md: it decorrelates the batch's patterns, yet a run trained that way grew a
stronger grid), and the cosine between each group's descent direction's phase pattern and the
output's own grid (high-pass as ``compare_models.checkerboard``: minus a Gaussian blur, sigma 2
px). Figures in docs/training.md ("The recipe on 2 CPU cores").

The VGG19 perceptual term is not among the terms reported (nor the texture term), so the VGG19
network is not built: the script runs without its ImageNet weights whatever the run's
``loss.perceptual_weight``.

Usage::

    PYTHONPATH=src python benchmarks/gan_phase_gradients.py RUN_DIR [--batch 32] [--seed 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch
from torch import Tensor

from esrcli.config.loader import load_toml
from esrcli.config.train import TrainGanConfig
from esrcli.data.dataset import HRCropDataset, scan_images
from esrcli.errors import EsrError
from esrcli.losses import feature_matching_loss, generator_gan_loss, phase_loss, pixel_loss
from esrcli.losses.pixel import phase_means as pixel_phase_means
from esrcli.ops.filters import gaussian_blur
from esrcli.train import loop
from esrcli.train.checkpoint import latest_checkpoint, read_checkpoint
from esrcli.train.pairs import PairMaker

STEP = 4  # phase period: the generator's scale


def shifted(x: Tensor, offsets: Tensor, crop: int) -> Tensor:
    """Each sample of ``x (B, C, H, W)`` cropped to ``(H - crop, W - crop)`` at its ``offsets[i] = (dy, dx)``."""
    h, w = x.shape[-2] - crop, x.shape[-1] - crop
    return torch.stack([x[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets.tolist())])


def phase_means(x: Tensor) -> Tensor:
    """``(B, C, STEP*STEP)``: the mean of each sub-pixel phase (:func:`esrcli.losses.pixel.phase_means`)."""
    return pixel_phase_means(x, STEP).flatten(-2)


def coherence(g: Tensor, summed: bool) -> float:
    g = g.float()
    b, _, h, w = g.shape
    m = phase_means(g)
    if summed:
        return float(m.mean(0).var(-1).mean() / (g.var() / (b * h * w / STEP**2)))
    return float(m.var(-1).mean() / (g.var() / (h * w / STEP**2)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not args.run.is_dir():
        sys.exit(f"gan_phase_gradients: {args.run}: no such run folder (pass a train-gan run folder)")
    ck = latest_checkpoint(args.run)
    if ck is None:
        sys.exit(f"gan_phase_gradients: {args.run}: no checkpoint (pass a train-gan run folder with checkpoints/)")
    try:
        cfg = load_toml(TrainGanConfig, args.run / "config.toml")
        state = read_checkpoint(ck)
    except EsrError as exc:
        sys.exit(f"gan_phase_gradients: {exc}")
    if state.get("net_d") is None:
        sys.exit(f"gan_phase_gradients: {ck}: no discriminator in this checkpoint (pass a train-gan run, not a train-net one)")
    torch.manual_seed(args.seed)
    # No perceptual term below: perceptual_weight 0 keeps _build_nets from building VGG19 (and
    # from needing its ImageNet weights); nothing else depends on it.
    nets_cfg = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, perceptual_weight=0.0))
    nets = loop._build_nets(nets_cfg, torch.device("cpu"), lambda s: None, resuming=True)
    nets.net_g.load_state_dict(state["net_g"])
    nets.net_d.load_state_dict(state["net_d"])
    d = cfg.data
    hr = HRCropDataset(scan_images(d.folders, d.crop_size, d.min_size), d.crop_size, d.use_hflip, d.use_rot, seed=args.seed)
    picks = torch.randperm(len(hr), generator=torch.Generator().manual_seed(args.seed))[: args.batch].tolist()
    pairs = PairMaker(cfg, torch.device("cpu"), args.seed)
    pairs.pool = None
    b = pairs.make(torch.stack([hr[(position, index)] for position, index in enumerate(picks)]))
    lc = cfg.loss
    with torch.no_grad():
        sr = nets.net_g(b["lq"]).float()
        teacher = nets.teacher(b["lq"]).float() if nets.teacher is not None else None
    sr.requires_grad_(True)

    def d_terms(d_sr: Tensor, d_gt: Tensor) -> tuple[Tensor, Tensor]:
        """(GAN, feature matching) generator terms with these discriminator inputs."""
        fake, fake_feats = nets.net_d(d_sr, return_features=True)
        with torch.no_grad():
            _, real_feats = nets.net_d(d_gt, return_features=True)
        return lc.gan_weight * generator_gan_loss(fake, None, lc.gan_type), lc.feature_matching_weight * feature_matching_loss(fake_feats, real_feats)

    terms = {"pixel (GT)": lc.pixel_weight * pixel_loss(sr, b["gt_usm"], lc.pixel_criterion)}
    if teacher is not None:
        terms["teacher"] = cfg.teacher.weight * pixel_loss(sr, teacher, "l1")
    terms["GAN"], terms["feature matching"] = d_terms(sr, b["gt"])
    if lc.phase_weight > 0:
        terms["sub-pixel phase"] = lc.phase_weight * phase_loss(sr, b["gt_usm"], STEP)
    print(f"{ck} (iteration {state['iteration']}), batch {args.batch}")
    print("| term | loss | per-sample coherence | batch-summed coherence |\n|---|---|---|---|")
    grads = {}
    for name, value in terms.items():
        (grads[name],) = torch.autograd.grad(value, sr, retain_graph=True)
        print(f"| {name} | {float(value.detach()):.4f} | {coherence(grads[name], False):.1f} | {coherence(grads[name], True):.1f} |")
    d_grad = grads["feature matching"] + grads["GAN"]
    print(f"| GAN + feature matching | | {coherence(d_grad, False):.1f} | {coherence(d_grad, True):.1f} |")
    gen = torch.Generator().manual_seed(args.seed)
    for shift in (3, 8):
        offsets = torch.randint(0, shift, (args.batch, 2), generator=gen)
        (g,) = torch.autograd.grad(sum(d_terms(shifted(sr, offsets, 8), shifted(b["gt"], offsets, 8))), sr)
        print(f"| GAN + feature matching, D input cropped at offsets in [0, {shift}) | | {coherence(g, False):.1f} | {coherence(g, True):.1f} |")
    with torch.no_grad():
        hp = sr - gaussian_blur(sr, 17, 2.0)
        grid = phase_means(hp).mean(0)
        grid = grid - grid.mean(-1, keepdim=True)
    print(f"\noutput's grid (std of the high-pass phase means): {float(phase_means(hp).std(-1).mean()) * 255:.2f} levels")
    groups = {"GAN + feature matching": d_grad, "pixel + teacher": sum(grads[k] for k in ("pixel (GT)", "teacher") if k in grads)}
    for name, g in groups.items():
        p = -phase_means(g).mean(0)
        p = p - p.mean(-1, keepdim=True)
        print(f"cosine(descent phase pattern of {name}, output's grid): {float((p * grid).sum() / (p.norm() * grid.norm())):+.2f}")


if __name__ == "__main__":
    main()
