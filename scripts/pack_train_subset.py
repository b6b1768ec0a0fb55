"""Pack a subset of the training images into lossless WebP crops for a GPU slice.

The GPU machine receives at most 64 MiB with the repository, so the pack is bounded
(``--budget-mib``, default 20). Each source image gives its most textured ``--crop`` x
``--crop`` window (the largest mean gradient magnitude on a coarse grid; textured patches are
where a GAN stage learns detail), openly licensed photos (``photo_*``) first, then BSDS200,
then T91, interleaved so that a smaller budget still mixes sources. Lossless WebP keeps
the pixels exact; esr's dataset reads ``.webp``. The output folder is ignored by git
(``.pack/``): the training images must never be committed.

    python scripts/pack_train_subset.py [--src ../shared/data/train] [--out .pack/train]
        [--crop 320] [--budget-mib 20]
"""

from __future__ import annotations

import argparse
import io
import shutil
from itertools import zip_longest
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def most_textured_window(rgb: np.ndarray, crop: int, stride: int = 32) -> tuple[int, int]:
    """Top-left ``(y, x)`` of the ``crop`` x ``crop`` window with the largest mean gradient magnitude."""
    gray = rgb.astype(np.float32).mean(axis=2)
    gy, gx = np.gradient(gray)
    mag = np.hypot(gx, gy)
    integral = np.pad(mag.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    h, w = gray.shape
    best, where = -1.0, (0, 0)
    for y in range(0, max(h - crop, 0) + 1, stride):
        for x in range(0, max(w - crop, 0) + 1, stride):
            y1, x1 = min(y + crop, h), min(x + crop, w)
            s = integral[y1, x1] - integral[y, x1] - integral[y1, x] + integral[y, x]
            if s > best:
                best, where = s, (y, x)
    return where


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=ROOT.parent / "shared" / "data" / "train")
    ap.add_argument("--out", type=Path, default=ROOT / ".pack" / "train")
    ap.add_argument("--crop", type=int, default=320, help="crop side in pixels (data.crop_size of the config)")
    ap.add_argument("--budget-mib", type=float, default=20.0)
    args = ap.parse_args()

    groups = [sorted(args.src.glob(f"{prefix}_*.png")) for prefix in ("photo", "bsd200", "t91")]
    if not any(groups):
        raise SystemExit(f"{args.src}: no training images (photo_*, bsd200_*, t91_*.png)")
    # Photos first and most often: two of them for each BSDS200 image, T91 last.
    photos, bsd, t91 = groups
    order = [f for trio in zip_longest(photos[0::2], photos[1::2], bsd) for f in trio if f is not None] + t91
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    budget, total, count = int(args.budget_mib * 2**20), 0, 0
    for f in order:
        rgb = np.asarray(Image.open(f).convert("RGB"))
        if min(rgb.shape[:2]) < args.crop // 2:
            continue  # too small to be worth a crop (T91 images are reflect-padded in training)
        y, x = most_textured_window(rgb, args.crop)
        tile = Image.fromarray(rgb[y : y + args.crop, x : x + args.crop])
        buf = io.BytesIO()
        tile.save(buf, "WEBP", lossless=True, quality=100, method=4)
        if total + buf.tell() > budget:
            continue
        (args.out / f"{f.stem}.webp").write_bytes(buf.getvalue())
        total += buf.tell()
        count += 1
    print(f"{args.out}: {count} lossless WebP crops of {args.crop} px, {total / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
