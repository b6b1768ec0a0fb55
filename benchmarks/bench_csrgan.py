"""Does CSRGAN's joint model help? ``[model] predict_degradation`` on against off, same everything else.

Two ``esr train-net`` runs of SRVGGNetCompact 64/32 x4 from the same start (the embedded
``esr-general-x4-net`` weights, or ``--from-scratch``), the same seed, data and iterations,
differing only in ``model.predict_degradation`` (the degradation head on the trunk features
and its ``train.predict_weight`` * MSE term). Then, for the start model and both results:

1. Set5 and Set14 (``../shared/data/val``) degraded with esr's default second-order pipeline at
   ``esr degrade --seed 0`` (as benchmarks/eval_model.py and docs/models.md): PSNR_Y / SSIM_Y,
   crop border 4, of the x4 output against the HR images;
2. ``../shared/data/real``: mean NIQE of the x4 outputs (``--no-niqe`` skips it);
3. for the joint run, the head's mean absolute error on the normalised parameters of the
   degraded Set5/Set14 inputs (from ``params.jsonl``), next to always predicting their mean.

Usage::

    python benchmarks/bench_csrgan.py --iters 1500 --out /tmp/esr-csrgan            # both runs in parallel, 1 thread each
    python benchmarks/bench_csrgan.py --iters 1500 --out /tmp/esr-csrgan --eval-only  # re-evaluate finished runs

Prints a Markdown table and writes ``summary.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_model import esr, eval_real, eval_set  # noqa: E402


def _config(args: argparse.Namespace, predict: bool) -> str:
    import esrcli

    pretrained = "" if args.from_scratch else f'pretrained = "{Path(esrcli.__file__).parent / "models" / "esr-general-x4-net.safetensors"}"'
    return f"""[model]
arch = "SRVGGNetCompact"
scale = 4
num_feat = 64
num_conv = 32
act_type = "prelu"
{pretrained}
predict_degradation = {str(predict).lower()}

[data]
folders = ["{SHARED / 'data' / 'train'}"]
gt_size = {args.gt_size}
crop_size = {args.crop_size}
num_workers = 0

