"""Evaluate an x4 model the way docs/models.md reports it (issue: the embedded default model).

1. Set5 and Set14 (``../shared/data/val``) degraded with esr's default second-order pipeline at a
   fixed seed (``esr degrade --seed 0``); PSNR_Y / SSIM_Y (crop border 4) of the model's x4 output
   against the HR images, next to MATLAB-bicubic x4 of the same LR.
2. ``../shared/data/real``: mean NIQE (Y, crop border 0) of the model's outputs and of bicubic x4,
   and the wall time of ``esr upscale`` on all nine files.
3. Before/after pictures: bicubic vs model on crops of real images and of degraded Set14 images
   (``comparison.png``, stays local: ../shared's images are not committed), and on the README's
   CC0 example input (``example.png``, the one docs/models.md shows).

Usage::

    python benchmarks/eval_model.py [--model esr-general-x4-net | FILE] [--out /tmp/esr-eval] [--threads 2]

Prints a Markdown table; writes ``summary.json``, ``comparison.png`` and ``example.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def esr(*args: str, env: dict | None = None) -> str:
    cmd = [sys.executable, "-m", "esrcli", *map(str, args)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{res.stderr}")
    return res.stdout


def bicubic_folder(lq_dir: Path, out_dir: Path) -> None:
    from esrcli.data.imageio import Image, read_image, write_image
    from esrcli.ops.imresize import imresize

    out_dir.mkdir(parents=True, exist_ok=True)
    for f in sorted(lq_dir.iterdir()):
        im = read_image(f)
        u8 = np.clip(np.rint(im.color * 255), 0, 255).astype(np.uint8)
        up = imresize(u8 if u8.shape[2] > 1 else u8[:, :, 0], 4)
        up = up.reshape(up.shape[0], up.shape[1], -1).astype(np.float32) / 255
        write_image(out_dir / (f.stem + ".png"), Image(up))


def eval_set(name: str, model: str, work: Path, env: dict) -> dict:
    hr = SHARED / "data" / "val" / name
    d = work / name
    if not (d / "lq").exists():
        esr("degrade", hr, d, "--seed", "0", env=env)
    bicubic_folder(d / "lq", d / "bicubic")
    esr("upscale", d / "lq", d / "sr", "--model", model, "--overwrite", env=env)
    res = {}
    for kind in ("bicubic", "sr"):
        out = json.loads(esr("eval", d / kind, hr, "--scale", "4", "--no-niqe", "--json", env=env))
        res[kind] = out["mean"]
        res[kind + "_per_image"] = {Path(i["path"]).stem: round(i["psnr_y"], 3) for i in out["images"]}
    return res


def eval_real(model: str, work: Path, env: dict) -> dict:
    real = SHARED / "data" / "real"
    d = work / "real"
    bicubic_folder(real, d / "bicubic")
    t0 = time.perf_counter()
    esr("upscale", real, d / "sr", "--model", model, "--overwrite", env=env)
    seconds = time.perf_counter() - t0
    niqe = {k: json.loads(esr("niqe", d / k, "--json", env=env))["mean"]["niqe"] for k in ("bicubic", "sr")}
    return {"seconds": seconds, "niqe": niqe}


def _sheet(pairs: list[tuple[Path, Path, tuple[int, int]]], out: Path, size: int = 320) -> Path:
    """Rows of ``size``-pixel (bicubic | model) crops at (y, x), with a header; written to ``out``."""
    rows = []
    for bic, sr, (y, x) in pairs:
        pair = []
        for f in (bic, sr):
            im = cv2.imread(str(f), cv2.IMREAD_COLOR)
            crop = im[y : y + size, x : x + size]
            crop = cv2.copyMakeBorder(crop, 0, size - crop.shape[0], 0, size - crop.shape[1], cv2.BORDER_CONSTANT)
            pair.append(crop)
        rows.append(np.concatenate([pair[0], np.full((size, 6, 3), 255, np.uint8), pair[1]], 1))
    sheet = np.concatenate([np.concatenate([r, np.full((6, r.shape[1], 3), 255, np.uint8)], 0) for r in rows], 0)
    head = np.full((28, sheet.shape[1], 3), 255, np.uint8)
    cv2.putText(head, "bicubic x4", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(head, "esr model x4", (size + 14, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(out), np.concatenate([head, sheet], 0))
    return out


def comparison(work: Path) -> Path:
    """``comparison.png``: crops of three real images and two degraded Set14 images (not for committing:
    ../shared's images stay out of the repository)."""
    picks = [
        ("real", "0014", (30, 30)), ("real", "OST_009", (700, 600)), ("real", "ADE_val_00000114", (300, 300)),
        ("set14", "coastguard", (0, 16)), ("set14", "barbara", (200, 350)),
    ]
    pairs = []
    for folder, stem, yx in picks:
        files = [list((work / folder / kind).glob(stem + ".*")) for kind in ("bicubic", "sr")]
        if all(files):
            pairs.append((files[0][0], files[1][0], yx))
    return _sheet(pairs, work / "comparison.png")


def example_picture(model: str, work: Path, env: dict) -> Path:
    """``example.png``: bicubic vs model on the README's CC0 example input (fit for docs/images/)."""
    src = ROOT / "examples" / "budgie_lq.png"
    d = work / "example"
    (d / "in").mkdir(parents=True, exist_ok=True)
    (d / "in" / src.name).write_bytes(src.read_bytes())
    bicubic_folder(d / "in", d / "bicubic")
    esr("upscale", d / "in", d / "sr", "--model", model, "--overwrite", env=env)
    bic, sr = d / "bicubic" / src.name, d / "sr" / src.name
    return _sheet([(bic, sr, (40, 400)), (bic, sr, (440, 280))], work / "example.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="esr-general-x4-net")
    ap.add_argument("--out", type=Path, default=Path("/tmp/esr-eval"))
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = ap.parse_args()
    if not (SHARED / "data").exists():
        raise SystemExit("../shared is absent: this evaluation needs ../shared/data/val and data/real")
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    sets = {name: eval_set(name, args.model, args.out, env) for name in ("set5", "set14")}
    real = eval_real(args.model, args.out, env)
    pic = comparison(args.out)
    example = example_picture(args.model, args.out, env)
    print(f"model: {args.model}\n")
    print("| test set (degraded, seed 0) | bicubic PSNR_Y / SSIM_Y | model PSNR_Y / SSIM_Y | gain |")
    print("|---|---|---|---|")
    for name, r in sets.items():
        b, s = r["bicubic"], r["sr"]
        print(f"| {name} | {b['psnr_y']:.2f} / {b['ssim_y']:.4f} | {s['psnr_y']:.2f} / {s['ssim_y']:.4f} | {s['psnr_y'] - b['psnr_y']:+.2f} dB |")
    print(f"\nreal (9 files): NIQE bicubic {real['niqe']['bicubic']:.3f}, model {real['niqe']['sr']:.3f}; "
          f"esr upscale wall time {real['seconds']:.1f} s (process start-up and model loading included)")
    print(f"pictures: {pic} (real and degraded crops), {example} (the README's example input)")
    (args.out / "summary.json").write_text(json.dumps({"sets": sets, "real": real}, indent=1))


if __name__ == "__main__":
    main()
