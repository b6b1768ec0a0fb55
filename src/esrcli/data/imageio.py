"""Reading and writing images at their native bit depth, with gray and alpha kept apart.

Images are read into float32 arrays in ``[0, 1]``: ``color`` is ``(H, W, 3)`` RGB or
``(H, W, 1)`` gray, ``alpha`` is ``(H, W)`` or ``None``. 8-bit and 16-bit PNG/TIFF keep
their depth on the way back out. Writes are atomic: a temporary file in the target
folder, then ``os.replace``; an interrupted write never leaves a half-written image.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from esrcli.errors import ImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "Image",
    "read_image",
    "write_image",
    "list_images",
    "to_tensor",
    "from_tensor",
    "atomic_write_bytes",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
MAX_PIXELS = 178_956_970  # Pillow's decompression-bomb threshold (2x its warning limit)


@dataclass(frozen=True)
class Image:
    """A decoded image.

    Attributes:
        color: float32 ``(H, W, 3)`` RGB or ``(H, W, 1)`` gray, values in ``[0, 1]``.
        alpha: float32 ``(H, W)`` in ``[0, 1]``, or ``None`` when the image has no alpha.
        bit_depth: 8 or 16, the depth of the source samples.
        icc_profile: the embedded ICC profile bytes, or ``None``.
        exif: raw EXIF bytes (orientation already applied and reset), or ``None``.
    """

    color: np.ndarray
    alpha: np.ndarray | None = None
    bit_depth: int = 8
    icc_profile: bytes | None = field(default=None, repr=False)
    exif: bytes | None = field(default=None, repr=False)

    @property
    def is_gray(self) -> bool:
        return self.color.shape[2] == 1

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return self.color.shape[0], self.color.shape[1]


def list_images(paths: list[Path] | tuple[Path, ...], recursive: bool = False) -> list[Path]:
    """Expand files and folders into a sorted list of image files.

    Raises:
        ImageError: a path that does not exist.
    """
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            it = p.rglob("*") if recursive else p.iterdir()
            out.extend(sorted(f for f in it if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS))
        elif p.exists():
            out.append(p)
        else:
            raise ImageError(f"{p}: no such file or folder")
    return out


def _read_metadata(path: Path) -> tuple[int, bytes | None, bytes | None]:
    """EXIF orientation (1..8), ICC profile and EXIF bytes via Pillow (header only)."""
    from PIL import Image as PILImage

    try:
        with PILImage.open(path) as im:
            icc = im.info.get("icc_profile")
            exif = im.getexif()
            orientation = int(exif.get(0x0112, 1) or 1)
            exif_bytes = None
            if len(exif):
                exif[0x0112] = 1
                exif_bytes = exif.tobytes()
            return orientation, icc, exif_bytes
    except Exception:  # noqa: BLE001 - metadata is best-effort; pixel decoding decides validity
        return 1, None, None


def _apply_orientation(a: np.ndarray, orientation: int) -> np.ndarray:
    ops = {
        2: lambda x: x[:, ::-1],
        3: lambda x: x[::-1, ::-1],
        4: lambda x: x[::-1],
        5: lambda x: np.swapaxes(x, 0, 1),
        6: lambda x: np.swapaxes(x, 0, 1)[:, ::-1],
        7: lambda x: np.swapaxes(x, 0, 1)[::-1, ::-1],
        8: lambda x: np.swapaxes(x, 0, 1)[::-1],
    }
    f = ops.get(orientation)
    return np.ascontiguousarray(f(a)) if f else a


def _check_size(path: Path, data: bytes) -> None:
    """Refuse decompression bombs before decoding, from the header's dimensions."""
    from PIL import Image as PILImage

    import io

    try:
        with PILImage.open(io.BytesIO(data)) as im:
            w, h = im.size
    except PILImage.DecompressionBombError as exc:
        raise ImageError(f"{path}: image too large ({exc})") from None
    except Exception:  # noqa: BLE001 - let the decoder report the real problem
        return
    if w * h > MAX_PIXELS:
        raise ImageError(f"{path}: image too large ({w}x{h} pixels; limit {MAX_PIXELS})")


