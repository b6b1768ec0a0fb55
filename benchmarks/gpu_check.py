"""esr on a CUDA GPU: correctness against the CPU and speed against plain PyTorch, in one run.

Called by ``benchmarks/gpu_check.sh`` (which also runs the CUDA tests and a ``torchrun``
training with kill + resume); runs alone too::

    PYTHONPATH=src python3 benchmarks/gpu_check.py --out gpu-out [--data DIR] [--sections LIST]

Without a CUDA GPU it stops at once with a one-line message. ``--dry-run`` checks the script
itself on the CPU in seconds: tiny sizes (``--side`` 64 unless given, 144x96 for ``match``,
16 -> 64 training patches, batch 2), one timed repetition, only the compact model in ``match``
and ``upscale`` (RRDBNet in fp16 on a CPU takes minutes), no ``env`` section; its figures mean
nothing.

Sections (each in its own ``try``: a failure is recorded and the next section runs):

1. ``env``: GPU, torch/CUDA versions, and the card's ceilings measured here: dense fp16,
   bf16 and fp32 matrix products (8192^3, median of 10), device-to-device copy bandwidth.
2. ``match``: the same image through esr's tiled path on the CPU in fp32 and on the GPU in
   fp32, fp16 and bf16 (tile 96, so tiles are blended): PSNR of each against the CPU.
3. ``upscale``: output MP/s of :func:`esrcli.infer.tiled.tiled_forward` (channels_last,
   fp16 and bf16, tile 512 and 1024) on a 1024x1024 input, against a plain fp32 NCHW forward
   of the same network on the same input in the same run (PyTorch defaults: cuDNN may use
   TF32; and strict fp32 with TF32 off); achieved conv TFLOP/s (counted by hooks) against
   the measured fp16 matrix peak; peak GPU memory.
4. ``train``: training-step throughput (patches/s, LQ 64x64 -> GT 256x256) of
   :func:`esrcli.train.loop.train_step_net` (bf16 autocast, channels_last, fused Adam, EMA)
   against a plain fp32 NCHW step (stock modules, Adam), for SRVGGNetCompact 64/32 and
   RRDBNet 64/23/32 x4 at batch 16 and 48.
5. ``degrade``: second-order degradation pairs/s (Real-ESRGAN's 400 -> 256 crops, USM,
   batch 48) on the GPU (libjpeg round trips through the host, and ``jpeg_codec = "torch"``)
   and on the CPU (all its threads) in the same run.
6. ``loop``: the whole ``esr train-net`` loop (data loading, degradation, pool, step, EMA)
   on the GPU for a few iterations from ``--data``.

Writes ``OUT/gpu_check.json`` (all numbers) and ``OUT/gpu_check.md`` (tables), and prints
the tables last.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from esrcli.archs import RRDBNet, SRVGGNetCompact  # noqa: E402
from esrcli.infer.device import prepare_model  # noqa: E402
from esrcli.infer.tiled import tiled_forward  # noqa: E402

RESULTS: dict[str, Any] = {"sections": {}, "errors": {}}
DATASHEET_FP16_DENSE = 989.0  # TFLOP/s, H100/H200 SXM dense fp16/bf16 (vendor datasheet)


def log(msg: str) -> None:
    print(msg, flush=True)


DEV = "cuda"  # "cpu" with --dry-run: the script's own check on a machine without a GPU


def sync() -> None:
    if DEV == "cuda":
        torch.cuda.synchronize()


def reset_peak() -> None:
    if DEV == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_gib() -> float:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if DEV == "cuda" else 0.0


def empty_cache() -> None:
    if DEV == "cuda":
        torch.cuda.empty_cache()


def cuda_time(fn: Callable[[], Any], warmup: int = 2, reps: int = 5) -> float:
    """Median seconds of ``fn`` (GPU work synchronised), after ``warmup`` calls.

    With ``--dry-run`` (``DEV`` is ``"cpu"``) one warm-up and one timed call: the script's own
    check, not a measurement."""
    if DEV != "cuda":
        warmup, reps = min(warmup, 1), 1
    for _ in range(warmup):
        fn()
    sync()
    times = []
    if DEV != "cuda":
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000.0)
    return statistics.median(times)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float().clamp(0, 1) - b.float().clamp(0, 1)) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def conv_flops(net: nn.Module, x: torch.Tensor) -> float:
    """Multiply-adds x 2 of every Conv2d in one forward of ``x`` (counted with hooks)."""
    total = [0.0]

    def hook(mod: nn.Conv2d, inp, out) -> None:
        k = mod.kernel_size[0] * mod.kernel_size[1]
        total[0] += 2.0 * out.numel() * (mod.in_channels // mod.groups) * k

    hooks = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():  # NCHW float32: the plain module path, every conv through its module
        net(x.contiguous())
    for h in hooks:
        h.remove()
    return total[0]


# --------------------------------------------------------------------------- models


def load_models(x4plus: str | None) -> dict[str, tuple[nn.Module, str]]:
    """``{"rrdb": (net, source), "compact": (net, source)}``, float32 on the CPU.

    RRDBNet x4 64/23/32: the embedded ``realesrgan-x4plus`` if esr has it, else ``--x4plus``,
    else random weights. SRVGGNetCompact 64/32 x4: esr's embedded compact model.
    """
    from esrcli.weights import load_model

    out: dict[str, tuple[nn.Module, str]] = {}
    for spec in ("realesrgan-x4plus", x4plus):
        if not spec:
            continue
        try:
            net, _ = load_model(spec)
            out["rrdb"] = (net.float().eval(), str(spec))
            break
        except Exception as exc:  # noqa: BLE001 - try the next source
            log(f"rrdb: {spec}: {exc}")
    if "rrdb" not in out:
        torch.manual_seed(0)
        out["rrdb"] = (RRDBNet(num_in_ch=3, num_out_ch=3, scale=4, num_feat=64, num_block=23, num_grow_ch=32).eval(), "random")
    for spec in ("esr-general-x4-net", "esr-general-x4"):
        try:
            net, info = load_model(spec)
            if isinstance(net, SRVGGNetCompact):
                out["compact"] = (net.float().eval(), spec)
                break
        except Exception as exc:  # noqa: BLE001
            log(f"compact: {spec}: {exc}")
    if "compact" not in out:
        torch.manual_seed(0)
        out["compact"] = (SRVGGNetCompact(num_feat=64, num_conv=32, scale=4).eval(), "random")
    return out


def to_device(net: nn.Module, dtype: torch.dtype, channels_last: bool) -> nn.Module:
    import copy

    net = copy.deepcopy(net).to(DEV)
    if channels_last:
        return prepare_model(net, torch.device(DEV), dtype)
    return net.eval().requires_grad_(False).to(dtype=dtype)


def photo_input(side_w: int, side_h: int) -> torch.Tensor:
    """A photo-like ``(1, 3, H, W)`` input: the example photo resized (real content)."""
    from esrcli.data.imageio import read_image, to_tensor

    img = read_image(ROOT / "examples" / "budgie_lq.png")
    x = to_tensor(img.color)
    return F.interpolate(x, size=(side_h, side_w), mode="bicubic", align_corners=False).clamp(0, 1)


# --------------------------------------------------------------------------- sections


def section_env() -> dict[str, Any]:
    p = torch.cuda.get_device_properties(0)
    env = {
        "gpu": torch.cuda.get_device_name(0),
        "capability": f"{p.major}.{p.minor}",
        "sms": p.multi_processor_count,
        "memory_gib": round(p.total_memory / 2**30, 1),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "cudnn_allow_tf32_default": torch.backends.cudnn.allow_tf32,
    }
    n = 8192
    for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16), ("fp32_tf32_off", torch.float32)):
        a = torch.randn(n, n, device="cuda", dtype=dtype)
        b = torch.randn(n, n, device="cuda", dtype=dtype)
        prev = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        t = cuda_time(lambda: a @ b, warmup=3, reps=10)
        torch.backends.cuda.matmul.allow_tf32 = prev
        env[f"matmul_{name}_tflops"] = round(2 * n**3 / t / 1e12, 1)
        del a, b
    buf = torch.empty(2 * 2**30 // 4, device="cuda", dtype=torch.float32).uniform_()
    dst = torch.empty_like(buf)
    t = cuda_time(lambda: dst.copy_(buf), warmup=2, reps=10)
    env["copy_tb_s"] = round(2 * buf.numel() * 4 / t / 1e12, 2)
    del buf, dst
    empty_cache()
    return env


def section_match(models: dict[str, tuple[nn.Module, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    x = photo_input(288, 192) if DEV == "cuda" else photo_input(144, 96)  # still two tiles, blended
    for name, (net, src) in models.items():
        with torch.inference_mode():  # same tiling on both sides: only the device differs
            ref = tiled_forward(net.eval(), x, 4, tile=96, tile_overlap=24)
        row: dict[str, Any] = {"weights": src}
        for dname, dtype in (("fp32", torch.float32), ("fp16", torch.float16), ("bf16", torch.bfloat16)):
            g = to_device(net, dtype, channels_last=True)
            sr = tiled_forward(g, x, 4, tile=96, tile_overlap=24)
            row[f"psnr_{dname}_vs_cpu"] = round(psnr(sr, ref), 2)
            row[f"finite_{dname}"] = bool(torch.isfinite(sr).all())
            del g
        out[name] = row
        empty_cache()
    return out


def section_upscale(models: dict[str, tuple[nn.Module, str]], side: int, peak_fp16: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    x = photo_input(side, side)
    out_mp = (side * 4) ** 2 / 1e6
    for name, (net, _) in models.items():
        rows: dict[str, Any] = {}
        flops = conv_flops(net.eval(), torch.rand(1, 3, 64, 64)) * (side / 64) ** 2  # whole image, no overlap
        # Plain fp32 NCHW forward of the whole image, PyTorch defaults, then with TF32 off.
        plain = to_device(net, torch.float32, channels_last=False)
        xd = x.to(DEV)
        for label, tf32 in (("plain_fp32_default", torch.backends.cudnn.allow_tf32), ("plain_fp32_strict", False)):
            prev = torch.backends.cudnn.allow_tf32
            torch.backends.cudnn.allow_tf32 = tf32
            reset_peak()

            def run_plain() -> None:
                with torch.inference_mode():
                    plain(xd)

            t = cuda_time(run_plain, warmup=1, reps=3)
            torch.backends.cudnn.allow_tf32 = prev
            rows[label] = {"s": round(t, 4), "mp_s": round(out_mp / t, 2), "tflops": round(flops / t / 1e12, 1),
                           "peak_gib": peak_gib()}
        del plain, xd
        empty_cache()
        for dname, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
            g = to_device(net, dtype, channels_last=True)
            for tile, acc in ((512, "auto"), (1024, "auto"), (512, "cpu")):
                if acc == "cpu" and dtype != torch.float16:
                    continue
                reset_peak()

                def run_esr() -> None:
                    tiled_forward(g, x, 4, tile=tile, tile_overlap=32, accumulate=acc)

                t = cuda_time(run_esr, warmup=1, reps=3)
                rows[f"esr_{dname}_tile{tile}" + ("_cpu_blend" if acc == "cpu" else "")] = {
                    "s": round(t, 4),
                    "mp_s": round(out_mp / t, 2),
                    "tflops": round(flops / t / 1e12, 1),
                    "pct_fp16_peak": round(100 * flops / t / 1e12 / peak_fp16, 1),
                    "peak_gib": peak_gib(),
                    "x_plain_default": round(rows["plain_fp32_default"]["s"] / t, 2),
                    "x_plain_strict": round(rows["plain_fp32_strict"]["s"] / t, 2),
                }
            del g
            empty_cache()
        out[name] = rows
    return out


def _train_cfg(arch: str, batch: int):
    from esrcli.config import from_dict
    from esrcli.config.train import TrainNetConfig

    model = {"arch": arch, "scale": 4, "num_feat": 64}
    model.update({"num_conv": 32} if arch == "SRVGGNetCompact" else {"num_block": 23, "num_grow_ch": 32})
    return from_dict(TrainNetConfig, {"model": model, "train": {"batch_size": batch, "precision": "bf16", "device": DEV}})


def section_train(batches: tuple[int, ...], lq_side: int = 64) -> dict[str, Any]:
    from esrcli.train import build
    from esrcli.train.ema import ema_update, make_ema
    from esrcli.train.loop import Nets, Optim, train_step_net

    out: dict[str, Any] = {}
    dev = torch.device(DEV)
    for arch, key in (("SRVGGNetCompact", "compact"), ("RRDBNet", "rrdb")):
        rows: dict[str, Any] = {}
        for batch in batches:
            cfg = _train_cfg(arch, batch)
            lq = torch.rand(batch, 3, lq_side, lq_side, device=dev)
            gt = torch.rand(batch, 3, 4 * lq_side, 4 * lq_side, device=dev)
            # plain: fp32 NCHW, stock modules (PReLU from torch), Adam with defaults, PyTorch defaults
            torch.manual_seed(0)
            plain = build.build_net_g(cfg.model, 0)
            if isinstance(plain, SRVGGNetCompact):
                for i, layer in enumerate(plain.body):
                    if isinstance(layer, nn.PReLU):
                        stock = nn.PReLU(layer.num_parameters)
                        stock.weight.data.copy_(layer.weight.data)
                        plain.body[i] = stock
            plain = plain.to(dev).train()
            opt = torch.optim.Adam(plain.parameters(), lr=2e-4, betas=(0.9, 0.99))

            def plain_step() -> None:
                opt.zero_grad()
                F.l1_loss(plain(lq), gt).backward()
                opt.step()

            t_plain = cuda_time(plain_step, warmup=2, reps=5)
            del plain, opt
            # esr: train_step_net with bf16 autocast, channels_last, fused Adam, EMA
            net_g = build.build_net_g(cfg.model, 0).to(dev, memory_format=torch.channels_last).train()
            nets = Nets(net_g, make_ema(net_g))
            opts = build.build_optimizers(nets.net_g, None, cfg)
            prec = build.select_precision("bf16", dev)
            optim = Optim(opts["opt_g"], opts["sched_g"], torch.amp.GradScaler(DEV, enabled=False))
            fmt = torch.channels_last
            b = {"lq": lq.contiguous(memory_format=fmt), "gt": gt.contiguous(memory_format=fmt), "gt_usm": gt.contiguous(memory_format=fmt)}

            def esr_step() -> None:
                train_step_net(nets, optim, [b], cfg, prec)
                ema_update(nets.net_g_ema, nets.net_g, 0.999)

            reset_peak()
            t_esr = cuda_time(esr_step, warmup=2, reps=5)
            rows[f"batch{batch}"] = {
                "plain_fp32_patches_s": round(batch / t_plain, 1),
                "esr_bf16_patches_s": round(batch / t_esr, 1),
                "x_plain": round(t_plain / t_esr, 2),
                "esr_peak_gib": peak_gib(),
            }
            del nets, optim, opts, net_g
            empty_cache()
        out[key] = rows
    return out


def section_degrade(batch: int) -> dict[str, Any]:
    from esrcli.config.degrade import DegradeConfig
    from esrcli.degrade import synthesize_pairs

    from esrcli.config import from_dict

    configs = {
        "libjpeg": DegradeConfig(),
        "torch": from_dict(DegradeConfig, {"jpeg_codec": "torch"}),
        "perbatch-libjpeg": from_dict(DegradeConfig, {"per_batch_resize": True}),
        "perbatch-torch": from_dict(DegradeConfig, {"per_batch_resize": True, "jpeg_codec": "torch"}),
    }
    x = photo_input(400, 400).repeat(batch, 1, 1, 1)
    out: dict[str, Any] = {"batch": batch, "cpu_threads": torch.get_num_threads()}
    from esrcli.degrade import pipeline

    threads = pipeline.GPU_DEGRADE_THREADS
    runs = ("cuda", "cuda_threads8", "cuda_torchjpeg", "cuda_perbatch", "cuda_perbatch_torchjpeg", "cpu") if DEV == "cuda" else ("cpu", "cpu_torchjpeg", "cpu_perbatch")
    for dev in runs:
        pipeline.GPU_DEGRADE_THREADS = 8 if dev == "cuda_threads8" else threads
        gen = torch.Generator().manual_seed(0)
        xd = x.to(dev.split("_")[0])
        codec = "torch" if dev.endswith("torchjpeg") else "libjpeg"
        cfg = configs[("perbatch-" if "_perbatch" in dev else "") + codec]

        def run() -> None:
            synthesize_pairs(xd, cfg, gen, gt_usm=True)

        run()
        if dev.startswith("cuda"):
            t = cuda_time(run, warmup=1, reps=3)
        else:
            ts = []
            for _ in range(2):
                t0 = time.perf_counter()
                run()
                ts.append(time.perf_counter() - t0)
            t = min(ts)
        out[f"{dev}_pairs_s"] = round(batch / t, 1)
    pipeline.GPU_DEGRADE_THREADS = threads
    out["gpu_threads"] = threads
    return out


def section_loop(data: Path, iters: int, batch: int) -> dict[str, Any]:
    from esrcli.config import from_dict
    from esrcli.config.train import TrainNetConfig
    from esrcli.train.loop import train

    out: dict[str, Any] = {}
    for arch in ("SRVGGNetCompact",):
        model = {"arch": arch, "scale": 4, "num_feat": 64, "num_conv": 32}
        cfg = from_dict(TrainNetConfig, {
            "model": model,
            "data": {"folders": [str(data)], "gt_size": 256, "crop_size": 400, "num_workers": 4},
            "train": {"batch_size": batch, "total_iter": iters, "pool_size": 4 * batch, "device": DEV,
                      "checkpoint_interval": 10**6, "log_interval": 10**6},
        })
        times: list[float] = []
        with tempfile.TemporaryDirectory() as tmp:
            res = train(cfg, Path(tmp) / "run", on_step=lambda s: times.append(time.monotonic()))
        steady = [b - a for a, b in zip(times[2:], times[3:])]
        it_s = 1 / statistics.median(steady) if steady else res.iters_per_s
        out[arch] = {"iters": res.iteration, "batch": batch, "precision": res.precision, "it_s": round(it_s, 2),
                     "patches_s": round(it_s * batch, 1), "loss": {k: round(v, 4) for k, v in res.losses.items()}}
    return out


# --------------------------------------------------------------------------- report


def markdown(r: dict[str, Any]) -> str:
    s = r["sections"]
    lines = ["# esr GPU check", ""]
    env = s.get("env")
    if env:
        lines += [f"{env['gpu']} (sm {env['capability']}, {env['sms']} SMs, {env['memory_gib']} GiB), torch {env['torch']}, "
                  f"CUDA {env['cuda']}, cuDNN {env['cudnn']}. Measured: fp16 matmul {env['matmul_fp16_tflops']} TFLOP/s, "
                  f"bf16 {env['matmul_bf16_tflops']}, fp32 (TF32 off) {env['matmul_fp32_tf32_off_tflops']}; "
                  f"copy {env['copy_tb_s']} TB/s.", ""]
    m = s.get("match")
    if m:
        lines += ["## Same image out of CUDA as out of the CPU (PSNR dB vs CPU fp32, tile 96)", "",
                  "| model | weights | fp32 | fp16 | bf16 |", "|---|---|---|---|---|"]
        for name, row in m.items():
            lines.append(f"| {name} | {row['weights']} | {row['psnr_fp32_vs_cpu']} | {row['psnr_fp16_vs_cpu']} | {row['psnr_bf16_vs_cpu']} |")
        lines.append("")
    u = s.get("upscale")
    if u:
        lines += [f"## Upscale x4, {r['args']['side']}x{r['args']['side']} input (output MP/s)", "",
                  "| model | path | s | MP/s | TFLOP/s | % fp16 peak | x plain (default) | x plain (strict fp32) | peak GiB |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, rows in u.items():
            for label, v in rows.items():
                lines.append(f"| {name} | {label} | {v['s']} | {v['mp_s']} | {v['tflops']} | {v.get('pct_fp16_peak', '')} | "
                             f"{v.get('x_plain_default', '')} | {v.get('x_plain_strict', '')} | {v['peak_gib']} |")
        lines.append("")
    t = s.get("train")
    if t:
        lines += ["## Training step (LQ 64 -> GT 256, patches/s)", "",
                  "| model | batch | plain fp32 | esr bf16 | x plain | esr peak GiB |", "|---|---|---|---|---|---|"]
        for name, rows in t.items():
            for label, v in rows.items():
                lines.append(f"| {name} | {label[5:]} | {v['plain_fp32_patches_s']} | {v['esr_bf16_patches_s']} | {v['x_plain']} | {v['esr_peak_gib']} |")
        lines.append("")
    d = s.get("degrade")
    if d:
        lines += [f"## Degradation (400 -> 256 crops, batch {d['batch']})", "",
                  f"GPU {d.get('cuda_pairs_s')} pairs/s ({d.get('gpu_threads')} thread(s); on 8 threads: {d.get('cuda_threads8_pairs_s')}; "
                  f"with jpeg_codec = \"torch\": {d.get('cuda_torchjpeg_pairs_s')}; with per_batch_resize, the batch at once: "
                  f"{d.get('cuda_perbatch_pairs_s')}, and with the torch codec {d.get('cuda_perbatch_torchjpeg_pairs_s')}); "
                  f"CPU ({d['cpu_threads']} threads) {d['cpu_pairs_s']} pairs/s"
                  + (f" (torch codec: {d['cpu_torchjpeg_pairs_s']})" if "cpu_torchjpeg_pairs_s" in d else "") + ".", ""]
    lp = s.get("loop")
    if lp:
        lines += ["## Whole train-net loop on the GPU", ""]
        for name, v in lp.items():
            lines.append(f"{name}: batch {v['batch']}, {v['precision']}, {v['it_s']} it/s = {v['patches_s']} patches/s ({v['iters']} iterations).")
        lines.append("")
    if r["errors"]:
        lines += ["## Errors", ""] + [f"- {k}: {v.splitlines()[-1]}" for k, v in r["errors"].items()] + [""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="gpu-out")
    ap.add_argument("--data", default="", help="folder of HR images for the train-net loop section")
    ap.add_argument("--x4plus", default="", help="RealESRGAN_x4plus file when esr has none embedded")
    ap.add_argument("--side", type=int, default=None, help="upscale input side (default 1024; 64 with --dry-run)")
    ap.add_argument("--sections", default="env,match,upscale,train,degrade,loop")
    ap.add_argument("--loop-iters", type=int, default=40)
    ap.add_argument("--dry-run", action="store_true", help="check this script on the CPU (tiny sizes, no env section; seconds)")
    args = ap.parse_args()
    if args.side is None:
        args.side = 64 if args.dry_run else 1024
    if args.side < 16:
        ap.error("--side must be at least 16")
    unknown = set(args.sections.split(",")) - {"env", "match", "upscale", "train", "degrade", "loop"}
    if unknown:
        ap.error(f"--sections: unknown {', '.join(sorted(unknown))}; choose from env,match,upscale,train,degrade,loop")
    if args.data and not Path(args.data).is_dir():
        ap.error(f"--data {args.data}: no such folder (a folder of HR images for the loop section)")
    global DEV
    if args.dry_run:
        DEV = "cpu"
    elif not torch.cuda.is_available():
        sys.exit("gpu_check: torch sees no CUDA GPU; run it on a GPU machine, or pass --dry-run to check the script on the CPU")
    torch.backends.cudnn.benchmark = True
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    RESULTS["args"] = vars(args)
    wanted = args.sections.split(",")
    models = load_models(args.x4plus or None)
    RESULTS["weights"] = {k: v[1] for k, v in models.items()}

    def run(name: str, fn: Callable[[], Any]) -> None:
        if name not in wanted:
            return
        t0 = time.monotonic()
        log(f"== {name}")
        try:
            RESULTS["sections"][name] = fn()
            log(json.dumps(RESULTS["sections"][name]))
        except Exception:  # noqa: BLE001 - record and go on
            RESULTS["errors"][name] = traceback.format_exc()
            log(RESULTS["errors"][name])
        RESULTS.setdefault("seconds", {})[name] = round(time.monotonic() - t0, 1)
        (out / "gpu_check.json").write_text(json.dumps(RESULTS, indent=1))
        empty_cache()

    if DEV == "cuda":
        run("env", section_env)
    peak = RESULTS["sections"].get("env", {}).get("matmul_fp16_tflops") or DATASHEET_FP16_DENSE
    small = DEV != "cuda"
    fwd_models = {"compact": models["compact"]} if small else models  # dry run: RRDBNet fp16 on a CPU is slow
    run("match", lambda: section_match(fwd_models))
    run("upscale", lambda: section_upscale(fwd_models, args.side, peak))
    run("train", lambda: section_train((2,) if small else (16, 48), 16 if small else 64))
    run("degrade", lambda: section_degrade(2 if small else 48))
    if args.data:
        run("loop", lambda: section_loop(Path(args.data), args.loop_iters, 2 if small else 48))
    md = markdown(RESULTS)
    (out / "gpu_check.md").write_text(md + "\n")
    print(md)
    print("seconds per section:", RESULTS.get("seconds"))


if __name__ == "__main__":
    main()
