"""Does ``esr train-pdm`` recover a known degradation? (issue 18's convergence target)

Builds a synthetic target domain from the HR photos of ``../shared/data/train``: the sorted
``photo_*`` and ``bsd200_*`` files are split into two disjoint halves (even / odd index);
one half is the HR side, the other is degraded with a known anisotropic Gaussian kernel
(21x21, reflect padding, stride ``scale``), Gaussian noise of ``--noise`` levels (of 255),
clipping and 8-bit rounding, and becomes the LR side. Then it trains ``train_pdm`` with the
default configuration (plus ``--set`` overrides) for ``--time`` seconds and compares:

- the mean learned kernel's principal widths (square roots of the eigenvalues of its second
  central moments) and orientation with the true kernel's (computed the same way);
- the learned noise standard deviation (``degrade(x) - degrade(x, noise=False)`` with equal
  seeds, on 64 held-out HR crops) with ``--noise / 255``.

Targets (issue 18): widths within 30%, orientation within 20 degrees, noise std within 40%.

Usage::

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/pdm_recovery.py --time 1200 \\
        --out /tmp/pdm_bench [--sigma 2.0 1.2 --theta 120 --noise 5] [--set train.lr=1e-3]

Prints one JSON object, also written to ``OUT/RUN/result.json`` (``RUN`` is ``--run``, default
``run``: the run folder, beside its ``pdm.safetensors``), so runs sharing an ``--out`` keep their own.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from esrcli.config.loader import from_dict  # noqa: E402
from esrcli.config.pdm import PdmConfig  # noqa: E402
from esrcli.data.imageio import Image, read_image, write_image  # noqa: E402
from esrcli.degrade.pdm import apply_kernels, load_pdm  # noqa: E402
from esrcli.ops.filters import bivariate_gaussian  # noqa: E402
from esrcli.train.pdm import kernel_stats, train_pdm  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "train"


def build_domain(out: Path, sigma: tuple[float, float], theta: float, noise: float, scale: int, ksize: int) -> tuple[Path, Path, list[Path]]:
    """HR folder (links to one half), LR folder (the other half degraded); returns held-out HR files."""
    files = sorted(p for p in DATA.iterdir() if p.name.startswith(("photo_", "bsd200_")) and p.suffix == ".png")
    hr_files, lr_files = files[0::2], files[1::2]
    tag = f"s{sigma[0]}_{sigma[1]}_t{theta}_n{noise}_x{scale}"
    hr_dir, lr_dir = out / "domain" / "hr", out / "domain" / f"lr_{tag}"
    hr_dir.mkdir(parents=True, exist_ok=True)
    for f in hr_files:
        link = hr_dir / f.name
        if not link.exists():
            link.symlink_to(f)
    if not lr_dir.is_dir() or len(list(lr_dir.iterdir())) < len(lr_files):
        lr_dir.mkdir(parents=True, exist_ok=True)
        kernel = bivariate_gaussian(ksize, sigma[0], sigma[1], math.radians(theta)).reshape(1, -1, 1, 1)
        g = torch.Generator().manual_seed(1234)
        for f in lr_files:
            x = torch.from_numpy(read_image(f).color).permute(2, 0, 1)[None].float()
            y = apply_kernels(x, kernel, scale)
            y = y + torch.randn(y.shape, generator=g) * (noise / 255.0)
            y = (y.clamp(0, 1) * 255).round() / 255
            write_image(lr_dir / f.name, Image(y[0].permute(1, 2, 0).numpy()))
    return hr_dir, lr_dir, lr_files[:8]


def parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def nested_set(d: dict, dotted: str, value) -> None:
    head, _, rest = dotted.partition(".")
    if rest:
        nested_set(d.setdefault(head, {}), rest, value)
    else:
        d[head] = value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/pdm_bench"))
    ap.add_argument("--time", type=float, default=1200.0, help="training time budget, seconds")
    ap.add_argument("--sigma", type=float, nargs=2, default=(2.0, 1.2))
    ap.add_argument("--theta", type=float, default=120.0, help="degrees, major axis from x towards +y (rows down)")
    ap.add_argument("--noise", type=float, default=5.0, help="Gaussian noise std in 8-bit levels")
    ap.add_argument("--set", action="append", default=[], help="config override KEY=VALUE (TOML-ish value)")
    ap.add_argument("--run", default="run", help="run folder name under OUT")
    args = ap.parse_args()

    raw: dict = {}
    for item in args.set:
        key, _, val = item.partition("=")
        nested_set(raw, key, parse_value(val))
    base = from_dict(PdmConfig, raw)
    scale, ksize = base.model.scale, base.model.kernel_size
    hr_dir, lr_dir, held_out = build_domain(args.out, tuple(args.sigma), args.theta, args.noise, scale, ksize)
    cfg = dataclasses.replace(base, data=dataclasses.replace(base.data, hr=(hr_dir,), lr=(lr_dir,)))
    run = args.out / args.run
    t0 = time.time()
    res = train_pdm(cfg, run, resume=None, time_limit=args.time, on_message=lambda m: print(m, file=sys.stderr))
    train_s = time.time() - t0

    pdm = load_pdm(res.export)
    truth = kernel_stats(bivariate_gaussian(ksize, args.sigma[0], args.sigma[1], math.radians(args.theta))[None])
    learned = kernel_stats(pdm.sample_kernels(512, generator=torch.Generator().manual_seed(0)))
    # noise: held-out HR photos (from the LR half: never seen as HR), 64 crops
    g = torch.Generator().manual_seed(5)
    crops = []
    for i in range(64):
        x = torch.from_numpy(read_image(held_out[i % len(held_out)]).color).permute(2, 0, 1)
        top = int(torch.randint(0, x.shape[1] - 128 + 1, (1,), generator=g))
        left = int(torch.randint(0, x.shape[2] - 128 + 1, (1,), generator=g))
        crops.append(x[:, top : top + 128, left : left + 128])
    hr = torch.stack(crops).float()
    with_noise = pdm.degrade(hr, generator=torch.Generator().manual_seed(9))
    without = pdm.degrade(hr, noise=False, generator=torch.Generator().manual_seed(9))
    noise_std = float((with_noise - without).std())
    true_noise = args.noise / 255.0

    def rel(a: float, b: float) -> float:
        return abs(a - b) / b

    dtheta = abs((learned["theta"] - truth["theta"] + 90) % 180 - 90)
    result = {
        "time_budget_s": args.time,
        "train_s": round(train_s, 1),
        "iterations": res.iteration,
        "iters_per_s": round(res.iters_per_s, 3),
        "threads": torch.get_num_threads(),
        "overrides": args.set,
        "truth": {**{k: round(v, 3) for k, v in truth.items()}, "noise_std": round(true_noise, 5)},
        "learned": {**{k: round(v, 3) for k, v in learned.items()}, "noise_std": round(noise_std, 5)},
        "errors": {
            "sigma_major_rel": round(rel(learned["sigma_major"], truth["sigma_major"]), 3),
            "sigma_minor_rel": round(rel(learned["sigma_minor"], truth["sigma_minor"]), 3),
            "theta_deg": round(dtheta, 1),
            "noise_std_rel": round(rel(noise_std, true_noise), 3),
        },
    }
    e = result["errors"]
    result["pass"] = bool(e["sigma_major_rel"] <= 0.3 and e["sigma_minor_rel"] <= 0.3 and e["theta_deg"] <= 20 and e["noise_std_rel"] <= 0.4)
    run.mkdir(parents=True, exist_ok=True)
    (run / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
