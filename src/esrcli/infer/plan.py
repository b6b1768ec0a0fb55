"""What a batch does before any pixel is touched: inputs expanded, output names decided.

Standard library only (no torch), so that the CLI checks its arguments before the second
or so that importing torch takes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from esrcli.data.imageio import IMAGE_EXTENSIONS, NO_ALPHA_EXTENSIONS
from esrcli.errors import ImageError

if TYPE_CHECKING:
    from esrcli.data.imageio import Image

__all__ = ["VIDEO_EXTENSIONS", "DEFAULT_TILE_OVERLAP", "MIN_TILE", "BatchItem", "is_video", "list_inputs", "collect_inputs", "target_ext"]

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v")
_READ_ONLY = (".gif",)  # read (first frame), written as PNG
DEFAULT_TILE_OVERLAP = 32  # input pixels (esr upscale, UpscaleOptions)
#: The smallest tile (input pixels) esr upscale and UpscaleOptions take: below it the overlap
#: (at most half a tile) is too short to hide the seams (tile 16: 39 dB from the untiled result).
MIN_TILE = 32


def is_video(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a video by its extension (:data:`VIDEO_EXTENSIONS`)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


@dataclass(frozen=True)
class BatchItem:
    """One input and where its output goes.

    Attributes:
        src: the input file (image or video).
        stem: output path without extension (the extension follows :attr:`BatchOptions.ext`),
            or the exact output file when :attr:`exact` is set.
        exact: ``stem`` is the full output file name (a single input with an output file).
    """

    src: Path
    stem: Path
    exact: bool = False


def list_inputs(paths: Sequence[Path], recursive: bool = False) -> list[Path]:
    """Expand files and folders into input files: each folder's images and videos, sorted
    (hidden files and folders skipped); files named explicitly are kept whatever their extension.

    Raises:
        ImageError: a path that does not exist.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            it = p.rglob("*") if recursive else p.iterdir()
            # hidden files, and with ``recursive`` anything inside a hidden folder, are skipped
            out.extend(sorted(f for f in it if _wanted(f) and not any(part.startswith(".") for part in f.relative_to(p).parts)))
        elif p.exists():
            out.append(p)
        else:
            raise ImageError(f"{p}: no such file or folder")
    return out


def _wanted(f: Path) -> bool:
    """Whether a file found in a folder is an input: an image or video by its extension."""
    return f.suffix.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS + _READ_ONLY and f.is_file()


def _nested_inputs(folder: Path) -> bool:
    """Whether a folder's (non-hidden) sub-folders hold inputs directly: a hint, so one level
    down only (a mistaken ``esr upscale ~ out`` must not scan the whole home folder)."""
    try:
        return any(_wanted(f) for sub in folder.iterdir() if sub.is_dir() and not sub.name.startswith(".")
                   for f in sub.iterdir() if not f.name.startswith("."))
    except OSError:
        return False


def collect_inputs(inputs: Sequence[Path], out_dir: Path, out_file: Path | None = None, *, suffix: str = "", recursive: bool = False) -> list[BatchItem]:
    """The batch's items: inputs expanded (:func:`list_inputs`) with their output paths.

    A folder's files keep their path below it under ``out_dir`` (with ``recursive``);
    a file goes to ``out_dir / (name + suffix)``, or to ``out_file`` when given.

    A file found in a folder that is the output of another input of the same batch (its path
    without extension is that input's output path: ``photo_out.png`` beside ``photo.jpg``
    with ``--suffix _out`` into the same folder, or ``out/photo.png`` with the output folder
    inside the input folder and ``recursive``) is left out, so that running the same command
    again skips the existing outputs instead of upscaling them in turn. Files named
    explicitly are always kept, and so are files that do not exist: reading them fails with
    their own one-line error while the others go on.

    Raises:
        ImageError: no images or videos found.
    """
    items: list[BatchItem] = []
    scanned: set[int] = set()  # indices of items found in a folder
    for p in map(Path, inputs):
        if p.is_dir():
            for f in list_inputs([p], recursive=recursive):
                rel = f.relative_to(p)
                scanned.add(len(items))
                items.append(BatchItem(f, out_dir / rel.parent / (rel.stem + suffix)))
        elif not p.exists():  # reading it fails with its own error; the other inputs go on
            items.append(BatchItem(p, out_file if out_file is not None else out_dir / (p.stem + suffix), exact=out_file is not None))
        else:
            for f in list_inputs([p]):
                if out_file is not None:
                    items.append(BatchItem(f, out_file, exact=True))
                else:
                    items.append(BatchItem(f, out_dir / (f.stem + suffix)))
    first: dict[tuple[str, str], int] = {}  # a file named twice (or also found in a folder given): once
    unique = []
    for i, it in enumerate(items):
        key = (_key(it.src), _key(it.stem))
        if key in first:
            if i not in scanned:  # also named explicitly: the copy kept counts as named
                scanned.discard(first[key])
            scanned.discard(i)
            continue
        first[key] = i
        unique.append((i, it))
    if len(unique) < len(items):
        scanned = {j for j, (i, _) in enumerate(unique) if i in scanned}
        items = [it for _, it in unique]
    if scanned:
        makers: dict[str, set[int]] = {}  # output path without extension -> the items writing it
        for i, it in enumerate(items):
            makers.setdefault(_key(it.stem), set()).add(i)
        items = [it for i, it in enumerate(items) if i not in scanned or not makers.get(_key(it.src.with_suffix("")), set()) - {i}]
    if not items:
        nested = not recursive and any(Path(p).is_dir() and _nested_inputs(Path(p)) for p in inputs)
        raise ImageError(
            f"{', '.join(map(str, inputs))}: no images found ({', '.join(IMAGE_EXTENSIONS + _READ_ONLY + VIDEO_EXTENSIONS)})",
            "its sub-folders hold some: pass --recursive (-r)" if nested else None,
        )
    return items


def _key(path: Path) -> str:
    """A path compared as the file system would: absolute, ``..`` and links resolved."""
    try:
        return os.path.normcase(str(path.resolve()))
    except OSError:
        return os.path.normcase(os.path.abspath(path))


def target_ext(src: Path, ext: str, image: Image | None) -> str | None:
    """Output extension of an image; ``None`` when it depends on the pixels and ``image`` is
    not read yet (``auto`` on BMP: alpha or 16-bit go to PNG)."""
    if ext != "auto":
        return "." + ext
    suffix = src.suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        suffix = ".png"
    if suffix in (".jpg", ".jpeg"):
        # a JPEG has neither alpha nor 16 bits, but a PNG named .jpg may: read, it goes to PNG
        if image is not None and (image.alpha is not None or image.bit_depth == 16):
            return ".png"
        return suffix
    if suffix in NO_ALPHA_EXTENSIONS:  # nor 16-bit: alpha or 16-bit pixels go to PNG
        if image is None:
            return None
        if image.alpha is not None or image.bit_depth == 16:
            return ".png"
    return suffix
