"""Datasets of high-resolution images for training and validation.

Training follows Real-ESRGAN (Wang et al., ICCVW 2021, Sec. 3 and its ``RealESRGANDataset``):
each sample is a random ``crop_size`` square (400 by default) of an HR image, reflect-padded
when the image is smaller, randomly flipped; the degradation that makes the LQ input runs
later, batched on the training device (:func:`esrcli.degrade.synthesize_pairs`), which also
takes the final paired ``gt_size`` crop.

Determinism: a sample is a pure function of ``(seed, position)``, where ``position`` counts
the samples a rank has drawn. :class:`InfiniteSampler` yields ``(position, index)`` keys, so
a run resumed at iteration ``k`` restarts the stream at ``k * batch_size`` and reads exactly
the crops an uninterrupted run would have read, whatever the number of loader workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from esrcli.data.imageio import IMAGE_EXTENSIONS, read_image
from esrcli.errors import DataError, ImageError

__all__ = ["ScanResult", "scan_images", "HRCropDataset", "InfiniteSampler", "load_validation_image", "mix_seed"]

_MASK63 = (1 << 63) - 1


def mix_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (SplitMix64 finaliser), for ``torch.Generator.manual_seed``."""
    x = 0x9E3779B97F4A7C15
    for p in parts:
        x = (x ^ (int(p) & ((1 << 64) - 1))) * 0xBF58476D1CE4E5B9 & ((1 << 64) - 1)
        x ^= x >> 31
        x = (x * 0x94D049BB133111EB) & ((1 << 64) - 1)
        x ^= x >> 29
    return x & _MASK63


@dataclass(frozen=True)
class ScanResult:
    """Images found in the data folders.

    Attributes:
        files: usable image files, sorted.
        sizes: ``(height, width)`` of each usable file.
        skipped: ``(file, reason)`` for every unreadable or too small file.
        padded: how many usable files are smaller than the crop and will be reflect-padded.
    """

    files: tuple[Path, ...]
    sizes: tuple[tuple[int, int], ...]
    skipped: tuple[tuple[Path, str], ...]
    padded: int


