#!/usr/bin/env python
"""Calibrate and check ``esr upscale --denoise auto`` against fixed strengths.

For every HR image of ``../shared/data/val`` (Set5 + Set14): a centre crop (at most
``--crop`` px, a multiple of 4) is taken as ground truth, reduced x4 with MATLAB bicubic
(:func:`esrcli.ops.imresize.imresize`, uint8), then degraded with known parameters: none
(clean), additive Gaussian colour noise of sigma 2/5/10/15/20 (8-bit levels, per channel,
at the LR scale), JPEG (OpenCV, IJG quality 30/50/70/90) and noise-then-JPEG combinations.
Each input is upscaled by the model interpolated with its weak-denoise partner
(``S * model + (1 - S) * partner``) at the fixed strengths 0, 0.25, 0.5, 0.75, 1 and at
``auto``:

- ``auto-oracle``: :func:`esrcli.estimate.strength.recommend_denoise` of the TRUE parameters
  (blur sigma passed as 0: a bicubic reduction, no added blur);
- ``auto-est``: ``esrcli.estimate.estimate(lr).denoise``, when this build has the estimator.

Auto strengths are rounded to 0.05, as ``esr upscale`` does. PSNR_Y follows the SR papers'
conventions (output rounded to 8 bits, Y of BT.601 YCbCr, 4 border pixels cropped;
:func:`esrcli.metrics.psnr`). The mean over the whole mix is the figure that the issue's
target compares ("auto as good as the best fixed strength, clearly better than the worst").

    python benchmarks/bench_denoise_auto.py [--threads 1] [--crop 256] [--grid 0.1] [--table t.csv]

``--grid STEP`` adds every strength on that grid (for tuning ``recommend_denoise`` offline
from ``--table``: one row per input and strength). Runtime: about 4-8 minutes on one
thread at ``--crop 256`` with ``--grid 0.1``, under 3 without.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from esrcli.data.imageio import Image, read_image
from esrcli.estimate.strength import recommend_denoise
from esrcli.infer.model import ModelSpec, load_upscale_model, round_strength
from esrcli.infer.upscale import UpscaleOptions, upscale_image
from esrcli.metrics import psnr
from esrcli.ops.imresize import imresize

ROOT = Path(__file__).resolve().parents[1]
VAL = ROOT.parent / "shared" / "data" / "val"
FIXED = (0.0, 0.25, 0.5, 0.75, 1.0)
# (name, Gaussian noise sigma in 8-bit levels, JPEG quality or None)
CONDITIONS = (
    ("clean", 0.0, None),
    ("g2", 2.0, None),
    ("g5", 5.0, None),
    ("g10", 10.0, None),
    ("g15", 15.0, None),
    ("g20", 20.0, None),
    ("j30", 0.0, 30),
    ("j50", 0.0, 50),
    ("j70", 0.0, 70),
    ("j90", 0.0, 90),
    ("g2+j50", 2.0, 50),
    ("g5+j70", 5.0, 70),
    ("g10+j90", 10.0, 90),
)
# Beyond the mix (--extra): where does full denoising start to pay?
EXTRA = (
    ("g30", 30.0, None),
    ("g40", 40.0, None),
    ("j10", 0.0, 10),
    ("j20", 0.0, 20),
    ("g20+j50", 20.0, 50),
)


@dataclass
class Case:
    """One degraded input: its image, condition and ground truth (uint8 HWC RGB)."""

    image: str
    condition: str
    sigma: float
    quality: int | None
    lr: np.ndarray
    gt: np.ndarray


def degrade(lr: np.ndarray, sigma: float, quality: int | None, rng: np.random.Generator) -> np.ndarray:
    """Gaussian colour noise (``sigma`` levels), then JPEG at ``quality``; uint8 in and out."""
    out = lr
    if sigma > 0:
        noisy = lr.astype(np.float64) + rng.normal(0.0, sigma, lr.shape)
        out = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    if quality is not None:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:  # pragma: no cover - OpenCV always encodes uint8 RGB
            raise RuntimeError("JPEG encoding failed")
        out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return out


def build_cases(crop: int, seed: int, conditions: tuple = CONDITIONS) -> list[Case]:
    """All (image, condition) inputs of the mix."""
    files = sorted((VAL / "set5").glob("*.png")) + sorted((VAL / "set14").glob("*.png"))
    if not files:
        sys.exit(f"no images in {VAL}/set5 or set14 (../shared is needed)")
    rng = np.random.default_rng(seed)
    cases = []
    for f in files:
        img = read_image(f)
        if img.is_gray:
            continue
        hr = np.clip(np.rint(img.color * 255.0), 0, 255).astype(np.uint8)
        h, w = hr.shape[:2]
        ch, cw = min(h, crop) // 4 * 4, min(w, crop) // 4 * 4
        top, left = (h - ch) // 2, (w - cw) // 2
        gt = np.ascontiguousarray(hr[top:top + ch, left:left + cw])
        lr = imresize(gt, 0.25)
        for name, sigma, quality in conditions:
            cases.append(Case(f.stem, name, sigma, quality, degrade(lr, sigma, quality, rng), gt))
    return cases


def oracle(case: Case) -> float:
    return round_strength(recommend_denoise(case.sigma, case.quality, 0.0))


def real_estimator():
    """``esrcli.estimate.estimate``, or ``None`` when this build has none."""
    import esrcli.estimate as est

    return getattr(est, "estimate", None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="esr-general-x4-net", help="a model with a weak-denoise partner")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--crop", type=int, default=256, help="HR centre crop side (LR = crop / 4)")
    ap.add_argument("--grid", type=float, default=0.0, help="also run every strength on this grid (tuning)")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-estimator", action="store_true", help="skip auto-est even if the estimator exists")
    ap.add_argument("--table", type=Path, help="write per-input, per-strength PSNR_Y here (CSV)")
    ap.add_argument("--extra", action="store_true", help="also heavier degradations (sigma 30/40, JPEG 10/20), outside MIX")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    conditions = CONDITIONS + (EXTRA if args.extra else ())
    cases = build_cases(args.crop, args.seed, conditions)
    model = load_upscale_model(ModelSpec(args.model, "cpu", args.precision))
    model.check_denoise()
    picks: dict[str, list[float]] = {"auto-oracle": [oracle(c) for c in cases]}
    est = None if args.no_estimator else real_estimator()
    if est is not None:
        t_est = time.perf_counter()
        values, failed = [], 0
        for c in cases:
            try:
                values.append(round_strength(est(c.lr).denoise))
            except Exception as exc:  # noqa: BLE001 - e.g. an LR crop under the estimator's minimum side
                values.append(round_strength(recommend_denoise(0.0, None, 0.0)))  # as esr upscale --denoise auto
                failed += 1
                if failed == 1:
                    print(f"estimator: {c.image}/{c.condition}: {exc} (a clean image's strength used)")
        picks["auto-est"] = values
        print(f"estimator: {len(cases)} inputs in {time.perf_counter() - t_est:.1f} s, {failed} not estimated")
    else:
        print("estimator: esrcli.estimate.estimate not in this build (auto-est skipped)")
    strengths = set(FIXED)
    if args.grid > 0:
        strengths |= {round_strength(k * args.grid) for k in range(int(round(1 / args.grid)) + 1)}
    needed: dict[float, set[int]] = {s: set(range(len(cases))) for s in strengths}
    for values in picks.values():
        for i, s in enumerate(values):
            needed.setdefault(s, set()).add(i)

    scores: dict[tuple[int, float], float] = {}
    options = UpscaleOptions(tile=0)
    for s in sorted(needed):
        net = model.net_for(8, denoise=s)
        for i in sorted(needed[s]):
            c = cases[i]
            sr = upscale_image(Image(c.lr.astype(np.float32) / 255.0), net, model.info, options).color
            sr8 = np.clip(np.rint(sr * 255.0), 0, 255).astype(np.uint8)
            scores[i, s] = psnr(sr8, c.gt, crop_border=4, test_y_channel=True)
    seconds = time.perf_counter() - t0

    columns = [f"S={s:g}" for s in FIXED] + list(picks)

    def row(idx: list[int]) -> list[float]:
        vals = [float(np.mean([scores[i, s] for i in idx])) for s in FIXED]
        vals += [float(np.mean([scores[i, picks[k][i]] for i in idx])) for k in picks]
        return vals

    print(f"model {args.model}, {len(cases)} inputs ({len(cases) // len(conditions)} images x {len(conditions)} conditions), "
          f"HR crop {args.crop}, {args.precision}, {args.threads} thread(s), {seconds:.0f} s")
    print(f"{'PSNR_Y dB':<10}" + "".join(f"{c:>12}" for c in columns) + f"{'oracle S':>10}")
    for name, _, _ in conditions:
        idx = [i for i, c in enumerate(cases) if c.condition == name]
        mean_pick = float(np.mean([picks["auto-oracle"][i] for i in idx]))
        print(f"{name:<10}" + "".join(f"{v:12.3f}" for v in row(idx)) + f"{mean_pick:10.2f}")
    in_mix = [i for i, c in enumerate(cases) if c.condition in {n for n, _, _ in CONDITIONS}]
    mix = row(in_mix)
    print(f"{'MIX':<10}" + "".join(f"{v:12.3f}" for v in mix))
    best, worst = max(mix[: len(FIXED)]), min(mix[: len(FIXED)])
    for k, v in zip(picks, mix[len(FIXED):]):
        print(f"{k}: {v:.3f} dB; best fixed {best:.3f} ({v - best:+.3f}), worst fixed {worst:.3f} ({v - worst:+.3f})")
    if args.grid > 0:
        grid = sorted(strengths)
        per = [float(np.mean([scores[i, s] for i in in_mix])) for s in grid]
        print("grid mix: " + ", ".join(f"{s:g}:{v:.3f}" for s, v in zip(grid, per)))
        ceiling = float(np.mean([max(scores[i, s] for s in grid) for i in in_mix]))
        print(f"per-input best on the grid (ceiling for any auto): {ceiling:.3f} dB")
    if args.table is not None:
        with open(args.table, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["image", "condition", "sigma", "quality", "strength", "psnr_y"])
            for (i, s), v in sorted(scores.items()):
                c = cases[i]
                w.writerow([c.image, c.condition, c.sigma, c.quality if c.quality is not None else "", f"{s:g}", f"{v:.4f}"])
        print(f"table: {args.table}")


if __name__ == "__main__":
    main()
