#!/usr/bin/env python
"""Fit the constants of ``recommend_denoise`` to a table of ``bench_denoise_auto.py --table``.

The table holds PSNR_Y per input (image x known degradation) and denoise strength. For a
candidate mapping (noise sigma, JPEG quality) -> strength of the form used by
:func:`esrcli.estimate.strength.recommend_denoise`::

    s_noise = clip((sigma - n0) / (n1 - n0), 0, 1)
    s_jpeg  = clip((q0 - quality) / (q0 - q1), 0, 1)        (0 without JPEG)
    s       = lo + (hi - lo) * clip(s_noise + s_jpeg, 0, 1)

each input's PSNR at ``s`` is read off its PSNR-vs-strength curve (linear between the
table's strengths), and the constants with the best mean PSNR over the fitting images win.
To see whether the constants carry over, fit on one set and score on the other:

    python benchmarks/fit_denoise_strength.py TABLE.csv [--fit set5|set14|all]

Set5 images are ``baby bird butterfly head woman``; everything else counts as Set14.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
from collections import defaultdict

import numpy as np

SET5 = {"baby", "bird", "butterfly", "head", "woman"}


def load(path: str) -> tuple[np.ndarray, list[tuple[str, float, float | None]], np.ndarray]:
    """``(strengths, inputs, psnr)``: the common strength grid, (image, sigma, quality) per
    input and PSNR ``(inputs, strengths)`` (inputs lacking a grid strength are dropped)."""
    rows: dict[tuple[str, float, float | None], dict[float, float]] = defaultdict(dict)
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            q = float(r["quality"]) if r["quality"] else None
            rows[r["image"], float(r["sigma"]), q][float(r["strength"])] = float(r["psnr_y"])
    if not rows:
        raise ValueError("no rows")
    common = sorted(set.intersection(*(set(v) for v in rows.values())))
    if len(common) < 2:
        raise ValueError("fewer than two denoise strengths shared by every input")
    keys = sorted(rows, key=lambda k: (k[0], k[1], k[2] or 0))
    table = np.array([[rows[k][s] for s in common] for k in keys])
    return np.array(common), keys, table


def mapping(sigma: np.ndarray, quality: np.ndarray, p: tuple[float, ...]) -> np.ndarray:
    n0, n1, q0, q1, lo, hi = p
    s_noise = np.clip((sigma - n0) / (n1 - n0), 0, 1)
    s_jpeg = np.where(np.isnan(quality), 0.0, np.clip((q0 - np.nan_to_num(quality, nan=q0)) / (q0 - q1), 0, 1))
    return lo + (hi - lo) * np.clip(s_noise + s_jpeg, 0, 1)


STEP = 0.05  # esr rounds strengths to this


def on_steps(grid: np.ndarray, table: np.ndarray) -> np.ndarray:
    """PSNR at every 0.05 step (linear between the table's strengths): ``(inputs, 21)``."""
    steps = np.arange(21) * STEP
    return np.stack([np.interp(steps, grid, row) for row in table])


def score(fine: np.ndarray, s: np.ndarray) -> float:
    idx = np.clip(np.round(s / STEP).astype(int), 0, 20)
    return float(fine[np.arange(len(s)), idx].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("table")
    ap.add_argument("--fit", choices=("set5", "set14", "all"), default="all")
    args = ap.parse_args()
    try:
        grid, keys, table = load(args.table)
    except OSError as exc:
        sys.exit(f"fit_denoise_strength: {args.table}: cannot read ({exc.strerror}); "
                 "make the table with benchmarks/bench_denoise_auto.py --table")
    except KeyError as exc:
        sys.exit(f"fit_denoise_strength: {args.table}: no column {exc} (needs image, sigma, quality, strength, psnr_y "
                 "as bench_denoise_auto.py --table writes)")
    except ValueError as exc:
        sys.exit(f"fit_denoise_strength: {args.table}: not a bench_denoise_auto.py --table CSV ({exc})")
    fine = on_steps(grid, table)
    sigma = np.array([k[1] for k in keys])
    quality = np.array([np.nan if k[2] is None else k[2] for k in keys])
    in5 = np.array([k[0] in SET5 for k in keys])
    fit = {"set5": in5, "set14": ~in5, "all": np.ones_like(in5)}[args.fit]
    other = ~fit if args.fit != "all" else fit
    best = None
    for n0, dn, q0, dq, lo, hi in itertools.product(
        (0, 4, 8, 12, 14, 16, 18, 20, 22, 24, 26), (4, 8, 12, 16, 20, 24, 30), (20, 25, 30, 35, 40, 45, 50, 60, 70, 90),
        (5, 10, 15, 20, 30), (0.0,), (0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
    ):
        p = (n0, n0 + dn, q0, q0 - dq, lo, hi)
        v = score(fine[fit], mapping(sigma[fit], quality[fit], p))
        if best is None or v > best[0]:
            best = (v, p)
    assert best is not None
    v, p = best
    print(f"strength grid {', '.join(f'{g:g}' for g in grid)}; {len(keys)} inputs, fit on {args.fit} ({int(fit.sum())})")
    print(f"best constants n0={p[0]} n1={p[1]} q0={p[2]} q1={p[3]} lo={p[4]} hi={p[5]}: fit mean {v:.3f} dB")
    mix = np.array([k[1] <= 20 and (k[2] is None or k[2] >= 30) and not (k[1] == 20 and k[2] is not None) for k in keys])
    for label, m in (("mix", other & mix), ("beyond the mix", other & ~mix)):
        if not m.any():
            continue
        s_m = mapping(sigma[m], quality[m], p)
        fixed = [fine[m][:, int(round(g / STEP))].mean() for g in (0, 0.25, 0.5, 0.75, 1)]
        print(f"{'held-out ' if args.fit != 'all' else ''}{label} ({int(m.sum())} inputs): auto {score(fine[m], s_m):.3f} dB; "
              + ", ".join(f"S={g:g} {f:.3f}" for g, f in zip((0, 0.25, 0.5, 0.75, 1), fixed))
              + f"; per-input ceiling {fine[m].max(axis=1).mean():.3f}")
    for (sg, q) in sorted({(k[1], k[2]) for k in keys}, key=lambda t: (t[1] or 0, t[0])):
        m = np.array([(k[1], k[2]) == (sg, q) for k in keys])
        curve = fine[m].mean(axis=0)
        s_c = mapping(np.array([sg]), np.array([np.nan if q is None else q]), p)[0]
        print(f"  sigma {sg:4g} q {str(q if q is None else int(q)):>4}: best S {curve.argmax() * STEP:.2f} ({curve.max():.3f}), "
              f"chosen {s_c:.2f} ({curve[int(round(s_c / STEP))]:.3f})")


if __name__ == "__main__":
    main()