def _header_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` from the image header (Pillow), without decoding pixels.

    Raises:
        ImageError: not a readable image.
    """
    from PIL import Image as PILImage

    try:
        with PILImage.open(path) as im:
            w, h = im.size
            im.verify()
    except Exception as exc:  # noqa: BLE001 - any decoder complaint means "unreadable"
        raise ImageError(f"{path}: not a readable image ({type(exc).__name__})") from None
    if w < 1 or h < 1:
        raise ImageError(f"{path}: empty image")
    return h, w


def scan_images(folders: tuple[Path, ...] | list[Path], crop_size: int = 0, min_size: int = 0) -> ScanResult:
    """List the images of ``folders`` (recursively), checking each header.

    Args:
        folders: folders (or single files) of HR images.
        crop_size: images with a side below it are counted in ``padded``.
        min_size: images whose shorter side is below it are skipped.

    Returns:
        The usable files, the skipped ones with a reason, and the number to be padded.

    Raises:
        DataError: no folder given, a missing folder, or no usable image at all.
    """
    if not folders:
        raise DataError("data.folders: no training folder given")
    candidates: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if folder.is_dir():
            candidates += sorted(f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        elif folder.is_file():
            candidates.append(folder)
        else:
            raise DataError(f"{folder}: no such data folder")
    files, sizes, skipped, padded = [], [], [], 0
    for f in candidates:
        try:
            h, w = _header_size(f)
        except ImageError as exc:
            skipped.append((f, str(exc).split(": ", 1)[-1]))
            continue
        if min(h, w) < min_size:
            skipped.append((f, f"smaller than data.min_size ({w}x{h} < {min_size})"))
            continue
        padded += int(min(h, w) < crop_size)
        files.append(f)
        sizes.append((h, w))
    if not files:
        where = ", ".join(str(f) for f in folders)
        raise DataError(f"{where}: no usable training image" + (f" ({len(skipped)} skipped)" if skipped else " (folder empty)"))
    return ScanResult(tuple(files), tuple(sizes), tuple(skipped), padded)


def _to_rgb_tensor(color) -> Tensor:
    """``(H, W, 1|3)`` float array -> ``(3, H, W)`` float32 tensor (gray repeated)."""
    t = torch.from_numpy(color).permute(2, 0, 1).float()
    return t.expand(3, -1, -1).contiguous() if t.shape[0] == 1 else t.contiguous()


def _reflect_pad_to(img: Tensor, size: int) -> Tensor:
    """Reflect-pad ``(C, H, W)`` at the bottom/right to at least ``size`` (repeatedly for tiny images)."""
    while img.shape[1] < size or img.shape[2] < size:
        ph = min(size - img.shape[1], img.shape[1] - 1) if img.shape[1] < size else 0
        pw = min(size - img.shape[2], img.shape[2] - 1) if img.shape[2] < size else 0
        if ph == 0 and pw == 0:  # a 1-pixel side cannot be reflected: replicate it
            return torch.nn.functional.pad(img[None], (0, max(0, size - img.shape[2]), 0, max(0, size - img.shape[1])), mode="replicate")[0]
        img = torch.nn.functional.pad(img[None], (0, pw, 0, ph), mode="reflect")[0]
    return img


class HRCropDataset(Dataset):
    """Random square crops of HR images, keyed by ``(position, index)``.

    Args:
        scan: the result of :func:`scan_images`.
        crop_size: side of the crop (pixels).
        use_hflip: random horizontal flip (p = 0.5).
        use_rot: random vertical flip and transpose (p = 0.5 each), i.e. the 8 dihedral views.
        seed: base seed; the crop of ``position`` uses ``mix_seed(seed, position)``.

    Returns (per item):
        ``(3, crop_size, crop_size)`` float32 RGB in ``[0, 1]`` (gray repeated, alpha dropped).

    Note:
        A file that fails to decode at training time (truncated after the header check) is
        replaced by the next file; ``failed`` lists such files in this process.
    """

    def __init__(self, scan: ScanResult, crop_size: int, use_hflip: bool = True, use_rot: bool = False, seed: int = 0) -> None:
        self.files = scan.files
        self.crop_size = crop_size
        self.use_hflip = use_hflip
        self.use_rot = use_rot
        self.seed = seed
        self.failed: list[Path] = []

    def __len__(self) -> int:
        return len(self.files)

    def _read(self, index: int) -> Tensor:
        for k in range(len(self.files)):
            path = self.files[(index + k) % len(self.files)]
            try:
                return _to_rgb_tensor(read_image(path).color)
            except ImageError:
                self.failed.append(path)
        raise DataError("data.folders: no training image could be decoded")

    def __getitem__(self, key: tuple[int, int]) -> Tensor:
        position, index = key
        g = torch.Generator().manual_seed(mix_seed(self.seed, position))
        img = _reflect_pad_to(self._read(index), self.crop_size)
        s = self.crop_size
        top = int(torch.randint(0, img.shape[1] - s + 1, (1,), generator=g))
        left = int(torch.randint(0, img.shape[2] - s + 1, (1,), generator=g))
        img = img[:, top : top + s, left : left + s]
        flips = torch.rand(3, generator=g)
        if self.use_hflip and flips[0] < 0.5:
            img = img.flip(2)
        if self.use_rot:
            if flips[1] < 0.5:
                img = img.flip(1)
            if flips[2] < 0.5:
                img = img.transpose(1, 2)
        return img.contiguous()


def ignore_stop_signals(worker_id: int) -> None:
    """``DataLoader`` ``worker_init_fn``: loader workers ignore SIGINT and SIGTERM.

    Ctrl-C in a terminal reaches every process of the job; the training process answers it
    by stopping at the next iteration with a checkpoint, and needs its workers' batches until
    then. Workers still end with the loader, or when their parent dies (PyTorch watches it).
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class InfiniteSampler(Sampler):
    """An endless, resumable, rank-sharded stream of ``(position, index)`` keys.

    Global position ``p`` reads image ``perm_e[p % n]`` where ``e = p // n`` is the epoch and
    ``perm_e = randperm(n)`` seeded by ``(seed, e)``. Rank ``r`` of ``world`` takes positions
    ``r, r + world, r + 2 * world, ...`` from its local position ``start`` on, so ranks read
    disjoint samples and every epoch visits every image once across ranks.

    Args:
        n: number of images.
        seed: base seed.
        start: local position of the first key (``iteration * batch_size`` on resume).
        rank: this process's rank.
        world: number of processes.
    """

    def __init__(self, n: int, seed: int = 0, start: int = 0, rank: int = 0, world: int = 1) -> None:
        self.n, self.seed, self.start, self.rank, self.world = n, seed, start, rank, world

    def _perm(self, epoch: int) -> Tensor:
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(mix_seed(self.seed, 0x5EED, epoch)))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        local = self.start
        epoch, perm = -1, None
        while True:
            p = local * self.world + self.rank
            if p // self.n != epoch:
                epoch = p // self.n
                perm = self._perm(epoch)
            yield p, int(perm[p % self.n])
            local += 1


def load_validation_image(path: Path, scale: int) -> tuple[Tensor, Tensor]:
    """An HR validation image and its LR input (MATLAB-style bicubic, antialiased).

    The HR image is cropped to a multiple of ``scale`` (BasicSR's mod-crop); gray is
    repeated to RGB and alpha dropped.

    Returns:
        ``(lq, gt)``: ``(1, 3, H/scale, W/scale)`` and ``(1, 3, H, W)`` float32 in ``[0, 1]``.

    Raises:
        ImageError: unreadable file. DataError: an image smaller than ``scale``.
    """
    from esrcli.ops.imresize import imresize

    img = read_image(path).color
    h, w = img.shape[0] - img.shape[0] % scale, img.shape[1] - img.shape[1] % scale
    if h == 0 or w == 0:
        raise DataError(f"{path}: smaller than the scale ({scale})")
    img = img[:h, :w]
    if img.shape[2] == 1:
        img = img.repeat(3, axis=2)
    lq = imresize(img, 1 / scale)
    to = lambda a: torch.from_numpy(a.astype("float32")).permute(2, 0, 1)[None].clamp(0, 1).contiguous()  # noqa: E731
    return to(lq), to(img)
