"""``esr eval SR GT --scale 4``: PSNR/SSIM (RGB and Y) against ground truth, and NIQE, per image.

SR and GT are two files or two folders; in folders, images are paired by file stem
(``baby.png`` with ``baby.bmp``; ``--sr-suffix _out`` also pairs ``baby_out.png``). Unpaired or
ambiguous names, unreadable files and mismatched sizes are reported on stderr and skipped;
the others are printed (table, ``--json`` or ``--csv``) and the command exits 1 at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from esrcli.cli import console
from esrcli.cli.niqe import emit, error_text, output_format
from esrcli.data.imageio import list_images
from esrcli.errors import DataError, EsrError

__all__ = ["register", "pair_images"]

_COLUMNS = [("psnr", "PSNR", 4), ("ssim", "SSIM", 4), ("psnr_y", "PSNR-Y", 4), ("ssim_y", "SSIM-Y", 4), ("niqe", "NIQE", 4)]


def _stem(f: Path, suffix: str) -> str:
    """The pairing name of ``f``: its stem without ``suffix``."""
    stem = f.stem
    return stem[: -len(suffix)] if suffix and stem.endswith(suffix) and len(stem) > len(suffix) else stem


def _by_stem(files: list[Path], suffix: str) -> tuple[dict[str, Path], list[tuple[Path, str]]]:
    found: dict[str, list[Path]] = {}
    for f in files:
        found.setdefault(_stem(f, suffix), []).append(f)
    unique = {s: fs[0] for s, fs in found.items() if len(fs) == 1}
    problems = [
        (fs[0], f"{fs[0]}: ambiguous name '{s}' (also {', '.join(str(x) for x in fs[1:])}); skipped")
        for s, fs in found.items()
        if len(fs) > 1
    ]
    return unique, problems


def pair_images(sr: Path, gt: Path, sr_suffix: str = "") -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """Pair SR and GT images by file stem.

    Args:
        sr: an SR image file or a folder of them.
        gt: a ground-truth image file or folder.
        sr_suffix: removed from the end of SR stems before matching (e.g. ``"_out"``).

    Returns:
        ``(pairs, problems)``: ``(sr_file, gt_file)`` sorted by SR name, and ``(path, message)``
        for SR images without ground truth, ground truth without SR, and ambiguous names.

    Raises:
        DataError: a path does not exist, or SR is a folder but GT a file.
    """
    for p in (sr, gt):
        if not p.exists():
            raise DataError(f"{p}: no such file or folder")
    if sr.is_dir() and not gt.is_dir():
        raise DataError(f"{gt}: SR is a folder, so GT must be a folder too")
    if not sr.is_dir():
        if not gt.is_dir():
            return [(sr, gt)], []
        sr_files = [sr]
    else:
        sr_files = list_images([sr])
    sr_map, problems = _by_stem(sr_files, sr_suffix)
    sr_ambiguous = {_stem(f, sr_suffix) for f, _ in problems}
    gt_map, gt_problems = _by_stem(list_images([gt]), "")
    problems += gt_problems
    gt_ambiguous = {_stem(f, "") for f, _ in gt_problems}
    pairs = []
    for stem in sorted(sr_map):
        if stem in gt_map:
            pairs.append((sr_map[stem], gt_map[stem]))
        elif stem in gt_ambiguous:
            problems.append((sr_map[stem], f"{sr_map[stem]}: more than one ground truth named '{stem}.*' in {gt} (see above); skipped"))
        else:
            problems.append((sr_map[stem], f"{sr_map[stem]}: no ground truth named '{stem}.*' in {gt}; skipped"))
    if sr.is_dir():
        for stem in sorted(set(gt_map) - set(sr_map) - sr_ambiguous):  # ambiguous ones: reported above
            problems.append((gt_map[stem], f"{gt_map[stem]}: no SR image named '{stem}{sr_suffix}.*' in {sr}; skipped"))
    return pairs, problems


def eval_cmd(
    sr: Path = typer.Argument(..., help="SR image, or folder of SR images.", show_default=False, metavar="SR"),
    gt: Path = typer.Argument(..., help="Ground-truth image, or folder (paired by file name).", show_default=False, metavar="GT"),
    scale: int = typer.Option(4, "--scale", "-s", min=1, help="SR factor (default crop border; GT mod-crop)."),
    crop_border: Optional[int] = typer.Option(None, "--crop-border", min=0, help="Pixels removed on each side (default: the scale)."),
    sr_suffix: str = typer.Option("", "--sr-suffix", help="Suffix of SR file stems to ignore when pairing (e.g. _out)."),
    no_niqe: bool = typer.Option(False, "--no-niqe", help="Skip NIQE (faster)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV (one row per image, last row: mean) on stdout."),
) -> None:
    """PSNR and SSIM (RGB and Y, BasicSR conventions) against ground truth, and NIQE, per image and mean."""
    from esrcli.metrics.evaluate import evaluate_pair
    from esrcli.metrics.image import read_uint8

    fmt = output_format(as_json, as_csv)
    border = scale if crop_border is None else crop_border
    pairs, skipped = pair_images(sr, gt, sr_suffix)
    for _, msg in skipped:
        console.error(msg)
    if not pairs and not skipped:
        raise DataError(f"{sr}: no images found")
    rows: list[tuple[str, dict[str, float | None]]] = []
    with console.progress("eval", total=len(pairs)) as advance:
        for sr_path, gt_path in pairs:
            try:
                scores = evaluate_pair(read_uint8(sr_path), read_uint8(gt_path), scale, border, with_niqe=not no_niqe)
            except EsrError as exc:
                msg = error_text(sr_path, exc)
                if str(gt_path) not in msg:
                    msg += f" (gt: {gt_path})"
                console.error(msg)
                skipped.append((sr_path, msg))
                advance()
                continue
            if scores.gt_cropped:
                console.info(f"{gt_path}: cropped to a multiple of the scale ({scale}) to match {sr_path}")
            if scores.niqe_error:
                why = scores.niqe_error
                msg = f"{sr_path}: {why}" if "NIQE" in why else f"{sr_path}: NIQE not computed: {why}"
                console.error(msg)
                skipped.append((sr_path, msg))
            rows.append((str(sr_path), scores.as_dict()))
            advance()
    columns = [c for c in _COLUMNS if not (no_niqe and c[0] == "niqe")]
    emit(columns, rows, skipped, fmt, {"scale": scale, "crop_border": border})
    if skipped:
        console.info(f"eval: {len(rows)} image(s) evaluated, {len(skipped)} problem(s)")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``esr eval`` to the root app."""
    app.command("eval")(eval_cmd)
