"""SR trained on PDM pairs vs on second-order pairs, scored on a synthetic domain's true pairs.

Needs the domain and the PDM of ``benchmarks/pdm_recovery.py`` (``--domain OUT/domain``,
``--pdm OUT/run/pdm.safetensors``). Trains the same small SRVGGNetCompact twice with
``esr train-net``'s library loop for ``--time`` seconds each: once on pairs from the learned
PDM (``[degrade] source = "pdm"``), once on Real-ESRGAN's second-order pairs (defaults), both
from the HR half. Scores PSNR_Y (BasicSR conventions, crop border = scale) on the central
256x256 HR region of ``--pairs`` images of the other half against their true LR images (the
LR domain, made with the known kernel and noise).

With ``--joint RUN`` it also scores the ``net_g_ema.safetensors`` of a ``train-pdm`` run with
an ``[sr]`` table (joint PDM-SR; ``benchmarks/pdm_recovery.py --set sr.model.num_feat=32 ...``).

The two runs go to ``OUT/pdm`` and ``OUT/second-order`` (``--out``, default
``/tmp/pdm_sr_compare``); the figures to ``OUT/result.json`` (``result_pdm.json`` etc. with
``--only``). A run folder left by an earlier call with the same ``--out`` is not reused
silently: the script stops with a one-line error before training anything. Pass ``--resume``
to continue those runs for another ``--time`` seconds each (the scores then belong to the
longer training), or choose another ``--out``. Missing ``--domain``/``--lr-dir``/``--pdm``
paths are one-line errors too.

Usage::

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/pdm_sr_compare.py --domain /tmp/pdm_bench/domain \\
        --lr-dir /tmp/pdm_bench/domain/lr_s2.0_1.2_t120.0_n5.0_x4 --pdm /tmp/pdm_bench/run/pdm.safetensors --time 420
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from esrcli.config.loader import from_dict  # noqa: E402
from esrcli.config.train import TrainNetConfig  # noqa: E402
from esrcli.data.imageio import read_image  # noqa: E402
from esrcli.errors import EsrError  # noqa: E402
from esrcli.metrics.psnr_ssim import psnr  # noqa: E402
from esrcli.train.loop import train  # noqa: E402
from esrcli.weights import load_model  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "train"


def score(model_path: Path, pairs: list[tuple[Path, Path]], scale: int) -> float:
    net, _ = load_model(model_path, device="cpu")
    vals = []
    for hr_f, lr_f in pairs:
        hr = read_image(hr_f).color
        lr = read_image(lr_f).color
        h, w = lr.shape[:2]
        s = 64  # LR side of the scored region
        t, l = (h - s) // 2, (w - s) // 2
        lq = torch.from_numpy(np.ascontiguousarray(lr[t : t + s, l : l + s])).permute(2, 0, 1)[None]
        with torch.no_grad():
            sr = net(lq).clamp(0, 1)[0].permute(1, 2, 0).numpy()
        gt = hr[t * scale : (t + s) * scale, l * scale : (l + s) * scale]
        vals.append(psnr(np.round(sr * 255), np.round(gt * 255), crop_border=scale, test_y_channel=True))
    return float(np.mean(vals))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domain", type=Path, required=True, help="OUT/domain of pdm_recovery.py (hr/ = the HR half)")
    ap.add_argument("--lr-dir", type=Path, required=True, help="the LR domain folder (degraded other half)")
    ap.add_argument("--pdm", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("/tmp/pdm_sr_compare"))
    ap.add_argument("--time", type=float, default=420.0, help="seconds of training for each model")
    ap.add_argument("--pairs", type=int, default=24)
    ap.add_argument("--only", choices=["pdm", "second-order", "none"], default=None, help="train only one (none: score --joint only)")
    ap.add_argument("--joint", type=Path, default=None, help="a train-pdm run folder with [sr]: score its net_g_ema.safetensors")
    ap.add_argument("--resume", action="store_true",
                    help="continue the runs an earlier call left in --out (another --time seconds each) instead of stopping")
    args = ap.parse_args()

    def fail(msg: str) -> None:
        sys.exit(f"pdm_sr_compare: {msg}")

    sources = [s for s in ("pdm", "second-order") if not args.only or s == args.only]
    if not (args.domain / "hr").is_dir():
        fail(f"--domain {args.domain}: no hr/ folder in it (pass the OUT/domain that benchmarks/pdm_recovery.py made)")
    if not args.lr_dir.is_dir():
        fail(f"--lr-dir {args.lr_dir}: no such folder (pass the OUT/domain/lr_* folder that benchmarks/pdm_recovery.py made)")
    if "pdm" in sources and not args.pdm.is_file():
        fail(f"--pdm {args.pdm}: no such file (pass the pdm.safetensors of a benchmarks/pdm_recovery.py run)")
    if args.joint is not None and not (args.joint / "net_g_ema.safetensors").is_file():
        fail(f"--joint {args.joint}: no net_g_ema.safetensors in it (pass a finished train-pdm run folder with [sr])")
    earlier = [str(args.out / s) for s in sources if (args.out / s).is_dir() and any((args.out / s).iterdir())]
    if earlier and not args.resume:
        fail(f"{', '.join(earlier)}: an earlier run is there; pass --resume to continue it, or choose another --out")
    base = {
        "model": {"arch": "SRVGGNetCompact", "num_feat": 32, "num_conv": 8},
        "data": {"folders": [str(args.domain / "hr")], "gt_size": 128, "crop_size": 160, "num_workers": 0},
        "train": {"total_iter": 100000, "batch_size": 8, "pool_size": 0, "checkpoint_interval": 100000, "log_interval": 50,
                  "precision": "fp32", "compile_kernels": False, "seed": 0, "lr": 5e-4, "ema_decay": 0.99, "device": "cpu"},
    }
    lr_files = sorted(args.lr_dir.iterdir())
    pairs = [(DATA / f.name, f) for f in lr_files if f.name.startswith("photo_") and (DATA / f.name).is_file()][: args.pairs]
    if not pairs:
        fail(f"--lr-dir {args.lr_dir}: no photo_* file with its HR original in {DATA}")
    result = {"time_per_model_s": args.time, "threads": torch.get_num_threads(), "pairs": len(pairs)}
    for folder in earlier:
        print(f"pdm_sr_compare: --resume: continuing the earlier run in {folder} for another {args.time:g} s", file=sys.stderr)
    for source in sources:
        deg = {"source": source, "pdm": str(args.pdm)} if source == "pdm" else {}
        cfg = from_dict(TrainNetConfig, {**base, "degrade": deg})
        try:
            res = train(cfg, args.out / source, time_limit=args.time)
        except EsrError as exc:
            fail(f"{exc}" + (f" ({exc.hint})" if exc.hint else ""))
        result[source] = {"iterations": res.iteration, "psnr_y": round(score(res.export, pairs, 4), 3)}
        print(json.dumps(result), file=sys.stderr)
    if args.joint is not None:
        iters = json.loads((args.joint / "metrics.jsonl").read_text().splitlines()[-1])["iter"]
        result["joint"] = {"iterations": iters, "psnr_y": round(score(args.joint / "net_g_ema.safetensors", pairs, 4), 3)}
    (args.out).mkdir(parents=True, exist_ok=True)
    (args.out / f"result{'_' + args.only if args.only else ''}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
