"""Speed of the metrics: NIQE (s per megapixel), SSIM/PSNR on a 2-megapixel pair, MATLAB imresize.

Each fast path is timed beside a straightforward reference in the same run (NIQE: the
per-block MATLAB loops of ``esrcli.metrics.niqe.niqe_reference``; SSIM: BasicSR's 2-D
``cv2.filter2D`` formulation; imresize: the generic gather-and-sum), and the results are
checked to agree. Targets: NIQE <= 0.06 s/MP on 2 cores, SSIM (RGB, 2 MP) < 0.5 s.

Run: ``python benchmarks/bench_metrics.py [--mp 1.0] [--repeat 5] [--threads 2]``.
Figures depend on the machine's load; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from esrcli.metrics.niqe import _aggd_table, niqe, niqe_gray, niqe_reference, prepare_niqe_input
from esrcli.metrics.psnr_ssim import psnr, ssim
from esrcli.ops import imresize as imresize_mod
from esrcli.ops.imresize import imresize

SHARED = Path(__file__).resolve().parents[2] / "shared"


CPU_TIMES: dict[int, float] = {}


def _timeit(fn, repeat: int) -> tuple[float, object]:
    """Median wall time (and, in CPU_TIMES[id(fn)], median process CPU time) of ``fn()``."""
    times, cpu, out = [], [], None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    CPU_TIMES[id(fn)] = statistics.median(cpu)
    return statistics.median(times), out


def _cpu(fn) -> float:
    return CPU_TIMES[id(fn)]


def _test_image(mp: float) -> np.ndarray:
    """An RGB uint8 photo-like image of about ``mp`` megapixels (baboon from ../shared, else synthetic)."""
    side_h = int(round((mp * 1e6 * 3 / 4) ** 0.5 / 96)) * 96 or 96
    side_w = int(round(mp * 1e6 / side_h / 96)) * 96 or 96
    src = SHARED / "metrics" / "images" / "gt_baboon.png"
    if src.exists():
        img = cv2.imread(str(src), cv2.IMREAD_COLOR)[:, :, ::-1]
        reps = (side_h // img.shape[0] + 1, side_w // img.shape[1] + 1, 1)
        return np.ascontiguousarray(np.tile(img, reps)[:side_h, :side_w])
    rng = np.random.default_rng(0)
    base = rng.random((side_h // 8, side_w // 8, 3))
    img = cv2.resize(base, (side_w, side_h), interpolation=cv2.INTER_CUBIC) * 200 + rng.normal(0, 8, (side_h, side_w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _ssim_basicsr(a: np.ndarray, b: np.ndarray) -> float:
    """BasicSR's formulation (2-D window with cv2.filter2D), float64, per channel then mean."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    k = cv2.getGaussianKernel(11, 1.5)
    win = np.outer(k, k.T)
    vals = []
    for c in range(a.shape[2]):
        x, y = a[..., c].astype(np.float64), b[..., c].astype(np.float64)
        f = lambda z: cv2.filter2D(z, -1, win)[5:-5, 5:-5]  # noqa: E731
        m1, m2 = f(x), f(y)
        s1, s2, s12 = f(x * x) - m1**2, f(y * y) - m2**2, f(x * y) - m1 * m2
        vals.append(np.mean(((2 * m1 * m2 + c1) * (2 * s12 + c2)) / ((m1**2 + m2**2 + c1) * (s1 + s2 + c2))))
    return float(np.mean(vals))


