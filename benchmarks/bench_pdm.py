"""Speed of PDM: train-pdm iterations per second and LR images per second of ``degrade --pdm``.

Uses random images written to a temporary folder (speed does not depend on content), the
default ``[model]``/``[train]`` configuration, and the current torch thread count (set
``OMP_NUM_THREADS``). Prints one JSON object.

Usage::

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_pdm.py [--iters 40] [--images 64 --size 256]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from esrcli.config.pdm import PdmConfig, PdmDataConfig, PdmTrainOptions  # noqa: E402
from esrcli.data.imageio import Image, write_image  # noqa: E402
from esrcli.degrade.pdm import load_pdm  # noqa: E402
from esrcli.train.pdm import train_pdm  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=40, help="timed train-pdm iterations (after 5 warm-up ones)")
    ap.add_argument("--images", type=int, default=64, help="HR images degraded")
    ap.add_argument("--size", type=int, default=256, help="side of the HR images")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "hr").mkdir()
        (root / "lr").mkdir()
        for i in range(8):
            write_image(root / "hr" / f"{i}.png", Image(rng.random((300, 300, 3), dtype=np.float32)))
            write_image(root / "lr" / f"{i}.png", Image(rng.random((80, 80, 3), dtype=np.float32)))
        base = PdmConfig(data=PdmDataConfig(hr=(root / "hr",), lr=(root / "lr",)))
        warm = dataclasses.replace(base, train=dataclasses.replace(base.train, total_iter=5, d_warmup=0, checkpoint_interval=10_000))
        train_pdm(warm, root / "run")  # decodes/caches the images, first-call overheads
        cfg = dataclasses.replace(warm, train=dataclasses.replace(warm.train, total_iter=5 + args.iters))
        res = train_pdm(cfg, root / "run", resume=True)
        pdm = load_pdm(res.export)
        hr = torch.rand(args.images, 3, args.size, args.size)
        pdm.degrade(hr[:2])
        t0 = time.perf_counter()
        for i in range(0, args.images, 8):
            pdm.degrade(hr[i : i + 8], generator=torch.Generator().manual_seed(i))
        deg_s = time.perf_counter() - t0
    print(json.dumps({
        "threads": torch.get_num_threads(),
        "batch_size": PdmTrainOptions().batch_size,
        "train_iters_per_s": round(res.iters_per_s, 3),
        "degrade_images_per_s": round(args.images / deg_s, 2),
        "degrade_size": args.size,
    }, indent=2))


if __name__ == "__main__":
    main()
