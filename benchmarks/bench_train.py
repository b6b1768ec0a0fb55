"""Training speed of esr on CPU: the optimised step against a plain PyTorch step, then the full loop.

Figures (one run, ratios measured side by side, interleaved to share the machine's load):

1. Training step of SRVGGNetCompact (num_feat 64, num_conv 32, x4) on a batch of 4 LR patches
   of 64x64 (GT 256x256) with the L1 loss and Adam:
   - baseline: a plain fp32 NCHW PyTorch step (stock ``torch.nn.PReLU``, forward, L1, backward,
     Adam with defaults);
   - esr: :func:`esrcli.train.loop.train_step_net` with the config's precision (bf16 autocast
     where the CPU has native bf16), channels_last, fused Adam, esr's PReLU with a compiled
     one-pass backward (``train.compile_kernels``; ATen's took 20% of the step), plus the
     EMA update; the
     optimiser and EMA updates run on one thread (:func:`esrcli.train.cpu.single_thread_on_cpu`).
2. The whole ``esr train-net`` loop (data loading, second-order degradation at Real-ESRGAN's
   400 -> 256 crops, pool, step, EMA) through :func:`esrcli.train.loop.train`.

Usage::

    python benchmarks/bench_train.py                 # 2 threads, ../shared/data/train
    python benchmarks/bench_train.py --rounds 5 --loop-iters 8
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from esrcli.archs import SRVGGNetCompact
from esrcli.archs.srvgg import compiled_prelu_backward_error
from esrcli.config import from_dict
from esrcli.config.train import TrainNetConfig
from esrcli.train import build
from esrcli.train.ema import ema_update, make_ema
from esrcli.train.loop import Nets, Optim, train, train_step_net

ROOT = Path(__file__).resolve().parents[1]


def plain_step_fn(batch: int, lq_size: int):
    torch.manual_seed(0)
    net = SRVGGNetCompact(num_feat=64, num_conv=32, scale=4)
    for i, layer in enumerate(net.body):  # stock torch.nn.PReLU, not esr's faster-backward one
        if isinstance(layer, torch.nn.PReLU):
            stock = torch.nn.PReLU(layer.num_parameters)
            stock.weight.data.copy_(layer.weight.data)
            net.body[i] = stock
    opt = torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.9, 0.99))
    lq, gt = torch.rand(batch, 3, lq_size, lq_size), torch.rand(batch, 3, 4 * lq_size, 4 * lq_size)

    def step() -> None:
        opt.zero_grad()
        loss = F.l1_loss(net(lq), gt)
        loss.backward()
        opt.step()

    return step


def esr_step_fn(batch: int, lq_size: int, precision: str, compile: bool = False):
    cfg = from_dict(TrainNetConfig, {"train": {"precision": precision, "channels_last": True, "batch_size": batch,
                                               "pool_size": 0, "compile": compile}})
    prec = build.select_precision(cfg.train.precision, torch.device("cpu"))
    net = build.build_net_g(cfg.model, 0).to(memory_format=torch.channels_last)
    build.use_compiled_kernels(net, cfg.train, torch.device("cpu"))
    nets = Nets(net, make_ema(net), forward_g=torch.compile(net) if compile else None)
    opts = build.build_optimizers(net, None, cfg)
    optim = Optim(opts["opt_g"], opts["sched_g"], torch.amp.GradScaler("cpu", enabled=prec.use_scaler))
    cl = torch.channels_last
    b = {"lq": torch.rand(batch, 3, lq_size, lq_size).contiguous(memory_format=cl)}
    b["gt"] = b["gt_usm"] = torch.rand(batch, 3, 4 * lq_size, 4 * lq_size).contiguous(memory_format=cl)

    def step() -> None:
        train_step_net(nets, optim, [b], cfg, prec)
        ema_update(nets.net_g_ema, nets.net_g, cfg.train.ema_decay)

    return step, prec.name


def bench_steps(rounds: int, reps: int, batch: int, lq_size: int, precision: str, compile: bool) -> None:
    fns = {"plain": plain_step_fn(batch, lq_size)}
    fns["esr"], prec_name = esr_step_fn(batch, lq_size, precision)
    if compile:
        fns["compiled"] = esr_step_fn(batch, lq_size, precision, compile=True)[0]
    for f in fns.values():  # warm-up (allocator, oneDNN primitive caches, compilation)
        f()
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, f in fns.items():
            t = time.perf_counter()
            for _ in range(reps):
                f()
            times[name].append((time.perf_counter() - t) / reps)
    tp, te = statistics.median(times["plain"]), statistics.median(times["esr"])
    # Paired ratios: each round times plain and esr back to back, so a slow stretch of the
    # (shared) machine affects both sides of a ratio; their median is steadier than a ratio of
    # medians taken over different moments.
    paired = sorted(p / e for p, e in zip(times["plain"], times["esr"]))
    print(f"step, SRVGGNetCompact 64/32 x4, batch {batch} x {lq_size}x{lq_size} LR, L1, {torch.get_num_threads()} threads:")
    print(f"  plain fp32 NCHW : {1 / tp:6.3f} it/s  {batch / tp:6.2f} patches/s")
    error = compiled_prelu_backward_error()
    kernels = "eager PReLU backward" if error else "compiled PReLU backward"
    print(f"  esr ({prec_name}, channels_last, {kernels}, fused 1-thread Adam, EMA): {1 / te:6.3f} it/s  {batch / te:6.2f} patches/s")
    if error:
        print(f"  (compiled PReLU backward unavailable: {error})")
    print(f"  speed-up        : {statistics.median(paired):.2f}x  (median of {rounds} paired rounds of {reps} steps;"
          f" rounds {paired[0]:.2f}-{paired[-1]:.2f}x; ratio of the medians {tp / te:.2f}x)")
    if compile:
        tc = statistics.median(times["compiled"])
        pc = statistics.median(p / c for p, c in zip(times["plain"], times["compiled"]))
        print(f"  esr + train.compile: {1 / tc:6.3f} it/s  {batch / tc:6.2f} patches/s  speed-up {pc:.2f}x (paired)")


def bench_loop(data: Path, iters: int, batch: int, workers: int, precision: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = from_dict(TrainNetConfig, {
            "model": {"num_feat": 64, "num_conv": 32},
            "data": {"folders": [str(data)], "gt_size": 256, "crop_size": 400, "num_workers": workers},
            "train": {"total_iter": iters + 2, "batch_size": batch, "pool_size": 4 * batch, "precision": precision,
                      "checkpoint_interval": 10**6, "log_interval": 10**6},
        })
        stamps: list[float] = []
        res = train(cfg, Path(tmp) / "run", on_step=lambda s: stamps.append(time.perf_counter()))
    dt = (stamps[-1] - stamps[1]) / (len(stamps) - 2)  # skip the first two iterations (warm-up)
    print(f"full loop (data + degradation 400->256 + pool + {res.precision} step + EMA), batch {batch}, {workers} workers:")
    print(f"  {1 / dt:6.3f} it/s  {batch / dt:6.2f} patches/s  (over {len(stamps) - 2} iterations)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lq-size", type=int, default=64)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--compile", action="store_true", help="also time train.compile (torch.compile, needs a C++ compiler)")
    ap.add_argument("--loop-iters", type=int, default=6, help="0 skips the full-loop figure")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "train")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads; figures under the machine's current load")
    bench_steps(args.rounds, args.reps, args.batch, args.lq_size, args.precision, args.compile)
    if args.loop_iters > 0:
        if not args.data.is_dir():
            print(f"full loop skipped: {args.data} not found")
        else:
            bench_loop(args.data, args.loop_iters, args.batch, args.workers, args.precision)


if __name__ == "__main__":
    main()