def _imresize_generic(a: np.ndarray, scale: float) -> np.ndarray:
    h, w = a.shape[:2]
    (sh, sw), (oh, ow), order = imresize_mod._plan(h, w, scale)
    out = a.astype(np.float64)
    for axis in order:
        n_in, n_out, s = (h, oh, sh) if axis == 0 else (w, ow, sw)
        wt, ix = imresize_mod.contributions(n_in, n_out, s)
        out = imresize_mod._resize_axis(out, axis, wt, ix)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mp", type=float, default=1.0, help="NIQE test image size in megapixels")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="OpenCV threads; NIQE also runs with this many block workers (the default row uses the library default)")
    args = ap.parse_args(argv)
    cv2.setNumThreads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"esr bench_metrics: {os.cpu_count()} CPUs, threads {args.threads}, load average {load:.2f}")

    rgb = _test_image(args.mp)
    mp = rgb.shape[0] * rgb.shape[1] / 1e6
    gray = prepare_niqe_input(rgb, 0, "y")
    _aggd_table()  # built once per process; not part of the per-image time
    f_fast = lambda: niqe_gray(gray)  # noqa: E731 - library default workers
    f_one = lambda: niqe_gray(gray, workers=args.threads)  # noqa: E731
    f_full = lambda: niqe(rgb)  # noqa: E731
    f_ref = lambda: niqe_reference(gray)  # noqa: E731
    t_fast, v_fast = _timeit(f_fast, args.repeat)
    t_one, _ = _timeit(f_one, args.repeat)
    t_full, _ = _timeit(f_full, args.repeat)
    t_ref, v_ref = _timeit(f_ref, max(1, args.repeat // 3))
    print(f"NIQE  {rgb.shape[1]}x{rgb.shape[0]} ({mp:.2f} MP), score {v_fast:.8f}, |fast - reference| = {abs(v_fast - v_ref):.1e}")
    print("                      wall s/MP   CPU s/MP (all threads)")
    print(f"  fast (default)      {t_fast / mp:.4f}      {_cpu(f_fast) / mp:.4f}")
    print(f"  fast ({args.threads} workers)   {t_one / mp:.4f}      {_cpu(f_one) / mp:.4f}")
    print(f"  incl. RGB->Y        {t_full / mp:.4f}      {_cpu(f_full) / mp:.4f}   (target <= 0.06 wall on 2 cores)")
    print(f"  reference loops     {t_ref / mp:.4f}      {_cpu(f_ref) / mp:.4f}   ratio {t_ref / t_fast:.1f}x wall")

    rng = np.random.default_rng(1)
    h, w = 1200, 1680  # ~2 MP
    gt = np.clip(cv2.resize(_test_image(0.5), (w, h), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)
    sr = np.clip(gt.astype(np.int16) + rng.integers(-6, 7, gt.shape), 0, 255).astype(np.uint8)
    f_ssim = lambda: ssim(sr, gt, 4)  # noqa: E731
    t_ssim, v_ssim = _timeit(f_ssim, args.repeat)
    t_ssim_ref, v_ssim_ref = _timeit(lambda: _ssim_basicsr(sr[4:-4, 4:-4], gt[4:-4, 4:-4]), max(1, args.repeat // 2))
    t_ssim_y, _ = _timeit(lambda: ssim(sr, gt, 4, True), args.repeat)
    t_psnr, _ = _timeit(lambda: psnr(sr, gt, 4), args.repeat)
    print(f"SSIM  {w}x{h} RGB ({h * w / 1e6:.2f} MP): {t_ssim:.3f} s wall, {_cpu(f_ssim):.3f} s CPU (target < 0.5), "
          f"|fast - BasicSR| = {abs(v_ssim - v_ssim_ref):.1e}")
    print(f"  BasicSR 2-D filter  {t_ssim_ref:.3f} s   ratio {t_ssim_ref / t_ssim:.1f}x")
    print(f"  SSIM on Y           {t_ssim_y:.3f} s")
    print(f"  PSNR RGB            {t_psnr:.3f} s")

    small = _test_image(0.25)
    t_half, half = _timeit(lambda: imresize(gray, 0.5), args.repeat)
    t_half_ref, half_ref = _timeit(lambda: _imresize_generic(gray, 0.5), args.repeat)
    t_up, _ = _timeit(lambda: imresize(small, 4), max(1, args.repeat // 2))
    print(f"imresize x0.5 of {gray.shape[1]}x{gray.shape[0]} gray: {t_half:.4f} s, generic {t_half_ref:.4f} s "
          f"(ratio {t_half_ref / t_half:.1f}x, max diff {np.abs(half - half_ref).max():.1e})")
    print(f"imresize x4 of {small.shape[1]}x{small.shape[0]} RGB uint8: {t_up:.4f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
