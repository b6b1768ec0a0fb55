"""Where esr's CUDA time goes: forward variants and profiler tables for both generators.

Follow-up of ``gpu_check.py`` (which measures; this one explains)::

    PYTHONPATH=src python3 benchmarks/gpu_profile.py [--side 1024] [--reps 5]

Needs a CUDA GPU: on a machine without one it exits at once with a one-line message (code 2);
``gpu_check.py --dry-run`` is the check that runs on a CPU.

Times (median of ``--reps``, default 5; CUDA events; a ``--side`` x ``--side`` input, default
1024, on the GPU; no host copies unless said): NCHW vs channels_last, fp16; RRDBNet's tail
whole vs in row strips; ``tiled_forward`` whole-image from a CPU tensor (copies included); a
SRVGGNetCompact training step with esr's PReLU vs torch's; the EMA update alone. Then the top
CUDA kernels of each forward.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from esrcli.archs import RRDBNet, SRVGGNetCompact  # noqa: E402
from esrcli.infer.tiled import tiled_forward  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check import cuda_time  # noqa: E402


REPS = 5  # --reps


def t(fn, warmup: int = 2) -> float:
    """Median milliseconds of ``fn`` over ``REPS`` runs on the GPU (CUDA events)."""
    return 1000 * cuda_time(fn, warmup=warmup, reps=REPS)


def top_kernels(fn, n: int = 12) -> str:
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        fn()
        torch.cuda.synchronize()
    return prof.key_averages().table(sort_by="cuda_time_total", row_limit=n, max_name_column_width=60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--side", type=int, default=1024, help="input side in pixels (default 1024)")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions, the median is printed (default 5)")
    args = ap.parse_args()
    if args.side < 16 or args.reps < 1:
        ap.error("--side must be >= 16 and --reps >= 1")
    if not torch.cuda.is_available():
        print("gpu_profile: needs a CUDA GPU (torch sees none here); run it on a GPU machine, "
              "or benchmarks/gpu_check.py --dry-run to check the scripts on a CPU", file=sys.stderr)
        sys.exit(2)
    global REPS
    REPS = args.reps
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    side = args.side
    x_cpu = torch.rand(1, 3, side, side)
    x16 = x_cpu.to(dev, torch.float16)
    x16cl = x16.contiguous(memory_format=torch.channels_last)
    torch.manual_seed(0)
    nets = {
        "compact": SRVGGNetCompact(num_feat=64, num_conv=32, scale=4),
        "rrdb": RRDBNet(num_feat=64, num_block=23, num_grow_ch=32, scale=4),
    }
    for name, net in nets.items():
        net = net.eval().requires_grad_(False)
        nchw = net.to(dev, torch.float16)
        with torch.inference_mode():
            r = {"nchw_fp16": t(lambda: nchw(x16))}
            cl = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
            r["cl_fp16"] = t(lambda: cl(x16cl))
            if isinstance(cl, RRDBNet):
                cl._TAIL_STRIP_ELEMENTS = 1 << 40  # instance attribute: the whole tail at once
                r["cl_fp16_no_strips"] = t(lambda: cl(x16cl))
                nchw._TAIL_STRIP_ELEMENTS = 1 << 40
                r["nchw_fp16_no_strips"] = t(lambda: nchw(x16))
            r["tiled_whole_from_cpu"] = t(lambda: tiled_forward(cl, x_cpu, 4, 0))
            r["tiled_512_from_cpu"] = t(lambda: tiled_forward(cl, x_cpu, 4, 512, 32))
            r["d2h_output_fp32"] = t(lambda: torch.empty(1, 3, 4 * side, 4 * side, device=dev).cpu())
        print(name, {k: round(v, 2) for k, v in r.items()}, "ms", flush=True)
        with torch.inference_mode():
            print(top_kernels(lambda: cl(x16cl)), flush=True)
        del nchw, cl
        torch.cuda.empty_cache()

    # training step, compact, batch 16, bf16 autocast, channels_last
    from esrcli.train.ema import ema_update, make_ema

    for batch in (16,):
        lq = torch.rand(batch, 3, 64, 64, device=dev).contiguous(memory_format=torch.channels_last)
        gt = torch.rand(batch, 3, 256, 256, device=dev).contiguous(memory_format=torch.channels_last)
        res = {}
        for variant in ("esr_prelu", "torch_prelu"):
            torch.manual_seed(0)
            net = SRVGGNetCompact(num_feat=64, num_conv=32, scale=4)
            if variant == "torch_prelu":
                for i, layer in enumerate(net.body):
                    if isinstance(layer, nn.PReLU):
                        stock = nn.PReLU(layer.num_parameters)
                        stock.weight.data.copy_(layer.weight.data)
                        net.body[i] = stock
            net = net.to(dev, memory_format=torch.channels_last).train()
            opt = torch.optim.Adam(net.parameters(), lr=2e-4, fused=True)
            ema = make_ema(net)

            def step() -> None:
                opt.zero_grad(set_to_none=True)
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = F.l1_loss(net(lq), gt)
                loss.backward()
                opt.step()

            res[variant] = t(step)
            res["ema_update"] = t(lambda: ema_update(ema, net, 0.999))
            if variant == "esr_prelu":
                print(top_kernels(step, 10), flush=True)
        print("train compact batch", batch, {k: round(v, 2) for k, v in res.items()}, "ms", flush=True)


if __name__ == "__main__":
    main()
