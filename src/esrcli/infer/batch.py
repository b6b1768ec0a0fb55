"""The batch engine behind ``esr upscale``: many files in, one event per file out, in input order.

:func:`collect_inputs` expands files and folders into :class:`BatchItem` s (input file and
output path without extension); :func:`run_batch` reads each input, checks its output name
(skip existing, never overwrite an input, never write one output twice), hands images to a
:class:`esrcli.infer.workers.WorkerPool` (several in flight on a CPU, within the memory
budget of :func:`esrcli.infer.upscale.working_memory` against
:func:`esrcli.memory.available_memory`), runs videos (:mod:`esrcli.infer.video`) one at a
time with all threads, and yields what happened as events, in input order:

- :class:`Notice`: a line about the batch (an image waits for memory);
- :class:`Warned`: a warning about one input, before its result;
- :class:`DenoiseChosen`: the strength that ``BatchOptions.denoise`` chose for one image,
  before its result;
- :class:`FrameProgress`: frames of a video done so far, with frames/s and ETA;
- :class:`Written`, :class:`Skipped`, :class:`Failed`: one of them per input;
- :class:`Finished`: the counts, last.

A bad file is a :class:`Failed` event with the typed error (the batch goes on); breaking off
the iteration (``Ctrl-C``, ``close()``) stops the workers before their next tile, and an
interrupted output is never left half-written (outputs are written atomically).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Union

import numpy as np

from esrcli.data.imageio import DEEP_EXTENSIONS, MAX_PIXELS, NO_ALPHA_EXTENSIONS, Image, read_image, write_image
from esrcli.errors import ConfigError, EsrError, ImageError, folder_failure
from esrcli.infer.model import UpscaleModel, round_strength
from esrcli.infer.upscale import UpscaleOptions, output_size, size_text, upscale_image, working_memory
from esrcli.infer.plan import BatchItem, collect_inputs, is_video, list_inputs, target_ext
from esrcli.infer.video import VideoOptions, upscale_video
from esrcli.infer.workers import WorkerPool, default_jobs
from esrcli.memory import available_memory, release_memory

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_TILE",
    "MEMORY_SHARE",
    "OUTPUT_EXTENSIONS",
    "BatchItem",
    "BatchOptions",
    "DenoiseChosen",
    "Event",
    "Failed",
    "Finished",
    "FrameProgress",
    "Notice",
    "Skipped",
    "Warned",
    "Written",
    "batch_jobs",
    "collect_inputs",
    "list_inputs",
    "run_batch",
    "target_ext",
]

# Input pixels: bounds the activations (an x4 RRDBNet's tail runs at output resolution).
# On 2 CPU cores 512 was the fastest of 256/384/512 for both generators on photo-sized
# inputs (benchmarks/bench_upscale.py --tiles): less work is spent on overlaps.
DEFAULT_TILE = 512
# Images in flight together may take this share of the memory available when the batch
# starts (by working_memory's estimate); an image that would go over waits until it fits or
# runs alone. One image always runs.
MEMORY_SHARE = 0.8
OUTPUT_EXTENSIONS = ("auto", "png", "jpg", "webp")
# Errors that make one input fail (reported, the batch goes on); anything else is a bug.
_FILE_ERRORS = (EsrError, ValueError, RuntimeError, MemoryError, OSError)


@dataclass(frozen=True)
class BatchOptions:
    """How :func:`run_batch` writes its outputs.

    Attributes:
        upscale: the :class:`esrcli.infer.UpscaleOptions` of every image and frame.
        ext: output format of images: ``auto`` (as the input; alpha or 16-bit from
            JPEG/BMP go to PNG), ``png``, ``jpg`` or ``webp``. Videos go to ``.mp4``.
        overwrite: replace existing outputs (default: skip them).
        quality: JPEG/WebP quality 1..100.
        jobs: images in flight at once; 0 = :func:`esrcli.infer.workers.default_jobs`.
        memory_share: share of the available memory that the images in flight may take.
        video: the :class:`esrcli.infer.video.VideoOptions` of videos.
        denoise: per-image denoise strength (``--denoise auto``): called with each image's
            colour samples, float32 ``(H, W, 3)`` RGB or ``(H, W, 1)`` gray in ``[0, 1]``
            (in the worker, before its pass), it returns a strength that is clipped to
            ``[0, 1]`` and rounded (:meth:`esrcli.infer.UpscaleModel.net_for`); the image
            then runs through the model interpolated with its weak-denoise partner. ``None``:
            the model as loaded. Videos ignore it (a warning says so).

    Raises:
        ConfigError: an unknown ``ext``; ``quality`` not an integer 1..100; ``jobs`` not an
            integer >= 0; ``memory_share`` not in ``(0, 1]``; ``overwrite`` not a bool;
            ``upscale`` / ``video`` of the wrong type (the message names the field).
    """

    upscale: UpscaleOptions = UpscaleOptions(tile=DEFAULT_TILE)
    ext: str = "auto"
    overwrite: bool = False
    quality: int = 95
    jobs: int = 0
    memory_share: float = MEMORY_SHARE
    video: VideoOptions = VideoOptions()
    denoise: Optional[Callable[[np.ndarray], float]] = None

    def __post_init__(self) -> None:
        if self.ext not in OUTPUT_EXTENSIONS:
            raise ConfigError(f"ext: expected one of {', '.join(OUTPUT_EXTENSIONS)}, got {self.ext!r}")
        if not isinstance(self.upscale, UpscaleOptions):
            raise ConfigError(f"upscale: expected UpscaleOptions, got {type(self.upscale).__name__}")
        if not isinstance(self.video, VideoOptions):
            raise ConfigError(f"video: expected VideoOptions, got {type(self.video).__name__}")
        if not isinstance(self.overwrite, bool):
            raise ConfigError(f"overwrite: expected true or false, got {self.overwrite!r}")
        if isinstance(self.quality, bool) or not isinstance(self.quality, int) or not 1 <= self.quality <= 100:
            raise ConfigError(f"quality: expected an integer 1..100, got {self.quality!r}")
        if isinstance(self.jobs, bool) or not isinstance(self.jobs, int) or self.jobs < 0:
            raise ConfigError(f"jobs: expected an integer >= 0 (0: automatic), got {self.jobs!r}")
        share = self.memory_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
            raise ConfigError(f"memory_share: expected a number in (0, 1], got {share!r}")


@dataclass(frozen=True)
class Notice:
    """A line about the batch as a whole (not about one input's result)."""

    message: str


@dataclass(frozen=True)
class Warned:
    """A warning about one input (``message`` names the input), before its result."""

    src: Path
    message: str


@dataclass(frozen=True)
class DenoiseChosen:
    """``BatchOptions.denoise`` chose ``strength`` (rounded) for ``src``, before its result."""

    src: Path
    strength: float


@dataclass(frozen=True)
class FrameProgress:
    """Progress through one video: ``done`` of ``total`` frames (``total`` ``None`` when the
    container does not say), frames/s so far and the estimated seconds left (or ``None``)."""

    src: Path
    done: int
    total: int | None
    fps: float
    eta: float | None


@dataclass(frozen=True)
class Written:
    """``src`` was upscaled to ``dst``."""

    src: Path
    dst: Path


@dataclass(frozen=True)
class Skipped:
    """``src`` was not processed: its output ``dst`` exists (and overwriting is off)."""

    src: Path
    dst: Path


@dataclass(frozen=True)
class Failed:
    """``src`` failed with ``error`` (an :class:`esrcli.errors.EsrError`, or an OS / memory /
    runtime error); :attr:`message` is its one-line text naming the file."""

    src: Path
    error: BaseException

    @property
    def message(self) -> str:
        """One line: the error's message with the file name in front (once)."""
        if isinstance(self.error, EsrError):
            msg = str(self.error)
            return msg if str(self.src) in msg else f"{self.src}: {msg}"
        text = str(self.error).splitlines()
        return f"{self.src}: {type(self.error).__name__}: {text[0] if text else ''}"

    @property
    def hint(self) -> str | None:
        """The error's hint line, if any."""
        return getattr(self.error, "hint", None)


@dataclass(frozen=True)
class Finished:
    """The batch is over: counts and wall time in seconds."""

    written: int
    skipped: int
    failed: int
    seconds: float


Event = Union[Notice, Warned, DenoiseChosen, FrameProgress, Written, Skipped, Failed, Finished]


def _megabytes(n: int) -> str:
    return f"{n / 1e6:,.0f} MB"


class _Cancelled(Exception):
    """Raised in a worker once the run is interrupted: stop before the next tile."""


@dataclass
class _Job:
    """One input of the batch: its worker's future, or why it was skipped or failed early."""

    src: Path
    dst: Path | None = None
    future: Future[tuple[list[str], float | None, bool]] | None = None
    image: Image | None = None  # read, waiting for a worker
    video: bool = False  # a video, run when everything before it is reported
    cost: int = 0  # estimated working memory in bytes (working_memory)
    warnings: list[str] = field(default_factory=list)
    skip: bool = False
    error: BaseException | None = None


def _check_folder(src: Path, folder: Path) -> None:
    """Check that ``folder`` is, or can become, a folder: the nearest of it and its parents
    that exists must be a folder (checked before the network runs, not after).

    Raises:
        ImageError: a file stands where a folder is needed (names the input and the file).
    """
    p = folder
    while not p.exists() and p != p.parent:
        p = p.parent
    if p.exists() and not p.is_dir():
        raise ImageError(f"{src}: cannot write into {folder}: {p} exists and is not a folder")


def _make_parent(src: Path, dst: Path) -> None:
    """Create the folder ``dst`` goes into.

    Raises:
        ImageError: it cannot be created (names the input and the folder).
    """
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageError(f"{src}: {folder_failure(dst.parent, exc)}") from None


def batch_jobs(jobs: int, device: "torch.device", count: int) -> int:
    """Images in flight for a batch of ``count`` inputs: ``jobs``, or 0 = the default for the
    device (:func:`esrcli.infer.workers.default_jobs`), at most ``count``, at least 1."""
    return max(1, min(jobs or default_jobs(device), count))


def run_batch(items: Sequence[BatchItem], model: UpscaleModel, options: BatchOptions = BatchOptions()) -> Iterator[Event]:
    """Upscale ``items`` with ``model``; yield what happens, one result per item in input order.

    Images are read one at a time in the calling thread and upscaled on up to
    ``options.jobs`` workers (:func:`batch_jobs`) that share the CPU threads; an image starts
    when a worker is free and it fits in the memory budget (``options.memory_share`` of what
    is available when the batch starts) beside the images in flight, or alone. A video waits
    for the images before it and runs in the calling thread with all threads, frame by frame
    (:class:`FrameProgress` events). Results are yielded as soon as everything before them
    has been. Close the iterator (or let an exception such as ``KeyboardInterrupt`` through
    it) to stop: workers stop at their next tile and nothing half-written is left.

    Args:
        items: inputs and output paths (:func:`collect_inputs`).
        model: the loaded model (:func:`esrcli.infer.load_upscale_model`).
        options: :class:`BatchOptions`.

    Yields:
        :data:`Event` s; the last is :class:`Finished`.

    Raises:
        Only what is not a bad input: ``EsrError``, ``OSError``, ``ValueError``,
        ``RuntimeError`` and ``MemoryError`` of one input are :class:`Failed` events.
    """
    up = options.upscale
    info = model.info
    jobs = batch_jobs(options.jobs, model.device, len(items))
    cancel = threading.Event()
    seen: dict[Path, Path] = {}  # output -> the input that claimed it
    input_set = {it.src.resolve() for it in items}
    pending: deque[_Job] = deque()
    counts = {"written": 0, "skipped": 0, "failed": 0}
    avail = available_memory()
    budget = None if avail is None or jobs == 1 else int(avail * options.memory_share)
    told_memory = False
    t0 = time.perf_counter()
    pool = WorkerPool(jobs)

    def between_tiles(done: int = 0, total: int = 0) -> None:
        if cancel.is_set():
            raise _Cancelled
        pool.rebalance()

    def work(image: Image, dst: Path, image_src: Path) -> tuple[list[str], float | None, bool]:
        """Upscale and write one image (in a worker); returns the pass's notices, the
        denoise strength chosen for it (``None`` without ``options.denoise``) and whether it
        was written (``False``: without ``overwrite``, another process wrote ``dst`` meanwhile
        and that file was kept)."""
        notes: list[str] = []
        strength = None if options.denoise is None else round_strength(options.denoise(image.color))
        net = model.net_for(image.bit_depth, denoise=strength)
        result = upscale_image(image, net, info, up, notify=notes.append, progress=between_tiles)
        if cancel.is_set():
            raise _Cancelled
        _make_parent(image_src, dst)
        try:
            write_image(dst, result, quality=options.quality, replace=options.overwrite)
            written = True
        except FileExistsError:
            written = False
        del result, image
        # Freed memory stays mapped during each image's pass (tiled_forward); between
        # images it goes back, so that images of other sizes do not pile up the heap.
        release_memory()
        return notes, strength, written

    def claim(src: Path, dst: Path) -> bool:
        """Check ``dst`` for ``src``; False when it exists and is kept (a skip).

        Raises:
            ImageError: it would overwrite an input or an earlier output of this run.
        """
        resolved = dst.resolve()
        if resolved in input_set:
            raise ImageError(f"{src}: output {dst} would overwrite an input", "pass --suffix or another output folder")
        if resolved in seen:
            raise ImageError(f"{src}: output {dst} is also the output of {seen[resolved]} in this run", "rename one of the two inputs")
        if dst.is_dir():
            raise ImageError(f"{src}: output {dst} is a folder", "move it away, or pass --suffix or another output folder")
        _check_folder(src, dst.parent)
        seen[resolved] = src
        # a dangling link there counts as a file: kept without --overwrite, replaced with it
        return options.overwrite or not os.path.lexists(dst)

    def start(item: BatchItem) -> _Job:
        """Read one input and check its output name (in input order, here)."""
        src = item.src
        if is_video(src):
            dst = item.stem if item.exact else item.stem.with_name(item.stem.name + ".mp4")
            return _Job(src, dst=dst, video=True, skip=not claim(src, dst))
        e = None if item.exact else target_ext(src, options.ext, None)
        early = item.stem if item.exact else (item.stem.with_name(item.stem.name + e) if e else None)
        if early is not None and os.path.lexists(early) and not early.is_dir() and not options.overwrite and early.resolve() not in input_set:
            claim(src, early)  # kept; but another input of this run writing it too is an error
            return _Job(src, dst=early, skip=True)
        image = read_image(src)
        out_h, out_w = output_size(*image.size, info.scale, up.outscale)
        if out_h * out_w > MAX_PIXELS:  # refused before the network runs, not by the encoder after it
            raise ImageError(f"{src}: the output would be {size_text(out_w, out_h)} pixels, over the limit of {MAX_PIXELS:,}", "pass a smaller --scale")
        dst = item.stem if item.exact else item.stem.with_name(item.stem.name + (target_ext(src, options.ext, image) or ".png"))
        if not claim(src, dst):
            return _Job(src, dst=dst, skip=True)
        warnings = []
        if image.frames > 1:
            warnings.append(f"{src}: {image.frames} frames or pages; only the first is upscaled")
        kind = dst.suffix.lower()
        if kind in NO_ALPHA_EXTENSIONS and image.alpha is not None:
            warnings.append(f"{src}: {kind[1:].upper()} has no alpha channel; alpha dropped (write a .png to keep it)")
        if kind not in DEEP_EXTENSIONS and image.bit_depth == 16:
            warnings.append(f"{src}: {kind[1:].upper()} holds 8 bits per channel; the 16-bit depth is reduced (write a .png or .tif to keep it)")
        return _Job(src, dst=dst, warnings=warnings, image=image, cost=working_memory(image, info, up))

    def run_video(src: Path, dst: Path) -> Iterator[Event]:
        """Upscale one video here, in the calling thread, yielding its progress."""
        notes: list[str] = []
        _make_parent(src, dst)
        with contextlib.closing(upscale_video(src, dst, model, up, options.video, notify=notes.append)) as frames:
            for p in frames:
                while notes:
                    yield Warned(src, f"{src}: {notes.pop(0)}")
                if cancel.is_set():
                    raise _Cancelled
                yield FrameProgress(src, p.done, p.total, p.fps, p.eta)
        for note in notes:
            yield Warned(src, f"{src}: {note}")

    def finish(job: _Job) -> Iterator[Event]:
        """Report one input, in input order (waiting for its worker, or running its video)."""
        try:
            for message in job.warnings:
                yield Warned(job.src, message)
            if job.error is not None:
                raise job.error
            assert job.dst is not None
            if job.skip:
                counts["skipped"] += 1
                yield Skipped(job.src, job.dst)
                return
            if job.video:
                if options.denoise is not None:
                    yield Warned(job.src, f"{job.src}: --denoise auto chooses per image; this video runs with the model as loaded (pass --denoise S)")
                yield from run_video(job.src, job.dst)
            else:
                assert job.future is not None
                notes, strength, written = job.future.result()
                for note in notes:
                    yield Warned(job.src, f"{job.src}: {note}")
                if strength is not None:
                    yield DenoiseChosen(job.src, strength)
                if not written:
                    counts["skipped"] += 1
                    yield Warned(job.src, f"{job.src}: {job.dst} appeared while it ran (another esr?); kept it (--overwrite replaces)")
                    yield Skipped(job.src, job.dst)
                    return
            counts["written"] += 1
            yield Written(job.src, job.dst)
        except _FILE_ERRORS as exc:
            counts["failed"] += 1
            yield Failed(job.src, exc)

    def report_ready() -> Iterator[Event]:
        while pending and (pending[0].future is None or pending[0].future.done()):
            yield from finish(pending.popleft())

    def admit(job: _Job) -> Iterator[Event]:
        """Wait for a free worker and, with others in flight, for room in the memory budget;
        then start ``job`` on a worker."""
        nonlocal told_memory
        assert job.image is not None and job.dst is not None
        if avail is not None and job.cost > avail:  # reported with its result, in input order
            job.warnings.append(f"{job.src}: needs about {_megabytes(job.cost)} of memory, more than the "
                                f"{_megabytes(avail)} available: it may fail (a smaller --scale needs less)")
        while running := [j for j in pending if j.future is not None and not j.future.done()]:
            room = budget is None or sum(j.cost for j in running) + job.cost <= budget
            if len(running) < jobs and room:
                break
            if not room and not told_memory:
                yield Notice(f"{job.src} needs about {_megabytes(job.cost)}: it waits until it fits in the "
                             f"{_megabytes(budget or 0)} free for images (large images run one at a time)")
                told_memory = True
            with pool.waiting_for_room():  # an image left alone meanwhile takes all threads
                wait([j.future for j in running if j.future is not None], return_when=FIRST_COMPLETED)
            yield from report_ready()
        job.future = pool.submit(work, job.image, job.dst, job.src)
        job.image = None

    with pool:
        try:
            for i, item in enumerate(items, 1):
                try:
                    job = start(item)  # read while the workers are busy
                    if job.image is not None:
                        yield from admit(job)
                except _FILE_ERRORS as exc:
                    job = _Job(item.src, error=exc)
                pending.append(job)
                if i == len(items):
                    pool.no_more_work()
                if job.video and not job.skip:
                    # Everything before it first (in order), then the video with all threads.
                    with pool.waiting_for_room():
                        while pending:
                            yield from finish(pending.popleft())
                else:
                    yield from report_ready()
            while pending:
                yield from finish(pending.popleft())
        except BaseException:
            cancel.set()  # Ctrl-C or close(): the workers stop at their next tile; nothing half-written
            raise
    yield Finished(counts["written"], counts["skipped"], counts["failed"], time.perf_counter() - t0)
