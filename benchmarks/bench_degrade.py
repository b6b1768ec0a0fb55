#!/usr/bin/env python
"""Throughput of esr's degradation pipeline at Real-ESRGAN's training shape.

Measures GT/LQ training pairs per second of ``esrcli.degrade.synthesize_pairs`` (USM on
and off; batch 12, 400x400 source crops, 256 GT / 64 LQ crops, every parameter drawn per
sample), then a plain per-sample reference implementation in the same run, written the
way Real-ESRGAN/BasicSR compute it (dense 51x51 2-D USM blur, 21x21 zero-padded kernels
through ``conv2d``, ``torch.unique`` level counting), on the same sampled parameters,
and prints the speed-up and how far the two outputs are apart.

    python benchmarks/bench_degrade.py [--threads 2] [--batches 6] [--no-reference]

Source crops come from ``../shared/data/train`` when present, else from esr's test chart.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from esrcli.config.degrade import DegradeConfig
from esrcli.data.testchart import draw_test_chart
from esrcli.degrade import sample_params, synthesize_pairs
from esrcli.degrade.kernels import make_kernel
from esrcli.ops.filters import gaussian_kernel1d, pad_kernel
from esrcli.ops.jpeg import jpeg_compress

ROOT = Path(__file__).resolve().parents[1]


def load_crops(n: int, size: int = 400) -> tuple[torch.Tensor, str]:
    """``n`` source crops ``(n, 3, size, size)``: photos from ../shared when present, else the test chart."""
    folder = ROOT.parent / "shared" / "data" / "train"
    crops = []
    if folder.is_dir():
        from esrcli.data.imageio import read_image

        for f in sorted(folder.glob("photo_*.png")):
            img = read_image(f).color
            if img.shape[0] >= size and img.shape[1] >= size and img.shape[2] == 3:
                crops.append(img[:size, :size])
            if len(crops) == n:
                return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous(), f"{n} crops of {folder}"
    rng = np.random.default_rng(0)
    chart = draw_test_chart(size)
    crops = [np.clip(chart + rng.normal(0, 0.02, chart.shape).astype(np.float32), 0, 1) for _ in range(n)]
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous(), "test chart (../shared absent)"


# ---------------------------------------------------------------- plain per-sample reference
def _ref_filter2d(img: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    k = kernel.shape[-1]
    x = F.pad(img, (k // 2,) * 4, mode="reflect")
    return F.conv2d(x, kernel.expand(img.shape[1], 1, k, k), groups=img.shape[1])


def _ref_usm(img: torch.Tensor, cfg: DegradeConfig) -> torch.Tensor:
    r = cfg.usm_radius + 1 if cfg.usm_radius % 2 == 0 else cfg.usm_radius
    k1 = gaussian_kernel1d(r)
    k2 = torch.outer(k1, k1)  # BasicSR's USMSharp: one dense 2-D kernel
    blur = _ref_filter2d(img, k2)
    residual = img - blur
    mask = (torch.abs(residual) * 255 > cfg.usm_threshold).float()
    soft = _ref_filter2d(mask, k2)
    sharp = torch.clip(img + cfg.usm_weight * residual, 0, 1)
    return soft * sharp + (1 - soft) * img


def _ref_noise(x: torch.Tensor, p: dict, gen: torch.Generator) -> torch.Tensor:
    if p["type"] == "gaussian":
        if p["gray"]:
            n = torch.randn((1, 1, *x.shape[-2:]), generator=gen) * p["sigma"] / 255.0
        else:
            n = torch.randn(x.shape, generator=gen) * p["sigma"] / 255.0
        return torch.clamp(x + n, 0, 1)
    src = x
    if p["gray"]:
        src = x[:, 0:1] * 0.299 + x[:, 1:2] * 0.587 + x[:, 2:3] * 0.114
    q = torch.clamp((src * 255.0).round(), 0, 255) / 255.0
    vals = len(torch.unique(q))
    vals = 2 ** math.ceil(math.log2(vals)) if vals > 1 else 1
    n = (torch.poisson(q * vals, generator=gen) / vals - q) * p["scale"]
    return torch.clamp(x + n, 0, 1)


def _ref_blur(x: torch.Tensor, k: dict | None) -> torch.Tensor:
    return x if k is None else _ref_filter2d(x, pad_kernel(make_kernel(k), 21))


def _ref_resize(x: torch.Tensor, mode: str, size=None, factor=None) -> torch.Tensor:
    if factor is not None:
        return x if factor == 1 else F.interpolate(x, scale_factor=factor, mode=mode)
    return F.interpolate(x, size=size, mode=mode)


def reference_lq(gt: torch.Tensor, params: list[dict], scale: int) -> torch.Tensor:
    """The same degradation, written plainly and run one sample at a time."""
    outs = []
    for i, p in enumerate(params):
        x = gt[i : i + 1]
        h, w = x.shape[-2:]
        gen = torch.Generator().manual_seed(p["seed"])
        out = _ref_blur(x, p["first"]["blur"])
        out = _ref_resize(out, p["first"]["resize"]["mode"], factor=p["first"]["resize"]["factor"])
        out = _ref_noise(out, p["first"]["noise"], gen)
        out = jpeg_compress(torch.clamp(out, 0, 1), p["first"]["jpeg_quality"])
        out = _ref_blur(out, p["second"]["blur"])
        f2 = p["second"]["resize"]["factor"]
        out = _ref_resize(out, p["second"]["resize"]["mode"], size=(int(h / scale * f2), int(w / scale * f2)))
        out = _ref_noise(out, p["second"]["noise"], gen)
        fin = p["final"]
        if fin["order"] == "sinc_first":
            out = _ref_blur(_ref_resize(out, fin["resize_mode"], size=(h // scale, w // scale)), fin["sinc"])
            out = jpeg_compress(torch.clamp(out, 0, 1), fin["jpeg_quality"])
        else:
            out = jpeg_compress(torch.clamp(out, 0, 1), fin["jpeg_quality"])
            out = _ref_blur(_ref_resize(out, fin["resize_mode"], size=(h // scale, w // scale)), fin["sinc"])
        outs.append(torch.clamp((out * 255.0).round(), 0, 255) / 255.0)
    return torch.cat(outs)


def reference_pairs(gt: torch.Tensor, cfg: DegradeConfig, gen: torch.Generator, gt_usm: bool):
    params = sample_params(cfg, gt.shape[0], gen)
    usm = torch.cat([_ref_usm(gt[i : i + 1], cfg) for i in range(gt.shape[0])]) if gt_usm else None
    lq = reference_lq(gt, params, cfg.scale)
    return usm, lq, params


# ---------------------------------------------------------------- timing
def time_fast(batches: list[torch.Tensor], cfg: DegradeConfig, gt_usm: bool) -> tuple[float, float]:
    """Pairs per second (wall clock) and CPU seconds per pair (all threads of this process)."""
    gen = torch.Generator().manual_seed(0)
    synthesize_pairs(batches[0], cfg, gen, gt_usm)  # warm-up
    start, cpu = time.perf_counter(), time.process_time()
    n = 0
    for b in batches:
        synthesize_pairs(b, cfg, gen, gt_usm)
        n += b.shape[0]
    return n / (time.perf_counter() - start), (time.process_time() - cpu) / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="torch and OpenCV threads (default 2)")
    ap.add_argument("--batches", type=int, default=6, help="timed batches per configuration")
    ap.add_argument("--batch-size", type=int, default=12)
    ap.add_argument("--no-reference", action="store_true", help="skip the slow per-sample reference")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    cfg = DegradeConfig()
    bs = args.batch_size
    crops, source = load_crops(bs * 2)
    batches = [crops[(i % 2) * bs : (i % 2 + 1) * bs] for i in range(args.batches)]
    print(f"esr degrade benchmark: torch {torch.__version__}, OpenCV {cv2.__version__}, {args.threads} threads, "
          f"{os.cpu_count()} CPUs visible, load average {os.getloadavg()[0]:.1f}")
    print(f"shape: batch {bs}, source 400x400 -> GT {cfg.gt_size} / LQ {cfg.gt_size // cfg.scale} (x{cfg.scale}); source: {source}")
    results = {}
    for usm in (True, False):
        rate, cpu = time_fast(batches, cfg, usm)
        results[usm] = rate
        print(f"  esr synthesize_pairs, USM {'on ' if usm else 'off'}: {rate:7.2f} pairs/s  ({1000 * bs / rate:7.1f} ms/batch, "
              f"CPU time {1000 * bs * cpu:7.1f} ms/batch)")
    if args.no_reference:
        return 0
    for usm in (True, False):
        gen = torch.Generator().manual_seed(1)
        start = time.perf_counter()
        ref_usm, ref_lq, params = reference_pairs(batches[0], cfg, gen, usm)
        rate = bs / (time.perf_counter() - start)
        print(f"  plain per-sample reference, USM {'on ' if usm else 'off'}: {rate:7.2f} pairs/s  -> esr is {results[usm] / rate:5.1f}x faster")
        if usm:
            from esrcli.degrade import degrade_with_params
            from esrcli.ops.filters import usm_sharpen

            fast_usm = usm_sharpen(batches[0], cfg.usm_radius, cfg.usm_weight, cfg.usm_threshold)
            fast_lq = degrade_with_params(batches[0], params)
            du = float((fast_usm - ref_usm).abs().max())
            dl = (fast_lq - ref_lq).abs() * 255
            print(f"  agreement on the same parameters: USM max |diff| {du:.2e}; LQ mean |diff| {float(dl.mean()):.3f} "
                  f"8-bit levels, {float((dl > 0).float().mean()) * 100:.2f}% of LQ samples differ (float rounding, amplified by JPEG)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
