"""`esr upscale`: restore and enlarge images, videos or folders of them with a generator model.

A thin shell over the batch engine: parses options, expands the inputs
(:func:`esrcli.infer.plan.collect_inputs`), loads the model
(:func:`esrcli.infer.load_upscale_model`) and renders the events of
:func:`esrcli.infer.run_batch` (workers, memory admission, input order, skip/overwrite and
errors live there). One line per written file on stdout; progress, notices, errors and the
summary on stderr. A batch goes on past bad files and exits 1 if any failed. Under torchrun
each process takes every N-th input (:mod:`esrcli.infer.distributed`) and rank 0 prints the
summary of all.
"""

from __future__ import annotations

import contextlib
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer

from esrcli.cli import console
from esrcli.data.imageio import IMAGE_EXTENSIONS
from esrcli.errors import EsrError, ImageError

if TYPE_CHECKING:
    import numpy as np

EXTENSIONS = ("auto", "png", "jpg", "webp")
# Output files by name: an image (format by extension) or a video (container by extension).
_VIDEO_OUT = (".mp4", ".m4v", ".mov", ".mkv", ".webm")
# File types an OUT may name by mistake that esr cannot write: an error, not a folder so named.
_NOT_WRITTEN = (
    ".gif", ".avif", ".heic", ".heif", ".jxl", ".jp2", ".ico", ".tga", ".exr", ".hdr", ".psd", ".svg", ".pdf",
    ".txt", ".dng", ".avi", ".wmv", ".flv", ".mpg", ".mpeg",
)


def _output_dir_or_file(inputs: list[Path], out: Path) -> tuple[Path, Path | None]:
    """``(folder, file)``: OUT is a single output file when there is one input file and OUT
    has an image extension and is not an existing folder; otherwise OUT is a folder.

    Raises:
        typer.BadParameter: OUT has an image extension (and is no existing folder) but the
            inputs are several or a folder: `esr upscale a.png b.png out.png` is more likely a
            typo than a folder named so.
    """
    if out.suffix.lower() in _NOT_WRITTEN and not out.is_dir():
        raise typer.BadParameter(
            f"{out}: esr does not write {out.suffix} files; name a .png, .jpg, .webp, .tif or .bmp file "
            f"({', '.join(_VIDEO_OUT)} for a video), or a folder",
            param_hint="OUT",
        )
    image_name = out.suffix.lower() in IMAGE_EXTENSIONS + _VIDEO_OUT and not out.is_dir()
    if image_name and len(inputs) == 1 and inputs[0].is_file():
        return out.parent if str(out.parent) else Path("."), out
    if image_name and (len(inputs) > 1 or inputs[0].is_dir()):
        raise typer.BadParameter(
            f"{out} is a file name, but the inputs give several images (or a folder): name an output folder",
            param_hint="OUT",
        )
    return out, None


def _prepare_folder(folder: Path) -> list[Path]:
    """Create the output folder if needed and check it is writable.

    Returns:
        The folders created, outermost first (for :func:`esrcli.cli.console.remove_if_empty`).

    Raises:
        ImageError: it cannot be created or written (message names the folder).
    """
    import os

    created = console.make_folder(folder)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ImageError(f"{folder}: output folder is not writable")
    return created


def _fetch_with_progress(model: str) -> None:
    """Download a catalogued model named ``model`` with a progress bar, if it is neither a
    file, nor embedded, nor cached yet (``load_model`` would download it without a bar)."""
    from esrcli.weights.download import fetch_model
    from esrcli.weights.embedded import find_embedded
    from esrcli.weights.remote import cached_file, find_remote

    if Path(model).exists() or find_embedded(model) is not None:
        return
    remote = find_remote(model)
    if remote is None or cached_file(remote).is_file():
        return
    with console.download_progress(f"download {remote.name}") as progress:
        fetch_model(remote, progress=progress)


def _parse_denoise(text: str | None) -> float | str | None:
    """``--denoise``: ``None``, ``"auto"`` or a strength in ``[0, 1]``.

    Raises:
        typer.BadParameter: anything else (one line).
    """
    if text is None:
        return None
    t = text.strip().lower()
    if t == "auto":
        return "auto"
    try:
        value = float(t)
    except ValueError:
        raise typer.BadParameter(f"expected a number between 0 and 1 or auto, got {text!r}", param_hint="--denoise") from None
    if not 0.0 <= value <= 1.0:  # also NaN
        raise typer.BadParameter(f"must be between 0 and 1 (or auto), got {text}", param_hint="--denoise")
    return value


