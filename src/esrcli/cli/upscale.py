"""`esr upscale`: restore and enlarge images or folders of images with a generator model.

Parses options, expands inputs, reads them and checks their output names in input order,
hands each to a worker (:class:`esrcli.infer.workers.WorkerPool`; several images in flight
on the CPU) and reports in input order; the work happens in :mod:`esrcli.infer`. One line
per written file on stdout; progress, notices, errors and the summary on stderr. A batch
goes on past bad files and exits 1 if any failed.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import typer

from esrcli.cli import console
from esrcli.data.imageio import IMAGE_EXTENSIONS, Image, list_images, read_image, write_image
from esrcli.errors import EsrError, ImageError, WeightsError

EXTENSIONS = ("auto", "png", "jpg", "webp")
# Input pixels: bounds the activations (an x4 RRDBNet's tail runs at output resolution).
# On 2 CPU cores 512 was the fastest of 256/384/512 for both generators on photo-sized
# inputs (benchmarks/bench_upscale.py --tiles): less work is spent on overlaps.
DEFAULT_TILE = 512
# Images in flight together may take this share of the memory available when the batch
# starts (by esrcli.infer.upscale.working_memory's estimate); an image that would go over
# waits until it fits or runs alone. One image always runs.
MEMORY_SHARE = 0.8
_NO_ALPHA_OR_16BIT = (".jpg", ".jpeg", ".bmp")


def _output_dir_or_file(inputs: list[Path], out: Path) -> tuple[Path, Path | None]:
    """``(folder, file)``: OUT is a single output file when there is one input file and OUT
    has an image extension and is not an existing folder; otherwise OUT is a folder.

    Raises:
        typer.BadParameter: OUT has an image extension (and is no existing folder) but the
            inputs are several or a folder: `esr upscale a.png b.png out.png` is more likely a
            typo than a folder named so.
    """
    image_name = out.suffix.lower() in IMAGE_EXTENSIONS and not out.is_dir()
    if image_name and len(inputs) == 1 and inputs[0].is_file():
        return out.parent if str(out.parent) else Path("."), out
    if image_name and (len(inputs) > 1 or inputs[0].is_dir()):
        raise typer.BadParameter(
            f"{out} is a file name, but the inputs give several images (or a folder): name an output folder",
            param_hint="OUT",
        )
    return out, None


def _prepare_folder(folder: Path) -> None:
    """Create the output folder if needed and check it is writable.

    Raises:
        ImageError: it cannot be created or written (message names the folder).
    """
    import os

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ImageError(f"{folder}: output path exists and is not a folder") from None
    except OSError as exc:
        raise ImageError(f"{folder}: cannot create output folder ({exc.strerror or exc})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ImageError(f"{folder}: output folder is not writable")


def _target_ext(src: Path, ext: str, image: Image | None) -> str | None:
    """Output extension; ``None`` when it depends on the pixels and ``image`` is not read yet."""
    if ext != "auto":
        return "." + ext
    suffix = src.suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        suffix = ".png"
    if suffix in (".jpg", ".jpeg"):
        return suffix  # JPEG input: never alpha or 16-bit
    if suffix in _NO_ALPHA_OR_16BIT:
        if image is None:
            return None
        if image.alpha is not None or image.bit_depth == 16:
            return ".png"
    return suffix


class _Cancelled(Exception):
    """Raised in a worker once the run is interrupted: stop before the next tile."""


@dataclass
class _Job:
    """One input of the batch: its worker's future, or why it was skipped or failed early."""

    src: Path
    dst: Path | None = None
    future: Future[list[str]] | None = None
    image: Image | None = None  # read, waiting for a worker
    cost: int = 0  # estimated working memory in bytes (esrcli.infer.upscale.working_memory)
    warnings: list[str] = field(default_factory=list)
    skip: str | None = None
    error: BaseException | None = None