[train]
total_iter = {args.iters}
batch_size = {args.batch}
lr = {args.lr}
scheduler = "multistep"
milestones = [{args.iters * 10}]
ema_decay = 0.999
pool_size = 180
gt_usm = false
seed = {args.seed}
precision = "{args.precision}"
checkpoint_interval = {max(1, args.iters // 4)}
keep_checkpoints = 1
log_interval = 25
threads = {args.threads}
predict_weight = {args.weight}
"""


def train_runs(args: argparse.Namespace) -> dict[str, float]:
    """Start both runs (in parallel unless ``--serial``); returns wall seconds per run."""
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    procs, started, seconds = {}, {}, {}
    for name, predict in (("plain", False), ("joint", True)):
        run = args.out / name
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.in.toml").write_text(_config(args, predict))
        cmd = [sys.executable, "-m", "esrcli", "train-net", str(run / "config.in.toml"), "-o", str(run)]
        log = open(run / "train.log", "w")
        started[name] = time.perf_counter()
        procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        if args.serial:
            procs[name].wait()
            seconds[name] = time.perf_counter() - started[name]
    for name, p in procs.items():
        if p.wait() != 0:
            raise SystemExit(f"train-net {name} failed: see {args.out / name / 'train.log'}")
        seconds.setdefault(name, time.perf_counter() - started[name])
    return seconds


def head_error(run: Path, work: Path) -> dict[str, float]:
    """MAE of the joint run's head on the degraded Set5/Set14 inputs, and of predicting their mean."""
    import torch

    from esrcli.archs.deghead import TrunkTap
    from esrcli.data.imageio import read_image, to_tensor
    from esrcli.degrade.vector import param_vector
    from esrcli.train.build import build_net_p, build_net_g
    from esrcli.train.checkpoint import latest_checkpoint, read_checkpoint
    from esrcli.config import load_toml
    from esrcli.config.train import TrainNetConfig

    cfg = load_toml(TrainNetConfig, run / "config.toml")
    state = read_checkpoint(latest_checkpoint(run))
    net_g = build_net_g(cfg.model, 0)
    net_g.load_state_dict(state["net_g"])
    net_p, tap = build_net_p(net_g, 0)
    net_p.load_state_dict(state["net_p"])
    net_g.eval(), net_p.eval()
    preds, targets = [], []
    for name in ("set5", "set14"):
        d = work / name
        for line in (d / "params.jsonl").read_text().splitlines():
            entry = json.loads(line)
            img = read_image(d / entry["lq"])
            x = to_tensor(img.color)
            with torch.no_grad():
                net_g(x)
                preds.append(net_p(tap.pop())[0])
            targets.append(param_vector([entry])[0])
    p, t = torch.stack(preds), torch.stack(targets)
    # the training distribution: 4096 draws of the default pipeline, each predicted by their mean
    from esrcli.config.degrade import DegradeConfig
    from esrcli.degrade import sample_params
    from esrcli.degrade.vector import PARAM_NAMES

    drawn = param_vector(sample_params(DegradeConfig(), 4096, torch.Generator().manual_seed(0)))
    return {
        "head_mae": float((p - t).abs().mean()),
        "mean_predictor_mae": float((t - t.mean(0)).abs().mean()),
        "train_mean_predictor_mae": float((drawn - drawn.mean(0)).abs().mean()),
        "per_param": {n: [round(float((p - t)[:, i].abs().mean()), 4), round(float((t - t.mean(0))[:, i].abs().mean()), 4)]
                      for i, n in enumerate(PARAM_NAMES)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=1500, help="training iterations of each run")
    ap.add_argument("--out", type=Path, default=Path("/tmp/esr-csrgan"))
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--serial", action="store_true", help="one run after the other (default: both at once)")
    ap.add_argument("--from-scratch", action="store_true", help="random init instead of esr-general-x4-net")
    ap.add_argument("--weight", type=float, default=0.1, help="train.predict_weight (lambda) of the joint run")
    ap.add_argument("--gt-size", type=int, default=128)
    ap.add_argument("--crop-size", type=int, default=200)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--no-niqe", action="store_true", help="skip NIQE on ../shared/data/real")
    ap.add_argument("--eval-only", action="store_true", help="evaluate the runs already in --out")
    ap.add_argument("--only", choices=["start", "plain", "joint"], help="evaluate this model alone (no table)")
    args = ap.parse_args()
    if not (SHARED / "data").exists():
        raise SystemExit("../shared is absent: this benchmark needs ../shared/data/train, val and real")
    args.out.mkdir(parents=True, exist_ok=True)
    seconds = {} if args.eval_only else train_runs(args)
    env = dict(os.environ, OMP_NUM_THREADS="2")
    models = {"start": "esr-general-x4-net"} if not args.from_scratch else {}
    models.update({name: str(args.out / name / "net_g_ema.safetensors") for name in ("plain", "joint")})
    if args.only:
        models = {args.only: models[args.only]}
    results = {}
    for label, model in models.items():
        work = args.out / "eval" / label
        cached = work / "result.json"
        if cached.is_file() and (not Path(model).is_file() or cached.stat().st_mtime > Path(model).stat().st_mtime):
            results[label] = json.loads(cached.read_text())  # this model was evaluated already
            continue
        full = {name: eval_set(name, model, work, env) for name in ("set5", "set14")}
        sets = {name: r["sr"] for name, r in full.items()}
        per_image = {f"{name}/{k}": v for name, r in full.items() for k, v in r["sr_per_image"].items()}
        real = None if args.no_niqe else eval_real(model, work, env)["niqe"]["sr"]
        results[label] = {"sets": sets, "real_niqe": real, "psnr_y_per_image": per_image}
        cached.write_text(json.dumps(results[label]))
    if args.only:
        print(json.dumps(results, indent=1))
        return
    head = head_error(args.out / "joint", args.out / "eval" / "joint")
    logs = {}
    for name in ("plain", "joint"):
        lines = [json.loads(x) for x in (args.out / name / "metrics.jsonl").read_text().splitlines()]
        last = [x for x in lines if "l_pix" in x][-8:]  # the last 200 iterations
        logs[name] = {k: sum(x[k] for x in last) / len(last) for k in ("l_pix", "l_pred", "pred_mae") if k in last[0]}
        seconds.setdefault(name, lines[-1]["time"])  # --eval-only: the run's own wall time
    print(f"SRVGGNetCompact 64/32 x4, {args.iters} iterations, batch {args.batch}, GT {args.gt_size}, lr {args.lr:g}, "
          f"{'from scratch' if args.from_scratch else 'from esr-general-x4-net'}, seed {args.seed}, "
          f"predict_weight {args.weight:g}, {args.threads} thread(s) per run"
          + (f"; wall time plain {seconds['plain'] / 60:.1f} min, joint {seconds['joint'] / 60:.1f} min" if seconds else ""))
    print()
    print("| model | Set5 PSNR_Y / SSIM_Y | Set14 PSNR_Y / SSIM_Y | real NIQE | train l_pix (last 200 it) |")
    print("|---|---|---|---|---|")
    for label, r in results.items():
        s5, s14 = r["sets"]["set5"], r["sets"]["set14"]
        niqe = "-" if r["real_niqe"] is None else f"{r['real_niqe']:.3f}"
        lpix = f"{logs[label]['l_pix']:.4f}" if label in logs else "-"
        print(f"| {label} | {s5['psnr_y']:.3f} / {s5['ssim_y']:.4f} | {s14['psnr_y']:.3f} / {s14['ssim_y']:.4f} | {niqe} | {lpix} |")
    a, b = results["plain"]["psnr_y_per_image"], results["joint"]["psnr_y_per_image"]
    wins = sum(b[k] > a[k] for k in a)
    diff = sum(b[k] - a[k] for k in a) / len(a)
    print(f"\njoint vs plain, PSNR_Y per image: joint higher on {wins} of {len(a)}, mean difference {diff:+.3f} dB")
    print(f"joint head on degraded Set5+Set14: MAE {head['head_mae']:.4f} (predicting their mean: {head['mean_predictor_mae']:.4f}); "
          f"training pred_mae (last 200 it) {logs['joint'].get('pred_mae', float('nan')):.4f} "
          f"(predicting the mean of the training draws: {head['train_mean_predictor_mae']:.4f})")
    print("per parameter, head MAE / mean-predictor MAE on Set5+Set14: "
          + ", ".join(f"{n} {a:.3f}/{b:.3f}" for n, (a, b) in head["per_param"].items()))
    (args.out / "summary.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "seconds": seconds,
                                                       "results": results, "head": head, "train_logs": logs}, indent=1))


if __name__ == "__main__":
    main()