def _auto_denoise(color: "np.ndarray") -> float:
    """``--denoise auto``'s per-image strength: the degradation estimate's recommendation."""
    from esrcli.estimate.strength import auto_denoise

    return auto_denoise(color)


def upscale(
    ctx: typer.Context,
    paths: List[Path] = typer.Argument(..., metavar="IN... OUT", help="Input images, videos and/or folders, then the output folder (or file)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model file (.safetensors/.pth), embedded model name, or official model name (downloaded once); default: the embedded default model."),
    sharpness: Optional[float] = typer.Option(None, "--sharpness", help="0..1: blend an embedded model with its PSNR-stage partner (0 smooth, 1 the GAN model's full detail); see esr model list."),
    denoise: Optional[str] = typer.Option(None, "--denoise", metavar="S|auto", help="0..1 or auto: blend a model with its weak-denoise partner (1 full denoising, 0 keeps grain and fine texture; auto: per image from esr's degradation estimate, shown with --verbose). Models: esr-general-x4-net."),
    scale: Optional[float] = typer.Option(None, "--scale", "-s", help="Output size factor (any number > 0); default: the model's scale."),
    tile: Optional[int] = typer.Option(None, "--tile", "-t", min=0, help="Tile size in input pixels, at least 32; 0 = whole image in one pass (default: 512, to bound memory)."),
    tile_overlap: Optional[int] = typer.Option(
        None, "--tile-overlap", min=0, help="Overlap of neighbouring tiles in input pixels (feathered); default: 32, at most half the tile.", show_default=False
    ),
    ext: str = typer.Option("auto", "--ext", help="Output format: auto (as input; alpha/16-bit to jpg -> png), png, jpg, webp. Videos: .mp4."),
    suffix: str = typer.Option("", "--suffix", help="Appended to output file names, e.g. _out."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs (default: skip them)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Look into sub-folders (output keeps the folder layout)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option("auto", "--precision", help="auto, fp32, bf16 or fp16 (auto: fp16 on GPU, bf16 on CPUs with native bf16 when accurate, else fp32; 16-bit images fp32)."),
    alpha: str = typer.Option("network", "--alpha", help="Alpha channel upscaling: network or bicubic."),
    batch: int = typer.Option(1, "--batch", min=1, help="Tiles per forward pass."),
    quality: int = typer.Option(95, "--quality", "-q", min=1, max=100, help="JPEG/WebP quality."),
    jobs: int = typer.Option(0, "--jobs", "-j", min=0, help="Images processed at once, sharing the CPU threads; 0 = auto (2 on a CPU with 2+ threads, 1 on a GPU). Each one in flight needs its own memory: images that would not fit together run one at a time."),
    video_codec: Optional[str] = typer.Option(None, "--video-codec", help="Video encoder (FFmpeg name): libx264, libx265, libvpx-vp9, libsvtav1, ...; default: libvpx-vp9 in .webm, else libx264."),
    crf: int = typer.Option(17, "--crf", min=0, max=63, help="Video quality: constant rate factor (lower = better, larger; x264 17 is visually lossless)."),
) -> None:
    """Upscale images and videos (x4/x2/x1 models, any --scale) with seamless tiling, keeping gray, alpha, 16-bit, ICC, frame rate and audio."""
    if len(paths) < 2:
        raise typer.BadParameter("give at least one input and the output folder", param_hint="PATHS")
    ext = ext.lower().lstrip(".")
    precision = precision.strip().lower()
    if ext == "jpeg":
        ext = "jpg"
    if ext not in EXTENSIONS:
        raise typer.BadParameter(f"expected one of {', '.join(EXTENSIONS)}, got {ext!r}", param_hint="--ext")
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise typer.BadParameter(f"expected auto, fp32, bf16 or fp16, got {precision!r}", param_hint="--precision")
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", device.strip().lower()):
        raise typer.BadParameter(f"expected auto, cpu, cuda, cuda:N or mps, got {device!r}", param_hint="--device")
    if alpha not in ("network", "bicubic"):
        raise typer.BadParameter(f"expected network or bicubic, got {alpha!r}", param_hint="--alpha")
    if scale is not None and not (scale > 0 and math.isfinite(scale)):
        raise typer.BadParameter(f"must be a finite number > 0, got {scale}", param_hint="--scale")
    if sharpness is not None:
        console.check_unit_interval(sharpness, "--sharpness")
    denoise_value = _parse_denoise(denoise)
    if denoise_value is not None and sharpness is not None:
        raise typer.BadParameter("give --sharpness or --denoise, not both", param_hint="--denoise")
    from esrcli.infer.plan import DEFAULT_TILE_OVERLAP, MIN_TILE, collect_inputs, is_video

    if tile is not None and 0 < tile < MIN_TILE:
        raise typer.BadParameter(f"must be 0 (whole image) or at least {MIN_TILE}, got {tile}: a smaller tile shows its seams", param_hint="--tile")
    if tile_overlap is None:
        tile_overlap = min(DEFAULT_TILE_OVERLAP, tile // 2) if tile else DEFAULT_TILE_OVERLAP
    if tile and tile_overlap * 2 > tile:
        raise typer.BadParameter(f"at most half the tile ({tile // 2}), got {tile_overlap}", param_hint="--tile-overlap")
    if "/" in suffix or "\\" in suffix:
        raise typer.BadParameter("must not contain a path separator", param_hint="--suffix")

    inputs, out = [Path(p) for p in paths[:-1]], Path(paths[-1])
    out_dir, out_file = _output_dir_or_file(inputs, out)
    if out_file is not None and ext != "auto" and out_file.suffix.lower().lstrip(".").replace("jpeg", "jpg") != ext:
        console.warn(f"--ext {ext} ignored: the output file name {out_file.name} decides its format")
    if out_file is not None and suffix:
        console.warn(f"--suffix {suffix} ignored: the output is the file named {out_file.name}")
    # Inputs are never overwritten: an output folder that is an input's folder needs a suffix.
    if not suffix and out_file is None:
        for p in inputs:
            folder = p if p.is_dir() else p.parent
            if console.same_path(folder, out_dir):
                raise EsrError(f"{out_dir}: output folder is the input folder", "pass --suffix (e.g. _out) or another output folder")
    items = collect_inputs(inputs, out_dir, out_file, suffix=suffix, recursive=recursive)
    if out_file is not None and is_video(items[0].src) != (out_file.suffix.lower() in _VIDEO_OUT):
        kind = "a video" if is_video(items[0].src) else "an image"
        raise typer.BadParameter(f"{out_file}: the input is {kind}; name an output file of the same kind, or a folder", param_hint="OUT")
    created = _prepare_folder(out_dir)
    ctx.call_on_close(lambda: console.remove_if_empty(created))  # also when the run stops on an error

    # After the usage and path checks: torch takes over a second to import.
    from esrcli.infer import distributed
    from esrcli.infer.batch import (
        DEFAULT_TILE, BatchOptions, DenoiseChosen, Failed, Finished, FrameProgress, Notice, Skipped, Warned, Written, batch_jobs, run_batch,
    )
    from esrcli.infer.model import ModelSpec, load_upscale_model
    from esrcli.infer.upscale import UpscaleOptions
    from esrcli.infer.video import VideoError, VideoOptions, check_encoder, video_codec as codec_for

    # Each video's encoder, one its container holds and FFmpeg has: checked before the model loads.
    # (Videos found in a folder go to .mp4.)
    codecs = {codec_for(it.stem if it.exact else Path("video.mp4"), video_codec) for it in items if is_video(it.src)}
    try:
        for codec in sorted(codecs):
            check_encoder(codec)
    except VideoError:
        raise
    except EsrError:
        pass  # no PyAV: each video fails with that message, the images still run
    rank = distributed.rank_from_env()  # torchrun: this process takes every N-th input
    lead = rank is None or rank.rank == 0
    if tile is None:
        tile = DEFAULT_TILE
    options = BatchOptions(
        upscale=UpscaleOptions(outscale=scale, tile=tile, tile_overlap=min(tile_overlap, tile // 2), alpha=alpha, batch=batch),
        ext=ext, overwrite=overwrite, quality=quality, jobs=jobs, video=VideoOptions(codec=video_codec, crf=crf),
        denoise=_auto_denoise if denoise_value == "auto" else None,
    )
    if lead and model is not None:
        _fetch_with_progress(model)  # before the other ranks meet: they find it cached
    distributed.join(rank)
    pair_name = None
    if denoise_value is not None:  # no partner: one line before a model loads
        from esrcli.weights import default_model_name, denoise_pair

        # either end of the pair names the same blend: say it by its full-denoise end
        pair_name = denoise_pair(model if model is not None else default_model_name() or "")[0]
    fixed = denoise_value if isinstance(denoise_value, float) else None
    loaded = load_upscale_model(ModelSpec(model, distributed.rank_device(device, rank), precision, sharpness, fixed))
    if denoise_value == "auto":
        loaded.check_denoise()
    if loaded.precision.note and lead:  # a requested precision not honoured (or slow): a warning
        if precision == "auto":
            console.info(f"esr: {loaded.precision.note}")
        else:
            console.warn(loaded.precision.note)
    mine = distributed.shard(items, rank)
    n_jobs = batch_jobs(jobs, loaded.device, len(mine))
    info = loaded.info
    tiling = f"tile {tile}, overlap {options.upscale.tile_overlap}" if tile else "no tiling"
    at_once = f", {n_jobs} at a time" if n_jobs > 1 else ""
    ranks = f" over {rank.world_size} processes" if rank is not None else ""
    what = "file(s)" if any(is_video(it.src) for it in items) else "image(s)"
    if lead:
        blend = f" at sharpness {sharpness:g}" if sharpness is not None else ""
        if denoise_value is not None:
            blend = f" at denoise {denoise_value:g}" if isinstance(denoise_value, float) else " at denoise auto (per image)"
        console.info(f"esr: model {pair_name or loaded.name}{blend} ({info.arch} x{info.scale}) on {loaded.device} in {loaded.precision.name}, "
                     f"{tiling}; {len(items)} {what}{ranks}{at_once}")

    counts = [0, 0, 0]
    seconds = 0.0
    with contextlib.ExitStack() as stack:
        # One progress display: rank 0's (the other ranks print their results and errors only).
        bar = stack.enter_context(console.progress("upscale", total=len(mine))) if lead else None
        events = stack.enter_context(contextlib.closing(run_batch(mine, loaded, options)))
        for ev in events:
            if isinstance(ev, FrameProgress):
                if bar is not None:
                    bar.frames(ev.src.name, ev.done, ev.total, ev.fps, ev.eta)
            elif isinstance(ev, Warned):
                console.warn(ev.message)
            elif isinstance(ev, DenoiseChosen):
                if console.state.verbose:
                    console.info(f"esr: {ev.src}: denoise auto chose {ev.strength:.2f}")
            elif isinstance(ev, Notice):
                console.info(f"esr: {ev.message}")
            elif isinstance(ev, Skipped):
                console.info(f"esr: skip {ev.src}: {ev.dst} exists (use --overwrite)")
            elif isinstance(ev, Written):
                console.line(str(ev.dst))  # one write per line: ranks under torchrun share stdout
            elif isinstance(ev, Failed):
                console.error(ev.message, ev.hint)
            elif isinstance(ev, Finished):
                counts, seconds = [ev.written, ev.skipped, ev.failed], ev.seconds
            if isinstance(ev, (Skipped, Written, Failed)) and bar is not None:
                bar()
    written, skipped, failed = distributed.sum_over_ranks(counts, rank)
    (seconds,) = distributed.max_over_ranks([seconds], rank)
    distributed.finish(rank)
    if lead:
        rate = written / seconds if seconds > 0 else 0.0
        console.info(f"esr: upscale: {written} written, {skipped} skipped, {failed} failed in {seconds:.1f} s ({rate:.2f} img/s)")
    if failed:  # summed over ranks: under torchrun every rank exits 1, so none is sent SIGTERM mid-exit
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add the ``upscale`` command to the root app."""
    app.command("upscale", no_args_is_help=True)(upscale)