def read_image(path: str | Path) -> Image:
    """Read an image file as float32 in ``[0, 1]`` at its native depth.

    Handles 8/16-bit, gray, gray+alpha, RGB and RGBA; applies EXIF orientation; keeps
    the ICC profile. Float/32-bit images are scaled into ``[0, 1]`` as well.

    Raises:
        ImageError: missing, empty, corrupt, truncated, non-image or oversized file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not an image") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror})") from None
    if not data:
        raise ImageError(f"{path}: empty file (0 bytes)")
    _check_size(path, data)
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if arr is None or arr.size == 0:
        raise ImageError(f"{path}: not a readable image (corrupt, truncated or unknown format)")
    if arr.dtype == np.uint8:
        depth, scale = 8, 255.0
    elif arr.dtype == np.uint16:
        depth, scale = 16, 65535.0
    elif arr.dtype in (np.float32, np.float64):
        depth, scale = 16, 1.0
    else:
        raise ImageError(f"{path}: unsupported sample type {arr.dtype}")
    a = arr.astype(np.float32) / scale
    if a.ndim == 2:
        a = a[:, :, None]
    alpha = None
    c = a.shape[2]
    if c == 1:
        color = a
    elif c == 2:
        color, alpha = a[:, :, :1], a[:, :, 1]
    elif c == 3:
        color = a[:, :, ::-1]
    elif c == 4:
        color, alpha = a[:, :, 2::-1], a[:, :, 3]
    else:
        raise ImageError(f"{path}: unsupported channel count {c}")
    if not np.isfinite(color).all():
        raise ImageError(f"{path}: image contains NaN or infinite samples")
    orientation, icc, exif = _read_metadata(path)
    color = _apply_orientation(np.clip(color, 0, 1), orientation)
    if alpha is not None:
        alpha = _apply_orientation(np.clip(alpha, 0, 1), orientation)
    return Image(np.ascontiguousarray(color), None if alpha is None else np.ascontiguousarray(alpha), depth, icc, exif)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then rename).

    Raises:
        ImageError: the folder does not exist or is not writable (message names the path).
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except FileNotFoundError:
        raise ImageError(f"{path.parent}: output folder does not exist") from None
    except OSError as exc:
        raise ImageError(f"{path.parent}: cannot write here ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise ImageError(f"{path}: cannot write ({exc.strerror})") from None
        raise


def write_image(path: str | Path, image: Image, quality: int = 95) -> None:
    """Encode ``image`` by the path's extension and write it atomically.

    PNG and TIFF keep 16-bit depth and alpha; JPEG is 8-bit without alpha (alpha dropped);
    WebP is 8-bit with alpha. The ICC profile is embedded where the format allows
    (PNG, JPEG, WebP, TIFF via Pillow).

    Args:
        path: output file; the extension picks the format.
        image: the image, values in ``[0, 1]``.
        quality: JPEG/WebP quality 1..100.

    Raises:
        ImageError: unknown extension or unwritable destination.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        raise ImageError(f"{path}: unknown output format '{ext}'")
    depth = image.bit_depth if ext in (".png", ".tif", ".tiff") else 8
    alpha = image.alpha if ext not in (".jpg", ".jpeg", ".bmp") else None
    maxv = 65535.0 if depth == 16 else 255.0
    dtype = np.uint16 if depth == 16 else np.uint8
    color = image.color
    if color.shape[2] == 3:
        color = color[:, :, ::-1]
    planes = [color] if alpha is None else [color, alpha[:, :, None]]
    a = np.concatenate(planes, axis=2) if len(planes) > 1 else color
    q = np.clip(np.rint(a * maxv), 0, maxv).astype(dtype)
    if q.shape[2] == 1:
        q = q[:, :, 0]
    params: list[int] = []
    if ext in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    elif ext == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, int(quality)]
    elif ext == ".png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, 3]
    ok, buf = cv2.imencode(ext if ext != ".tiff" else ".tif", q, params)
    if not ok:
        raise ImageError(f"{path}: could not encode image as {ext}")
    data = buf.tobytes()
    if image.icc_profile and ext in (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff"):
        data = _embed_icc(data, image.icc_profile, ext, quality)
    atomic_write_bytes(path, data)


def _embed_icc(data: bytes, icc: bytes, ext: str, quality: int) -> bytes:
    """Re-save through Pillow to attach an ICC profile (pixels unchanged for lossless formats)."""
    import io

    from PIL import Image as PILImage

    try:
        with PILImage.open(io.BytesIO(data)) as im:
            im.load()
            out = io.BytesIO()
            fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}[ext]
            kw: dict = {"icc_profile": icc}
            if fmt in ("JPEG", "WEBP"):
                kw["quality"] = quality
            im.save(out, format=fmt, **kw)
            return out.getvalue()
    except Exception:  # noqa: BLE001 - e.g. 16-bit RGB(A) that Pillow cannot hold: keep pixels, drop ICC
        return data


def to_tensor(a: np.ndarray) -> torch.Tensor:
    """``(H, W, C)`` float array -> ``(1, C, H, W)`` float32 tensor (no copy of values' range)."""
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).unsqueeze(0).float()


def from_tensor(t: torch.Tensor) -> np.ndarray:
    """``(1, C, H, W)`` or ``(C, H, W)`` tensor -> ``(H, W, C)`` float32 array, clamped to ``[0, 1]``."""
    if t.dim() == 4:
        t = t[0]
    return t.detach().float().clamp_(0, 1).permute(1, 2, 0).cpu().numpy()