def _megabytes(n: int) -> str:
    return f"{n / 1e6:,.0f} MB"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def upscale(
    paths: List[Path] = typer.Argument(..., metavar="IN... OUT", help="Input images and/or folders, then the output folder (or file)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model file (.safetensors/.pth) or embedded model name; default: the embedded default model."),
    sharpness: Optional[float] = typer.Option(None, "--sharpness", help="0..1: blend an embedded model with its PSNR-stage partner (0 smooth, 1 the GAN model's full detail); see esr model list."),
    scale: Optional[float] = typer.Option(None, "--scale", "-s", help="Output size factor (any number > 0); default: the model's scale."),
    tile: Optional[int] = typer.Option(None, "--tile", "-t", min=0, help="Tile size in input pixels; 0 = whole image in one pass (default: 512, to bound memory)."),
    tile_overlap: int = typer.Option(32, "--tile-overlap", min=0, help="Overlap of neighbouring tiles in input pixels (feathered)."),
    ext: str = typer.Option("auto", "--ext", help="Output format: auto (as input; alpha/16-bit to jpg -> png), png, jpg, webp."),
    suffix: str = typer.Option("", "--suffix", help="Appended to output file names, e.g. _out."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs (default: skip them)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Look into sub-folders (output keeps the folder layout)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option("auto", "--precision", help="auto, fp32, bf16 or fp16 (auto: fp16 on GPU, bf16 on CPUs with native bf16 when accurate, else fp32; 16-bit images fp32)."),
    alpha: str = typer.Option("network", "--alpha", help="Alpha channel upscaling: network or bicubic."),
    batch: int = typer.Option(1, "--batch", min=1, help="Tiles per forward pass."),
    quality: int = typer.Option(95, "--quality", "-q", min=1, max=100, help="JPEG/WebP quality."),
    jobs: int = typer.Option(0, "--jobs", "-j", min=0, help="Images processed at once, sharing the CPU threads; 0 = auto (2 on a CPU with 2+ threads, 1 on a GPU). Each one in flight needs its own memory: images that would not fit together run one at a time."),
) -> None:
    """Upscale images (x4/x2/x1 models, any --scale) with seamless tiling, keeping gray, alpha, 16-bit and ICC."""
    if len(paths) < 2:
        raise typer.BadParameter("give at least one input and the output folder", param_hint="PATHS")
    ext = ext.lower().lstrip(".")
    precision = precision.strip().lower()
    if ext == "jpeg":
        ext = "jpg"
    if ext not in EXTENSIONS:
        raise typer.BadParameter(f"expected one of {', '.join(EXTENSIONS)}, got {ext!r}", param_hint="--ext")
    if alpha not in ("network", "bicubic"):
        raise typer.BadParameter(f"expected network or bicubic, got {alpha!r}", param_hint="--alpha")
    if scale is not None and not (scale > 0 and math.isfinite(scale)):
        raise typer.BadParameter(f"must be a finite number > 0, got {scale}", param_hint="--scale")
    if sharpness is not None and not 0.0 <= sharpness <= 1.0:
        raise typer.BadParameter(f"must be between 0 and 1, got {sharpness}", param_hint="--sharpness")
    if tile and tile_overlap * 2 > tile:
        raise typer.BadParameter(f"at most half the tile ({tile // 2}), got {tile_overlap}", param_hint="--tile-overlap")
    if "/" in suffix or "\\" in suffix:
        raise typer.BadParameter("must not contain a path separator", param_hint="--suffix")

    inputs, out = [Path(p) for p in paths[:-1]], Path(paths[-1])
    out_dir, out_file = _output_dir_or_file(inputs, out)
    # Inputs are never overwritten: an output folder that is an input's folder needs a suffix.
    if not suffix and out_file is None:
        for p in inputs:
            folder = p if p.is_dir() else p.parent
            if _same_file(folder, out_dir):
                raise EsrError(f"{out_dir}: output folder is the input folder", "pass --suffix (e.g. _out) or another output folder")
    files: list[tuple[Path, Path]] = []  # (input file, output path without extension)
    for p in inputs:
        if p.is_dir():
            for f in list_images([p], recursive=recursive):
                rel = f.relative_to(p)
                files.append((f, out_dir / rel.parent / (rel.stem + suffix)))
        else:
            found = list_images([p])
            for f in found:
                stem = out_file.with_suffix("") if out_file is not None else out_dir / (f.stem + suffix)
                files.append((f, stem))
    if not files:
        raise ImageError(f"{', '.join(map(str, inputs))}: no images found ({', '.join(IMAGE_EXTENSIONS)})")
    _prepare_folder(out_dir)

    # After the usage and path checks: torch takes over a second to import.
    import torch

    from esrcli.infer import UpscaleOptions, prepare_model, release_memory, select_device, select_precision, upscale_image
    from esrcli.infer.upscale import working_memory
    from esrcli.infer.workers import WorkerPool, default_jobs
    from esrcli.memory import available_memory
    from esrcli.weights import default_model_name, load_model

    name = model if model is not None else default_model_name()
    if name is None:
        raise WeightsError("no default model is embedded yet; pass --model NAME|PATH (a .safetensors or .pth file)")
    dev = select_device(device)
    if tile is None:
        tile = DEFAULT_TILE
    options = UpscaleOptions(outscale=scale, tile=tile, tile_overlap=min(tile_overlap, tile // 2), alpha=alpha, batch=batch)
    net, info = load_model(name, device="cpu", sharpness=sharpness)
    if info.arch not in ("RRDBNet", "SRVGGNetCompact"):
        raise WeightsError(f"{name}: {info.arch} is not an image generator")
    prec = select_precision(precision, dev, net, int(info.params.get("num_in_ch", 3)), key=(str(name), sharpness))
    if prec.note:
        console.info(f"esr: {prec.note}")
    nets = {prec.dtype: prepare_model(net, dev, prec.dtype)}
    del net
    release_memory()

    def net_for(image: Image) -> torch.nn.Module:
        # Automatic half precision would round 16-bit samples to ~8-11 bits: those run in fp32
        # (the fp32 network is loaded again when first needed, to keep memory low otherwise).
        dtype = torch.float32 if precision == "auto" and image.bit_depth == 16 else prec.dtype
        if dtype not in nets:
            nets[dtype] = prepare_model(load_model(name, device="cpu", sharpness=sharpness)[0], dev, dtype)
            release_memory()
        return nets[dtype]

    jobs = min(jobs or default_jobs(dev), len(files))
    tiling = f"tile {tile}, overlap {options.tile_overlap}" if tile else "no tiling"
    at_once = f", {jobs} at a time" if jobs > 1 else ""
    blend = f" at sharpness {sharpness:g}" if sharpness is not None else ""
    console.info(f"esr: model {name}{blend} ({info.arch} x{info.scale}) on {dev} in {prec.name}, {tiling}; {len(files)} image(s){at_once}")
    cancel = threading.Event()

    def between_tiles(done: int = 0, total: int = 0) -> None:
        if cancel.is_set():
            raise _Cancelled
        pool.rebalance()

    def work(image: Image, net: torch.nn.Module, dst: Path) -> list[str]:
        """Upscale and write one image (in a worker); returns the pass's notices."""
        notes: list[str] = []
        result = upscale_image(image, net, info, options, notify=notes.append, progress=between_tiles)
        if cancel.is_set():
            raise _Cancelled
        dst.parent.mkdir(parents=True, exist_ok=True)
        write_image(dst, result, quality=quality)
        del result, image
        # Freed memory stays mapped during each image's pass (tiled_forward); between
        # images it goes back, so that images of other sizes do not pile up the heap.
        release_memory()
        return notes

    def start(src: Path, stem: Path) -> _Job:
        """Read one input and check its output name (in order, here); :func:`admit` hands it
        to a worker."""
        early = out_file or (stem.with_name(stem.name + e) if (e := _target_ext(src, ext, None)) else None)
        if early is not None and early.exists() and not overwrite and early.resolve() not in input_set:
            return _Job(src, skip=f"esr: skip {src}: {early} exists (use --overwrite)")
        image = read_image(src)
        dst = out_file or stem.with_name(stem.name + (_target_ext(src, ext, image) or ".png"))
        resolved = dst.resolve()
        if resolved in input_set:
            raise ImageError(f"{src}: output {dst} would overwrite an input", "pass --suffix or another output folder")
        if resolved in seen:
            raise ImageError(f"{src}: output {dst} was already written by another input of this run")
        seen.add(resolved)
        if dst.exists() and not overwrite:
            return _Job(src, skip=f"esr: skip {src}: {dst} exists (use --overwrite)")
        warnings = []
        if image.frames > 1:
            warnings.append(f"{src}: {image.frames} frames or pages; only the first is upscaled")
        if ext == "jpg" and image.alpha is not None:
            warnings.append(f"{src}: JPEG has no alpha channel; alpha dropped (use --ext png to keep it)")
        return _Job(src, dst=dst, warnings=warnings, image=image, cost=working_memory(image, info, options))

    def finish(job: _Job) -> None:
        """Report one input, in input order: wait for its worker, print what happened."""
        nonlocal written, skipped, failed
        try:
            for message in job.warnings:
                console.warn(message)
            if job.error is not None:
                raise job.error
            if job.skip is not None:
                console.info(job.skip)
                skipped += 1
                return
            assert job.future is not None
            for note in job.future.result():
                console.warn(f"{job.src}: {note}")
            written += 1
            print(job.dst, flush=True)  # the progress bar does not redirect stdout
        except EsrError as exc:
            failed += 1
            msg = str(exc)
            console.error(msg if str(job.src) in msg else f"{job.src}: {msg}", exc.hint)
        except (ValueError, RuntimeError, MemoryError, OSError) as exc:
            failed += 1
            console.error(f"{job.src}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")

    written = skipped = failed = 0
    seen: set[Path] = set()
    input_set = {f.resolve() for f, _ in files}
    t0 = time.perf_counter()
    # Up to `jobs` images are in flight; the next one is read while the workers are busy and
    # starts when a worker is free and it fits in the memory budget. Results are reported in
    # input order, as soon as everything before them is.
    pending: deque[_Job] = deque()

    def report_ready() -> None:
        while pending and (pending[0].future is None or pending[0].future.done()):
            finish(pending.popleft())
            advance()

    avail = available_memory()
    budget = None if avail is None or jobs == 1 else int(avail * MEMORY_SHARE)
    told_memory = False

    def admit(job: _Job) -> None:
        """Wait for a free worker and, with others in flight, for room in the memory budget;
        then start ``job`` on a worker."""
        nonlocal told_memory
        assert job.image is not None and job.dst is not None
        if avail is not None and job.cost > avail:
            console.warn(f"{job.src}: needs about {_megabytes(job.cost)} of memory, more than the {_megabytes(avail)} "
                         "available: it may fail (a smaller --scale needs less)")
        while running := [j for j in pending if j.future is not None and not j.future.done()]:
            room = budget is None or sum(j.cost for j in running) + job.cost <= budget
            if len(running) < jobs and room:
                break
            if not room and not told_memory:
                console.info(f"esr: {job.src} needs about {_megabytes(job.cost)}: it waits until it fits in the "
                             f"{_megabytes(budget or 0)} free for images (large images run one at a time)")
                told_memory = True
            with pool.waiting_for_room():  # an image left alone meanwhile takes all threads
                wait([j.future for j in running], return_when=FIRST_COMPLETED)
            report_ready()
        job.future = pool.submit(work, job.image, net_for(job.image), job.dst)
        job.image = None

    with console.progress("upscale", total=len(files)) as advance, WorkerPool(jobs) as pool:
        try:
            for i, (src, stem) in enumerate(files, 1):
                try:
                    job = start(src, stem)  # read while the workers are busy
                    if job.image is not None:
                        admit(job)
                except (EsrError, ValueError, RuntimeError, MemoryError, OSError) as exc:
                    job = _Job(src, error=exc)
                pending.append(job)
                if i == len(files):
                    pool.no_more_work()
                report_ready()
            while pending:
                finish(pending.popleft())
                advance()
        except BaseException:
            cancel.set()  # Ctrl-C: the workers stop at their next tile; nothing half-written
            raise
    dt = time.perf_counter() - t0
    rate = written / dt if dt > 0 else 0.0
    console.info(f"esr: upscale: {written} written, {skipped} skipped, {failed} failed in {dt:.1f} s ({rate:.2f} img/s)")
    if failed:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add the ``upscale`` command to the root app."""
    app.command("upscale", no_args_is_help=True)(upscale)
