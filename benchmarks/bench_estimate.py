"""Accuracy and speed of ``esr estimate`` against classical estimators measured in the same run.

Images: the held-out training photos (every 8th ``photo_*`` of ``shared/data/train``, never seen in
training) and Set5 + Set14, each centre-cropped to at most 512x512. For each image and each drawn
degradation the script compares the estimate with the truth:

* noise: colour Gaussian noise sigma in [0, 20] (8-bit levels, rounded to 8 bits): mean absolute
  error of ``estimate`` (mean over channels) and of Immerkaer's per-channel estimate on the same
  images (target: MAE <= 1.0 and <= 0.5x Immerkaer's);
* JPEG: quality 20-95 decoded and kept as an array (what a PNG saved from a JPEG holds): MAE of the
  CNN's quality (target <= 6); JPEG files written by OpenCV and Pillow: MAE of the file reading
  (exact quantisation tables; target <= 1);
* blur: Gaussian sigma 0.3-2.5 px: Spearman rank correlation of the estimated with the true sigma
  over all images (target >= 0.85);
* speed: one 12 MP photo (4000x3000) estimated from a PNG and from a JPEG file, file reading
  included, median of 3 runs (target < 1 s on 2 cores).

Run: ``python benchmarks/bench_estimate.py [--threads 2] [--draws 3] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"


def _images(limit: int) -> list[tuple[str, np.ndarray]]:
    from esrcli.estimate.sampler import held_out_photos, load_rgb8

    paths = held_out_photos(SHARED / "data" / "train")
    paths += sorted((SHARED / "data" / "val" / "set5").glob("*.png")) + sorted((SHARED / "data" / "val" / "set14").glob("*.png"))
    out = []
    for p in paths[:limit]:
        im = load_rgb8(p)
        h, w = im.shape[:2]
        ch, cw = min(h, 512), min(w, 512)
        y, x = (h - ch) // 2, (w - cw) // 2
        out.append((p.name, np.ascontiguousarray(im[y : y + ch, x : x + cw])))
    return out


def _spearman(a: list[float], b: list[float]) -> float:
    ra = np.argsort(np.argsort(a)).astype(np.float64)
    rb = np.argsort(np.argsort(b)).astype(np.float64)
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--draws", type=int, default=3, help="degradations drawn per image and test")
    ap.add_argument("--limit", type=int, default=1000, help="at most this many images")
    ap.add_argument("--seed", type=int, default=2026, help="seed of the drawn degradations")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    if not (SHARED / "data").is_dir():
        print(f"needs {SHARED / 'data'} (the shared data folder)", file=sys.stderr)
        return 2
    import torch
    from PIL import Image

    from esrcli.estimate import estimate
    from esrcli.estimate.classical import immerkaer_per_channel
    from esrcli.estimate.core import _load_net

    torch.set_num_threads(args.threads)
    if _load_net() is None:
        print("warning: no embedded esr-estimator weights: the classical fallback is measured", file=sys.stderr)
    rng = np.random.default_rng(args.seed)
    images = _images(args.limit)
    res: dict[str, float] = {"images": len(images)}

    # noise
    err_cnn, err_imm, by_level = [], [], {}
    for _, im in images:
        for _ in range(args.draws):
            s = float(rng.uniform(0.0, 20.0))
            noisy = np.clip(np.rint(im + rng.standard_normal(im.shape) * s), 0, 255).astype(np.uint8)
            e = abs(estimate(noisy).noise_sigma_mean - s)
            i = abs(float(np.mean(immerkaer_per_channel(noisy.astype(np.float32)))) - s)
            err_cnn.append(e)
            err_imm.append(i)
            by_level.setdefault(min(int(s // 5) * 5, 15), []).append((e, i))
    res["noise_mae"] = float(np.mean(err_cnn))
    res["noise_mae_immerkaer"] = float(np.mean(err_imm))
    res["noise_ratio"] = res["noise_mae"] / res["noise_mae_immerkaer"]
    for lo, v in sorted(by_level.items()):
        res[f"noise_mae_{lo}-{lo + 5}"] = float(np.mean([a for a, _ in v]))
        res[f"noise_mae_immerkaer_{lo}-{lo + 5}"] = float(np.mean([b for _, b in v]))
    clean = [abs(estimate(im).noise_sigma_mean) for _, im in images]
    res["noise_on_clean_mean"] = float(np.mean(clean))

    # JPEG, decoded arrays and files
    from esrcli.ops.jpeg import jpeg_roundtrip_uint8

    err_arr, err_file, missed = [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for k, (_, im) in enumerate(images):
            for d in range(args.draws):
                q = int(rng.integers(20, 96))
                dec = jpeg_roundtrip_uint8(im, q)
                got = estimate(dec).jpeg_quality
                if got is None:
                    missed += 1
                    got = 100
                err_arr.append(abs(got - q))
                f = Path(tmp) / f"{k}_{d}.jpg"
                if d % 2 == 0:
                    cv2.imwrite(str(f), im[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
                else:
                    Image.fromarray(im).save(f, quality=q)
                fq = estimate(f).jpeg_quality
                err_file.append(abs((fq if fq is not None else 100) - q))
        none_clean = sum(estimate(im).jpeg_quality is None for _, im in images)
    res["jpeg_mae_decoded"] = float(np.mean(err_arr))
    res["jpeg_missed_decoded"] = missed
    res["jpeg_mae_file"] = float(np.mean(err_file))
    res["jpeg_none_on_clean"] = f"{none_clean}/{len(images)}"

    # blur
    true_b, est_b = [], []
    for _, im in images:
        for _ in range(args.draws):
            s = float(rng.uniform(0.3, 2.5))
            k = 2 * int(np.ceil(3 * s)) + 1
            b = cv2.GaussianBlur(im.astype(np.float32), (k, k), s, borderType=cv2.BORDER_REFLECT)
            b = np.clip(np.rint(b), 0, 255).astype(np.uint8)
            true_b.append(s)
            est_b.append(estimate(b).blur_sigma)
    res["blur_spearman"] = _spearman(true_b, est_b)
    res["blur_mae"] = float(np.mean(np.abs(np.array(true_b) - np.array(est_b))))

    # speed on a 12 MP photo, file reading included
    src = images[0][1]
    big = cv2.resize(src, (4000, 3000), interpolation=cv2.INTER_CUBIC)
    big = np.clip(big + rng.standard_normal(big.shape) * 3, 0, 255).astype(np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        for ext in ("png", "jpg"):
            f = Path(tmp) / f"big.{ext}"
            cv2.imwrite(str(f), big[:, :, ::-1])
            times = []
            for _ in range(3):
                t = time.perf_counter()
                estimate(f)
                times.append(time.perf_counter() - t)
            res[f"speed_12mp_{ext}_s"] = statistics.median(times)
            t = time.perf_counter()
            cv2.imread(str(f))
            res[f"decode_12mp_{ext}_s"] = time.perf_counter() - t

    res["threads"] = args.threads
    res["load_avg"] = os.getloadavg()[0]
    for k, v in res.items():
        print(f"{k:32s} {v:.3f}" if isinstance(v, float) else f"{k:32s} {v}")
    if args.json is not None:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
