"""Compare x4 models side by side on the CPU: bicubic | esr-general-x4-net | candidate(s) | x4plus.

For judging a newly trained model (e.g. the EMA export of a GPU slice, scripts/train_slice.sh)
before it ships (docs/training.md):

1. Set5 and Set14 (``../shared/data/val``) degraded with esr's default second-order pipeline at
   seed 0 (``esr degrade --seed 0``, as benchmarks/eval_model.py): PSNR_Y / SSIM_Y, crop border 4.
2. ``../shared/data/real`` (nine real inputs, no ground truth): mean NIQE of the x4 outputs, the
   wall time of ``esr upscale`` on them, and two artefact figures of the outputs (8-bit levels,
   mean over the files): ``checker``, the pixel-shuffle checkerboard (the high-pass residual's
   mean in each of the 16 (y mod 4, x mod 4) phases, their standard deviation; bicubic 0.01,
   esr-general-x4-net 0.07, a grid seen in flat sky at 3x zoom 0.87, an unseen one 0.21) and
   ``colour``, the largest per-channel shift of the mean against the input's (opaque pixels),
   and ``blocks``, the steps at the edges of the 4x4 output blocks (the mean absolute difference
   of neighbouring pixels across a block edge over that within a block; bicubic 1.26 on the real
   set, where the inputs' own 8x8 JPEG grid lands on block edges; esr-general-x4-net on a
   nearest-neighbour residual 1.95, visible as a mosaic in texture; on its bilinear residual
   1.07). ``checker`` sees a fixed pattern per sub-pixel phase, ``blocks`` content-dependent
   steps, which average out of ``checker``.
3. ``montage.png``: the same crops of real and degraded Set14 outputs in one row per crop and one
   column per model (stays local: ../shared's images are not committed).

Each model's figures are cached in ``--out/<label>/result.json`` (keyed by the model file's size
and time), so comparing a second candidate re-runs only that one.

Usage::

    PYTHONPATH=src python benchmarks/compare_models.py [CANDIDATE.safetensors ...]
        [--out /tmp/esr-compare] [--baseline esr-general-x4-net] [--reference realesrgan-x4plus]
        [--fresh]

Prints a Markdown table; writes ``summary.json`` and ``montage.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_model import SHARED, bicubic_folder, esr  # noqa: E402

SETS = ("set5", "set14")
PICKS = [  # (folder, stem, (y, x) in the x4 output, side)
    ("real", "0014", (40, 40)), ("real", "OST_009", (700, 600)), ("real", "ADE_val_00000114", (300, 300)),
    ("real", "00003", (400, 200)), ("set14", "coastguard", (0, 16)), ("set14", "barbara", (200, 350)),
]


def _key(model: str) -> str:
    p = Path(model)
    if p.is_file():
        st = p.stat()
        return f"{p.resolve()}:{st.st_size}:{int(st.st_mtime)}"
    return model


def _label(model: str) -> str:
    p = Path(model)
    if not p.is_file():
        return model
    return p.parent.name + "-" + p.stem if p.stem == "net_g_ema" else p.stem


def degraded_sets(out: Path, env: dict) -> dict[str, Path]:
    folders = {}
    for name in SETS:
        d = out / "data" / name
        if not (d / "lq").is_dir():
            esr("degrade", SHARED / "data" / "val" / name, d, "--seed", "0", env=env)
        folders[name] = d / "lq"
    return folders


def run_model(model: str | None, label: str, out: Path, lq: dict[str, Path], env: dict, fresh: bool) -> dict:
    """Figures of one model (``None``: MATLAB bicubic), cached in ``out/label/result.json``."""
    d = out / label
    cache = d / "result.json"
    key = _key(model) if model else "bicubic"
    if cache.is_file() and not fresh:
        res = json.loads(cache.read_text())
        if res.get("key") == key:
            return res
    if d.exists():
        shutil.rmtree(d)
    res: dict = {"key": key, "sets": {}}
    inputs = {**lq, "real": SHARED / "data" / "real"}
    for name, src in inputs.items():
        t0 = time.perf_counter()
        if model is None:
            bicubic_folder(src, d / name)
        else:
            esr("upscale", src, d / name, "--model", model, "--overwrite", env=env)
        if name == "real":
            res["real_seconds"] = round(time.perf_counter() - t0, 1)
            res["real_niqe"] = json.loads(esr("niqe", d / name, "--json", env=env))["mean"]["niqe"]
        else:
            m = json.loads(esr("eval", d / name, SHARED / "data" / "val" / name, "--scale", "4", "--no-niqe", "--json", env=env))["mean"]
            res["sets"][name] = {"psnr_y": m["psnr_y"], "ssim_y": m["ssim_y"]}
    cache.write_text(json.dumps(res, indent=1))
    return res


def checkerboard(img: np.ndarray, scale: int = 4) -> float:
    """Std of the high-pass residual's mean over the ``scale**2`` sub-pixel phases (8-bit levels).

    A sub-pixel convolution (pixel shuffle) that has not learned to blend its ``scale**2``
    output phases leaves a fixed pattern repeating every ``scale`` pixels: each phase's residual
    (image minus a Gaussian blur, sigma 2 px) then has its own mean. Natural images give ~0.01.
    """
    g = img.astype(np.float64).mean(-1) if img.ndim == 3 else img.astype(np.float64)
    h, w = g.shape[0] // scale * scale, g.shape[1] // scale * scale
    r = g[:h, :w] - cv2.GaussianBlur(g[:h, :w], (0, 0), 2.0)
    return float(np.std([r[py::scale, px::scale].mean() for py in range(scale) for px in range(scale)]))


def block_edges(img: np.ndarray, scale: int = 4) -> float:
    """Mean absolute step across the edges of the ``scale x scale`` output blocks over the mean
    step inside them (gray, both axes averaged). 1 when the blocks do not show."""
    g = img.astype(np.float64).mean(-1) if img.ndim == 3 else img.astype(np.float64)
    ratios = []
    for d in (np.abs(np.diff(g, axis=1)), np.abs(np.diff(g, axis=0)).T):
        edge = np.arange(d.shape[1]) % scale == scale - 1
        ratios.append(d[:, edge].mean() / max(d[:, ~edge].mean(), 1e-9))
    return float(np.mean(ratios))


def _bgr8(raw: np.ndarray) -> np.ndarray:
    """``raw`` (as ``cv2.IMREAD_UNCHANGED`` reads it) as ``cv2.IMREAD_COLOR`` would have read it:
    8-bit BGR, 16-bit shifted right by 8 bits, gray repeated, alpha dropped."""
    if raw.dtype == np.uint16:
        raw = (raw >> 8).astype(np.uint8)
    if raw.ndim == 2:
        return cv2.cvtColor(raw, cv2.COLOR_GRAY2BGR)
    return raw[..., :3] if raw.shape[2] == 4 else raw


def artefacts(outputs: Path, inputs: Path) -> dict[str, float]:
    """Mean ``checker`` (:func:`checkerboard`), ``blocks`` (:func:`block_edges`) and ``colour``
    shift of the x4 outputs in ``outputs``."""
    checker, colour, blocks = [], [], []
    for src in sorted(p for p in inputs.iterdir() if p.is_file()):
        found = sorted(outputs.glob(src.stem + ".*"))
        if not found:
            continue
        out, raw = cv2.imread(str(found[0]), cv2.IMREAD_COLOR), cv2.imread(str(src), cv2.IMREAD_UNCHANGED)
        if out is None or raw is None:
            continue
        checker.append(checkerboard(out))
        blocks.append(block_edges(out))
        # colour: the output area-reduced to the input's size, over the opaque pixels only
        # (what lies under transparent ones is arbitrary in both)
        inp = _bgr8(raw)
        small = cv2.resize(out, (inp.shape[1], inp.shape[0]), interpolation=cv2.INTER_AREA)
        opaque = raw[..., 3] == raw[..., 3].max() if raw.ndim == 3 and raw.shape[2] == 4 else np.ones(inp.shape[:2], bool)
        shift = small[opaque].astype(np.float64).mean(0) - inp[opaque].astype(np.float64).mean(0)
        colour.append(float(np.abs(shift).max()))
    return {"checker": float(np.mean(checker)), "colour": float(np.mean(colour)), "blocks": float(np.mean(blocks))}


def montage(out: Path, labels: list[str], size: int = 224) -> Path:
    """One row per crop in :data:`PICKS`, one column per model, a header of labels."""
    gap = 4
    rows = []
    for folder, stem, (y, x) in PICKS:
        tiles = []
        for label in labels:
            found = sorted((out / label / folder).glob(stem + ".*"))
            im = cv2.imread(str(found[0]), cv2.IMREAD_COLOR) if found else None
            crop = np.zeros((size, size, 3), np.uint8) if im is None else im[y : y + size, x : x + size]
            crop = cv2.copyMakeBorder(crop, 0, size - crop.shape[0], 0, size - crop.shape[1], cv2.BORDER_CONSTANT)
            tiles += [crop, np.full((size, gap, 3), 255, np.uint8)]
        rows += [np.concatenate(tiles[:-1], 1), np.full((gap, len(labels) * (size + gap) - gap, 3), 255, np.uint8)]
    sheet = np.concatenate(rows[:-1], 0)
    head = np.full((26, sheet.shape[1], 3), 255, np.uint8)
    for i, label in enumerate(labels):
        cv2.putText(head, label[:30], (i * (size + gap) + 4, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    path = out / "montage.png"
    cv2.imwrite(str(path), np.concatenate([head, sheet], 0))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("candidates", nargs="*", help="model files or embedded names to judge")
    ap.add_argument("--out", type=Path, default=Path("/tmp/esr-compare"))
    ap.add_argument("--baseline", default="esr-general-x4-net")
    ap.add_argument("--reference", default="realesrgan-x4plus", help="'' to skip (x4plus takes ~3 min on 2 cores)")
    ap.add_argument("--fresh", action="store_true", help="ignore cached figures")
    args = ap.parse_args()
    if not (SHARED / "data").exists():
        raise SystemExit("../shared is absent: this comparison needs ../shared/data/val and data/real")
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    args.out.mkdir(parents=True, exist_ok=True)
    lq = degraded_sets(args.out, env)
    models: list[tuple[str | None, str]] = [(None, "bicubic"), (args.baseline, _label(args.baseline))]
    models += [(c, _label(c)) for c in args.candidates]
    if args.reference:
        models.append((args.reference, _label(args.reference)))
    results = {}
    for model, label in models:
        results[label] = run_model(model, label, args.out, lq, env, args.fresh)
        print(f"done: {label}", file=sys.stderr)
    print("| model | Set5 PSNR_Y / SSIM_Y | Set14 PSNR_Y / SSIM_Y | real NIQE | real checker / blocks / colour | real time (s) |")
    print("|---|---|---|---|---|---|")
    for label, r in results.items():
        r.update(artefacts(args.out / label / "real", SHARED / "data" / "real"))
        s5, s14 = r["sets"]["set5"], r["sets"]["set14"]
        t = "-" if label == "bicubic" else f"{r['real_seconds']:.1f}"
        print(f"| {label} | {s5['psnr_y']:.2f} / {s5['ssim_y']:.4f} | {s14['psnr_y']:.2f} / {s14['ssim_y']:.4f} | {r['real_niqe']:.3f} | {r['checker']:.2f} / {r['blocks']:.2f} / {r['colour']:.2f} | {t} |")
    pic = montage(args.out, list(results))
    (args.out / "summary.json").write_text(json.dumps(results, indent=1))
    print(f"\nmontage: {pic} (columns: {' | '.join(results)})")


if __name__ == "__main__":
    main()
