#!/usr/bin/env python
"""Benchmark of `esr upscale`'s inference path on the CPU (or a GPU with --device).

Measures, on random-weight networks of the real sizes (speed does not depend on weights;
RRDBNet gets PyTorch's default init, see :func:`random_rrdbnet`):

* RRDBNet x4 (num_feat 64, 23 blocks): output megapixels/s on 256x256 inputs, counted per
  image over a batch of images, for esr's path (``prepare_model`` + ``tiled_forward`` with
  the precision ``auto`` picks: bf16 channels_last on CPUs with native bf16; as many images
  at once as ``esr upscale`` runs, through :class:`esrcli.infer.workers.WorkerPool`: 2 on a
  CPU with 2+ threads, each with half of them) and for a
  plain fp32 NCHW forward of the same network in the same run (the official
  Real-ESRGAN script's way); achieved GFLOP/s (convolution FLOPs counted by hooks,
  2 per multiply-add) and the ratio of the two.
* SRVGGNetCompact x4 (num_feat 64, num_conv 32): output megapixels/s, same way.
* ``--tiles 256,384,512``: ``esr upscale``'s default tile size, chosen by measurement: output
  MP/s of esr's path (``tiled_forward`` with those tiles and the default overlap of 32) on
  photo-sized inputs (``--photo``, default 1000x750), each tile size against the first one,
  in alternating rounds (``--rounds``) of ``jobs`` images at once. Larger tiles waste less
  work on overlaps; smaller ones keep activations in the processor's caches.
* ``--rss``: peak resident memory of ``esr upscale`` on a 1024x1024 input at x4 with
  ``--tile 256`` (RRDBNet), run in a subprocess (``ru_maxrss`` of the child).

GFLOP/s count the networks' nominal convolutions (RRDBNet's tail computes its two
upsampling convs with fewer multiply-adds; it is credited with the nominal ones, as the
target is stated). Alongside each image the script times a lone 3x3 conv 64->64 in the same
dtype (the networks' main layer, the conv library's best case) and prints esr's GFLOP/s as
a share of it: a figure that a slower or busier machine moves far less than MP/s. The
targets were set as shares of this processor's bf16 peak (RRDBNet about 80%, compact about
85%).

Process start-up and model loading are excluded from the speed figures; one warm-up pass
runs first. The images go in groups of ``jobs`` (``esr upscale``'s default): esr's path
runs a group at once, its time divided by the group's size; the reference conv and the
plain path then take the same images one by one, back to back (alternating which path goes
first), and the figures are medians over the groups with their range, so that a slow
stretch of a shared machine moves all paths alike. Targets on 2 CPU cores (Zen 4,
avx512_bf16): RRDBNet >= 0.16 MP/s, compact >= 2.5 MP/s, peak RSS <= 1 GB.

Usage::

    python benchmarks/bench_upscale.py --threads 2 --images 6 [--jobs N] [--rss] [--skip-fp32]
    python benchmarks/bench_upscale.py --models compact --tiles 256,384,512 --photo 1000x750
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from esrcli.archs import RRDBNet, SRVGGNetCompact
from esrcli.errors import EsrError
from esrcli.infer import prepare_model, select_device, select_precision, tiled_forward
from esrcli.infer.workers import WorkerPool, default_jobs


RRDB_PARAMS = dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=64, num_block=23, num_grow_ch=32)


def random_rrdbnet(**params: int) -> RRDBNet:
    """A random RRDBNet with PyTorch's default conv initialisation everywhere.

    Not ESRGAN's 0.1-scaled dense-block init (what ``RRDBNet()`` gives, for training): with
    it a fresh trunk grows its features about 1.2x per block (1.2**23, about 66x), an
    untrained state whose bf16 output lands near the 45 dB probe limit, so ``auto`` could
    pick fp32 for a network nobody runs. Speed does not depend on the weights; the
    precision that ``auto`` picks does.
    """
    net = RRDBNet(**params)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            m.reset_parameters()
    return net


def conv_flops(net: nn.Module, x: torch.Tensor) -> float:
    """FLOPs (2 per multiply-add) of all Conv2d layers for one forward of ``x``."""
    total = 0.0

    def hook(mod: nn.Conv2d, inp, out) -> None:
        nonlocal total
        k = mod.kernel_size[0] * mod.kernel_size[1]
        total += 2.0 * out.numel() * (mod.in_channels // mod.groups) * k

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    with torch.inference_mode():
        net(x)
    for h in handles:
        h.remove()
    return total


def time_groups(fns: dict[str, Callable[[list[torch.Tensor]], None]], groups: list[list[torch.Tensor]]) -> dict[str, list[float]]:
    """Seconds per image for each path, one figure per group of images: one warm-up call
    each, then every group through all paths back to back (the order alternating per group),
    so that a slow stretch of a shared machine hits the paths alike and the paired ratios
    stay meaningful."""
    for fn in fns.values():
        fn(groups[0])
    times: dict[str, list[float]] = {k: [] for k in fns}
    for i, group in enumerate(groups):
        for key in list(fns) if i % 2 == 0 else list(fns)[::-1]:
            t0 = time.perf_counter()
            fns[key](group)
            times[key].append((time.perf_counter() - t0) / len(group))
    return times


def bench_model(name: str, net: nn.Module, size: int, images: int, jobs: int, device: torch.device, precision: str, skip_fp32: bool) -> None:
    scale = 4
    g = torch.Generator().manual_seed(0)
    groups = [[torch.rand(1, 3, size, size, generator=g) for _ in range(jobs)] for _ in range(max(1, -(-images // jobs)))]
    mp = (size * scale) ** 2 / 1e6
    flops = conv_flops(net, groups[0][0][:, :, :64, :64]) * (size / 64) ** 2
    prec = select_precision(precision, device, net, 3, key=name)
    fast = prepare_model(copy.deepcopy(net), device, prec.dtype)

    def esr_one(x: torch.Tensor) -> None:
        tiled_forward(fast, x, scale, 0)
        if device.type == "cuda":
            torch.cuda.synchronize()

    def esr_path(group: list[torch.Tensor]) -> None:
        for fut in [pool.submit(esr_one, x) for x in group]:
            fut.result()

    # Same-run reference for the machine's speed: a lone 3x3 conv 64->64 (the networks' main
    # layer, oneDNN's / cuDNN's best case) at the input size, in the esr path's dtype.
    probe_x = torch.rand(1, 64, size, size, device=device).to(prec.dtype).contiguous(memory_format=torch.channels_last)
    probe_w = torch.rand(64, 64, 3, 3, device=device).to(prec.dtype).contiguous(memory_format=torch.channels_last)
    probe_reps = 8
    probe_flops = 2.0 * 64 * 64 * 9 * size * size * probe_reps

    def probe(group: list[torch.Tensor]) -> None:
        with torch.inference_mode():
            for _ in range(probe_reps * len(group)):
                torch.nn.functional.conv2d(probe_x, probe_w, None, 1, 1)
        if device.type == "cuda":
            torch.cuda.synchronize()

    fns = {"esr": esr_path, "probe": probe}
    if not skip_fp32:
        plain = copy.deepcopy(net).float().eval().to(device)

        def plain_path(group: list[torch.Tensor]) -> None:
            with torch.no_grad():
                for x in group:
                    plain(x.to(device))
            if device.type == "cuda":
                torch.cuda.synchronize()

        fns["plain"] = plain_path
    # esr's path keeps freed memory mapped during each call (tiled_forward, as in `esr
    # upscale`); the plain baseline runs with glibc's usual settings, as the official
    # script does. (Inside keep_freed_memory the plain fp32 RRDBNet itself runs 1.3x faster.)
    with WorkerPool(jobs) as pool:
        times = time_groups(fns, groups)

    def line(label: str, ts: list[float]) -> str:
        t = statistics.median(ts)
        return (f"{name}: {label}: {t:.2f} s/image, {mp / t:.3f} output MP/s (median of {len(ts)} groups of {jobs}; "
                f"{mp / max(ts):.3f}-{mp / min(ts):.3f}), {flops / t / 1e9:.0f} GFLOP/s")

    print(line(f"esr path ({prec.name}, {device}, {jobs} image(s) at a time)", times["esr"]), flush=True)
    if prec.note:
        print(f"  ({prec.note})")
    peak = statistics.median(probe_flops / t for t in times["probe"]) / 1e9
    share = statistics.median(flops / e / (probe_flops / p) for e, p in zip(times["esr"], times["probe"]))
    print(f"{name}: same-run reference: a lone {prec.name} 3x3 conv 64->64 on {size}x{size} ran at {peak:.0f} GFLOP/s "
          f"(median); the esr path reached {share:.0%} of it (median of per-group ratios)", flush=True)
    if skip_fp32:
        return
    print(line("plain fp32 NCHW, one at a time", times["plain"]), flush=True)
    ratio = statistics.median(p / e for p, e in zip(times["plain"], times["esr"]))
    print(f"{name}: speed-up over plain fp32 NCHW: {ratio:.2f}x (median of per-group ratios)", flush=True)


def bench_rss(threads: int, precision: str) -> None:
    """Peak RSS of `esr upscale` on 1024x1024 at x4, --tile 256, in a child process (``--precision``)."""
    import cv2
    import numpy as np

    from esrcli.weights import ModelInfo, save_model

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        torch.manual_seed(0)
        save_model(d / "rrdb.safetensors", random_rrdbnet(**RRDB_PARAMS), ModelInfo("RRDBNet", RRDB_PARAMS, 4))
        img = (np.random.default_rng(0).random((1024, 1024, 3)) * 255).astype(np.uint8)
        cv2.imwrite(str(d / "in.png"), cv2.GaussianBlur(img, (0, 0), 3))
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        cmd = [sys.executable, "-m", "esrcli", "upscale", str(d / "in.png"), str(d / "out"), "--model", str(d / "rrdb.safetensors"), "--tile", "256", "--precision", precision]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        dt = time.perf_counter() - t0
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(f"rss: esr upscale 1024x1024 x4 --tile 256 (RRDBNet): precision {precision}: peak RSS {peak_kb / 1024:.0f} MiB, wall {dt:.0f} s", flush=True)


def bench_tiles(name: str, net: nn.Module, tiles: list[int], photo: tuple[int, int], rounds: int, jobs: int, device: torch.device, precision: str) -> None:
    """Output MP/s of esr's tiled path on ``photo``-sized (W, H) inputs for each tile size,
    ``rounds`` rounds of ``jobs`` images at once, tile sizes in alternating order per round;
    each against the first tile size as the median of per-round ratios."""
    scale, (w, h) = 4, photo
    g = torch.Generator().manual_seed(0)
    # Smooth content, as photos have (speed does not depend on it).
    group = [torch.nn.functional.interpolate(torch.rand(1, 3, h // 8, w // 8, generator=g), size=(h, w), mode="bicubic").clamp(0, 1) for _ in range(jobs)]
    prec = select_precision(precision, device, net, 3, key=name)
    fast = prepare_model(copy.deepcopy(net), device, prec.dtype)

    def one(x: torch.Tensor, tile: int) -> None:
        tiled_forward(fast, x, scale, tile, 32)
        if device.type == "cuda":
            torch.cuda.synchronize()

    def path(tile: int) -> Callable[[list[torch.Tensor]], None]:
        def run(images: list[torch.Tensor]) -> None:
            for fut in [pool.submit(one, x, tile) for x in images]:
                fut.result()
        return run

    with WorkerPool(jobs) as pool:
        times = time_groups({str(t): path(t) for t in tiles}, [group] * rounds)
    mp = w * h * scale * scale / 1e6
    first = times[str(tiles[0])]
    for t in tiles:
        ts = times[str(t)]
        ratio = statistics.median(a / b for a, b in zip(first, ts))
        print(f"{name}: {w}x{h} at x4, tile {t}, overlap 32 ({prec.name}, {jobs} image(s) at a time): "
              f"{mp / statistics.median(ts):.3f} output MP/s (median of {rounds}; {mp / max(ts):.3f}-{mp / min(ts):.3f}), "
              f"{ratio:.2f}x tile {tiles[0]}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--images", type=int, default=6, help="images per measurement, rounded up to whole groups of --jobs (default 6)")
    ap.add_argument("--jobs", type=int, default=0, help="images at once on esr's path (default 0: as esr upscale, 2 on a CPU with 2+ threads)")
    ap.add_argument("--size", type=int, default=256, help="input side in pixels (default 256)")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, mps or auto; a GPU must be present")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--models", default="rrdb,compact", help="comma list of rrdb, compact (empty: none)")
    ap.add_argument("--skip-fp32", action="store_true", help="skip the plain fp32 NCHW baseline")
    ap.add_argument("--tiles", default="", help="comma list of tile sizes (0: whole image) to compare on --photo inputs instead of the speed figures above")
    ap.add_argument("--photo", default="1000x750", help="input size WxH for --tiles (default 1000x750)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds for --tiles (default 3)")
    ap.add_argument("--rss", action="store_true", help="also measure peak memory of esr upscale (slow)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        device = select_device(args.device)
    except EsrError as exc:  # e.g. --device cuda on a machine without a CUDA GPU
        sys.exit(f"bench_upscale: --device {args.device}: {str(exc).removeprefix('device: ')} (use --device cpu)")
    unknown = [k.strip() for k in filter(None, args.models.split(",")) if k.strip() not in ("rrdb", "compact")]
    if unknown:
        ap.error(f"--models: unknown model(s) {', '.join(unknown)}; choose from rrdb, compact")
    jobs = args.jobs or default_jobs(device)
    tiles = [int(t) for t in filter(None, args.tiles.split(","))]
    photo = tuple(int(v) for v in args.photo.lower().split("x"))
    if len(photo) != 2 or min(photo) < 1 or min(tiles, default=0) < 0:
        ap.error("--photo takes WxH and --tiles sizes >= 0 (0: the whole image in one pass)")
    inputs = f"tile sizes {args.tiles} on {args.photo}" if tiles else f"{args.images} image(s) of {args.size}x{args.size}"
    print(f"torch {torch.__version__}, {args.threads} thread(s), device {device}, {inputs}, {jobs} at a time on esr's path", flush=True)
    models = {
        "rrdb": lambda: random_rrdbnet(**RRDB_PARAMS),
        "compact": lambda: SRVGGNetCompact(num_feat=64, num_conv=32, scale=4, act_type="prelu"),
    }
    for key in filter(None, args.models.split(",")):
        torch.manual_seed(0)
        net = models[key.strip()]().eval().requires_grad_(False)
        if tiles:
            bench_tiles(key.strip(), net, tiles, photo, args.rounds, jobs, device, args.precision)
        else:
            bench_model(key.strip(), net, args.size, args.images, jobs, device, args.precision, args.skip_fp32)
    if args.rss:
        bench_rss(args.threads, args.precision)


if __name__ == "__main__":
    main()
