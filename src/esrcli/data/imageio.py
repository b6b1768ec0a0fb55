"""Reading and writing images at their native bit depth, with gray and alpha kept apart.

Images are read into float32 arrays in ``[0, 1]``: ``color`` is ``(H, W, 3)`` RGB or
``(H, W, 1)`` gray, ``alpha`` is ``(H, W)`` or ``None``. 8-bit and 16-bit PNG/TIFF keep
their depth on the way back out. Writes are atomic: a temporary file in the target
folder, then ``os.replace``; an interrupted write never leaves a half-written image.

Metadata: the EXIF orientation is applied to the pixels on reading (and reset to 1 in
:attr:`Image.exif`); other EXIF fields are not written back. The ICC profile is kept
and embedded again in PNG (any depth, written as an ``iCCP`` chunk), JPEG (``APP2``
segments), WebP and 8-bit or 16-bit gray TIFF; 16-bit RGB(A) TIFF drops it (Pillow
cannot hold 16-bit colour).
"""

from __future__ import annotations

import io
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from esrcli.atomic import atomic_output
from esrcli.errors import ImageError, read_failure

if TYPE_CHECKING:  # torch is imported where tensors are made, so `esr --help` need not load it
    import torch

__all__ = [
    "read_samples",
    "IMAGE_EXTENSIONS",
    "NO_ALPHA_EXTENSIONS",
    "DEEP_EXTENSIONS",
    "MAX_PIXELS",
    "Image",
    "read_image",
    "write_image",
    "list_images",
    "unique_files",
    "to_tensor",
    "from_tensor",
    "atomic_write_bytes",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
NO_ALPHA_EXTENSIONS = (".jpg", ".jpeg", ".bmp")  # written without alpha (write_image drops it)
DEEP_EXTENSIONS = (".png", ".tif", ".tiff")  # written with 16 bits per channel when the image has them
MAX_PIXELS = 178_956_970  # Pillow's decompression-bomb threshold (2x its warning limit)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# OpenCV's TIFF decoder applies the EXIF orientation itself (even with IMREAD_UNCHANGED)
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


@dataclass(frozen=True)
class Image:
    """A decoded image.

    Attributes:
        color: float32 ``(H, W, 3)`` RGB or ``(H, W, 1)`` gray, values in ``[0, 1]``.
        alpha: float32 ``(H, W)`` in ``[0, 1]``, or ``None`` when the image has no alpha.
        bit_depth: 8 or 16, the depth of the source samples.
        icc_profile: the embedded ICC profile bytes, or ``None``.
        exif: raw EXIF bytes (orientation already applied and reset), or ``None``.
        frames: frames or pages in the source file (animated GIF/WebP/PNG, multi-page
            TIFF); only the first was decoded.
    """

    color: np.ndarray
    alpha: np.ndarray | None = None
    bit_depth: int = 8
    icc_profile: bytes | None = field(default=None, repr=False)
    exif: bytes | None = field(default=None, repr=False)
    frames: int = 1

    @property
    def is_gray(self) -> bool:
        """True for a one-channel (gray) image."""
        return self.color.shape[2] == 1

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return self.color.shape[0], self.color.shape[1]


def list_images(paths: list[Path] | tuple[Path, ...], recursive: bool = False) -> list[Path]:
    """Expand files and folders into a list of image files (each folder's files sorted).

    Files named explicitly are kept whatever their extension (reading them decides);
    folders contribute the files whose extension is in :data:`IMAGE_EXTENSIONS`
    (hidden files, e.g. unfinished ``.name.part`` outputs, are skipped). A file reached
    twice (named and in a named folder, or by two spellings) is listed once, where first met.

    Raises:
        ImageError: a path that does not exist.
    """
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            it = p.rglob("*") if recursive else p.iterdir()
            out.extend(
                sorted(
                    f
                    for f in it
                    if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith(".")
                )
            )
        elif p.exists():
            out.append(p)
        else:
            raise ImageError(f"{p}: no such file or folder")
    return unique_files(out)


def unique_files(files: list[Path]) -> list[Path]:
    """``files`` without repeats of the same file (``dir`` and ``dir/a.png``, ``a.png`` and
    ``./a.png``, links resolved), each kept where first met."""
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


@dataclass(frozen=True)
class _Header:
    size: tuple[int, int] | None = None  # (width, height) from the header, if Pillow knows the format
    mode: str | None = None
    orientation: int = 1
    icc: bytes | None = None
    exif: bytes | None = None
    frames: int = 1
    transparency: bool = False  # a palette or colour key with a transparent entry (GIF, PNG tRNS)


def _read_header(path: Path, data: bytes) -> _Header:
    """Size, mode, EXIF orientation, ICC profile and EXIF via Pillow (header only).

    Raises:
        ImageError: the header declares more than :data:`MAX_PIXELS` pixels.
    """
    from PIL import Image as PILImage

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: we apply our own limit below
            with PILImage.open(io.BytesIO(data)) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise ImageError(f"{path}: image too large ({w}x{h} pixels; limit {MAX_PIXELS})")
                icc = im.info.get("icc_profile") or None
                orientation, exif_bytes = 1, None
                try:
                    exif = im.getexif()
                    orientation = int(exif.get(0x0112, 1) or 1)
                    if len(exif):
                        exif[0x0112] = 1
                        exif_bytes = exif.tobytes()
                except Exception:  # noqa: BLE001 - broken EXIF must not make the image unreadable
                    pass
                try:
                    frames = max(1, int(getattr(im, "n_frames", 1)))
                except Exception:  # noqa: BLE001 - a broken later frame: the first still decodes
                    frames = 1
                return _Header((w, h), im.mode, orientation, icc, exif_bytes, frames, "transparency" in im.info)
    except PILImage.DecompressionBombError as exc:
        raise ImageError(f"{path}: image too large ({exc})") from None
    except ImageError:
        raise
    except Exception:  # noqa: BLE001 - metadata is best-effort; pixel decoding decides validity
        return _Header()


def _png_color_type(data: bytes) -> int | None:
    """The IHDR colour type of PNG bytes (0 gray, 2 RGB, 3 palette, 4 gray+alpha, 6 RGBA)."""
    if len(data) >= 26 and data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR":
        return data[25]
    return None


def _png_damage(data: bytes) -> str | None:
    """What is wrong with PNG bytes that libpng would refuse, or ``None``.

    libpng reports such files on stderr itself (``libpng error: ...``) before OpenCV gives
    up, so they are caught here first: a chunk cut off by the end of the file, a chunk type
    that is not four letters, or a critical chunk (IHDR, PLTE, IDAT, IEND) failing its CRC.
    Damage it tolerates (an ancillary chunk's CRC) is left to the decoder.
    """
    pos, n = len(_PNG_SIGNATURE), len(data)
    while pos + 8 <= n:
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if not kind.isalpha():
            return f"corrupt PNG (bad chunk type at byte {pos + 4})"
        end = pos + 12 + length
        if end > n:
            return f"truncated PNG (the file ends inside its {kind.decode()} chunk)"
        if kind[:1].isupper() and zlib.crc32(data[pos + 4 : end - 4]) != int.from_bytes(data[end - 4 : end], "big"):
            return f"corrupt PNG (its {kind.decode()} chunk fails its CRC check)"
        if kind == b"IEND":
            return None
        pos = end
    return "truncated PNG (no IEND chunk)"


def _apply_orientation(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8) to an ``(H, W[, C])`` array (as Pillow's exif_transpose)."""
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


def _decode(path: Path, data: bytes) -> np.ndarray | None:
    """cv2 decode with OpenCV's own warnings silenced (we raise our own error).

    Raises:
        ImageError: damaged PNG data (see :func:`_png_damage`), named after ``path``.
    """
    if data[:8] == _PNG_SIGNATURE:
        damage = _png_damage(data)
        if damage is not None:
            raise ImageError(f"{path}: {damage}")
    with quiet_opencv():
        try:
            return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        except cv2.error:
            return None


_quiet_lock = threading.Lock()
_quiet_users = 0
_quiet_saved_level = 0


@contextmanager
def quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own log lines (libpng/libjpeg complaints) while decoding: esr reports
    a bad file in its own one line. Thread-safe: the process-wide level is saved by the first
    of concurrent decodes and restored by the last, so the host's setting comes back."""
    global _quiet_users, _quiet_saved_level
    with _quiet_lock:
        if _quiet_users == 0:
            _quiet_saved_level = cv2.utils.logging.getLogLevel()
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        _quiet_users += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_users -= 1
            if _quiet_users == 0:
                cv2.utils.logging.setLogLevel(_quiet_saved_level)


def _read_bytes(path: Path) -> bytes:
    """The whole file.

    Raises:
        ImageError: missing, a folder, not a regular file (a device or FIFO, which could block
            or never end), unreadable or empty (0 bytes); the message names the file.
    """
    if path.exists() and not path.is_file() and not path.is_dir():
        raise ImageError(f"{path}: not a regular file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(read_failure(path, exc, "an image")) from None
    if not data:
        raise ImageError(f"{path}: empty file (0 bytes)")
    return data


def read_samples(path: str | Path) -> np.ndarray:
    """Read an image file's samples as stored: no EXIF orientation, no scaling, no colour handling.

    For analyses that care about the stored pixel grid (JPEG blocks) and should not pay for a
    float copy of the whole image (``esr estimate``).

    Args:
        path: the image file.

    Returns:
        ``(H, W)`` gray or ``(H, W, C)`` with C = 2 (gray+alpha), 3 (RGB) or 4 (RGBA), in the
        file's own sample type (uint8, uint16 or float32).

    Raises:
        ImageError: missing, empty, corrupt, truncated or non-image file; the message names it.
    """
    path = Path(path)
    data = _read_bytes(path)
    arr = _decode(path, data)
    if arr is None or arr.size == 0:
        raise ImageError(f"{path}: not a readable image (corrupt, truncated or unknown format)")
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[:, :, ::-1]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, [2, 1, 0, 3]]
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    return arr


def read_image(path: str | Path) -> Image:
    """Read an image file as float32 in ``[0, 1]`` at its native depth.

    Handles 8/16-bit, gray, gray+alpha, palette, RGB and RGBA; applies the EXIF
    orientation; keeps the ICC profile. Float/32-bit images are clipped into ``[0, 1]``
    and reported as 16-bit.

    Args:
        path: the image file.

    Returns:
        The decoded :class:`Image`.

    Raises:
        ImageError: missing, empty, corrupt, truncated, non-image or oversized
            (more than :data:`MAX_PIXELS` pixels) file; the message names the file.
    """
    path = Path(path)
    data = _read_bytes(path)
    header = _read_header(path, data)
    arr = _decode(path, data)
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
    a = arr.astype(np.float32)
    a *= np.float32(1.0 / scale)
    if a.ndim == 2:
        a = a[:, :, None]
    alpha = None
    c = a.shape[2]
    # OpenCV expands gray+alpha to BGRA; the source says whether it was gray.
    gray_alpha = _png_color_type(data) == 4 or header.mode in ("LA", "La")
    if c == 1:
        color = a
    elif c == 2:
        color, alpha = a[:, :, :1], a[:, :, 1]
    elif c == 3:
        color = a[:, :, ::-1]
    elif c == 4 and gray_alpha:
        color, alpha = a[:, :, :1], a[:, :, 3]
    elif c == 4:
        color, alpha = a[:, :, 2::-1], a[:, :, 3]
    else:
        raise ImageError(f"{path}: unsupported channel count {c}")
    if not np.isfinite(color).all() or (alpha is not None and not np.isfinite(alpha).all()):
        raise ImageError(f"{path}: image contains NaN or infinite samples")
    if alpha is not None and data[:3] == b"GIF" and not header.transparency and (alpha >= 1).all():
        alpha = None  # OpenCV gives an animated GIF an opaque alpha that the file does not have
    if scale == 1.0:
        color = np.clip(color, 0, 1)
        alpha = None if alpha is None else np.clip(alpha, 0, 1)
    orientation = 1 if data[:4] in _TIFF_SIGNATURES else header.orientation
    color = _apply_orientation(color, orientation)
    if alpha is not None:
        alpha = _apply_orientation(alpha, orientation)
        alpha = np.ascontiguousarray(alpha)
    return Image(np.ascontiguousarray(color), alpha, depth, header.icc, header.exif, header.frames)


def atomic_write_bytes(path: str | Path, data: bytes, replace: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then rename).

    Args:
        path: the target file.
        data: its bytes.
        replace: ``False``: leave a file that exists at ``path`` when the write completes.

    Raises:
        FileExistsError: ``replace=False`` and ``path`` exists (nothing written).
        ImageError: the folder does not exist or is not writable, or the write failed
            (message names the path); an existing file at ``path`` is left intact.
    """
    path = Path(path)
    try:
        with atomic_output(path, replace=replace) as fh:
            fh.write(data)
    except FileExistsError:
        if replace:
            raise ImageError(f"{path}: cannot write (exists)") from None
        raise
    except OSError as exc:
        if not path.parent.is_dir():
            raise ImageError(f"{path.parent}: output folder does not exist") from None
        raise ImageError(f"{path}: cannot write ({exc.strerror or exc})") from None


def _quantize(a: np.ndarray, depth: int) -> np.ndarray:
    """Round ``[0, 1]`` floats to uint8/uint16, in blocks of rows (small temporaries for large outputs)."""
    maxv = np.float32(65535.0 if depth == 16 else 255.0)
    out = np.empty(a.shape, np.uint16 if depth == 16 else np.uint8)
    step = max(1, (1 << 22) // max(1, a[0].size))
    for y in range(0, a.shape[0], step):
        q = np.clip(a[y : y + step], 0.0, 1.0, dtype=np.float32)
        q *= maxv
        np.rint(q, out=q)
        out[y : y + step] = q
    return out


def write_image(path: str | Path, image: Image, quality: int = 95, replace: bool = True) -> None:
    """Encode ``image`` by the path's extension and write it atomically.

    PNG and TIFF keep 16-bit depth, gray and alpha (gray+alpha included); JPEG and BMP
    are 8-bit without alpha (alpha dropped); WebP is 8-bit with alpha. The ICC profile
    is embedded where the format allows (see the module docstring).

    Args:
        path: output file; the extension picks the format.
        image: the image, values in ``[0, 1]``.
        quality: JPEG/WebP quality 1..100.
        replace: ``False``: keep a file that appeared at ``path`` meanwhile (another
            process) instead of replacing it.

    Raises:
        ImageError: unknown extension, encoder failure or unwritable destination.
        FileExistsError: ``replace=False`` and ``path`` exists (nothing written).
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        raise ImageError(f"{path}: unknown output format '{ext}' (use one of {', '.join(IMAGE_EXTENSIONS)})")
    depth = 16 if image.bit_depth == 16 and ext in DEEP_EXTENSIONS else 8
    alpha = image.alpha if ext not in NO_ALPHA_EXTENSIONS else None
    gray = image.color.shape[2] == 1
    icc = image.icc_profile
    stays_gray = gray and ext != ".webp" and (alpha is None or ext == ".png")
    if icc and not _icc_fits(icc, gray=stays_gray):
        icc = None  # e.g. a gray profile on gray stored as RGB(A)
    if gray and alpha is not None and ext == ".png":
        planes = np.concatenate([image.color, alpha[:, :, None]], axis=2)
        data = _encode_png(_quantize(planes, depth), color_type=4, icc=icc)
        atomic_write_bytes(path, data, replace=replace)
        return
    color = image.color
    if gray and alpha is not None:  # gray+alpha outside PNG: store as RGBA
        color = np.repeat(color, 3, axis=2)
    q = _quantize(color[:, :, ::-1] if color.shape[2] == 3 else color, depth)
    if alpha is not None:
        q = np.concatenate([q, _quantize(alpha, depth)[:, :, None]], axis=2)
    if q.shape[2] == 1:
        q = q[:, :, 0]
    data = None
    if icc and ext in (".webp", ".tif", ".tiff"):
        data = _encode_pillow(q, ext, quality, icc)
    if data is None:
        params: list[int] = []
        if ext in (".jpg", ".jpeg"):
            params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
        elif ext == ".webp":
            params = [cv2.IMWRITE_WEBP_QUALITY, int(quality)]
        elif ext == ".png":
            params = [cv2.IMWRITE_PNG_COMPRESSION, 3]
        try:
            ok, buf = cv2.imencode(".tif" if ext == ".tiff" else ext, q, params)
        except cv2.error as exc:
            raise ImageError(f"{path}: could not encode image as {ext} ({exc.err})") from None
        if not ok:
            raise ImageError(f"{path}: could not encode image as {ext}")
        data = buf.tobytes()
        if icc and ext == ".png":
            data = _png_insert_iccp(data, icc)
        elif icc and ext in (".jpg", ".jpeg"):
            data = _jpeg_insert_icc(data, icc)
    atomic_write_bytes(path, data, replace=replace)


def _icc_fits(icc: bytes, gray: bool) -> bool:
    """Whether the profile's colour space (header bytes 16..20) suits a gray or an RGB image."""
    space = icc[16:20]
    if space == b"GRAY":
        return gray
    if space == b"RGB ":
        return not gray
    return False  # e.g. a CMYK profile of a CMYK JPEG that was decoded to RGB


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def _iccp_chunk(icc: bytes) -> bytes:
    return _png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc))


def _png_insert_iccp(data: bytes, icc: bytes) -> bytes:
    """Insert an ``iCCP`` chunk right after IHDR (PNG spec: before PLTE and IDAT)."""
    if data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        return data
    end = 8 + 8 + struct.unpack(">I", data[8:12])[0] + 4
    return data[:end] + _iccp_chunk(icc) + data[end:]


def _encode_png(q: np.ndarray, color_type: int, icc: bytes | None) -> bytes:
    """A small PNG encoder for what OpenCV cannot write (gray+alpha), 8 or 16 bit.

    Args:
        q: ``(H, W, C)`` uint8 or uint16 samples, C matching ``color_type``.
        color_type: PNG colour type (4 = gray+alpha).
        icc: ICC profile to embed, or ``None``.
    """
    h, w = q.shape[:2]
    depth = 16 if q.dtype == np.uint16 else 8
    rows = q.astype(">u2").view(np.uint8) if depth == 16 else q
    rows = rows.reshape(h, -1)
    # "Up" filter (type 2) on every row: a cheap predictor that compresses smooth images well.
    up = rows.copy()
    up[1:] -= rows[:-1]
    raw = np.concatenate([np.full((h, 1), 2, np.uint8), up], axis=1).tobytes()
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0)
    parts = [_PNG_SIGNATURE, _png_chunk(b"IHDR", ihdr)]
    if icc:
        parts.append(_iccp_chunk(icc))
    parts += [_png_chunk(b"IDAT", zlib.compress(raw, 6)), _png_chunk(b"IEND", b"")]
    return b"".join(parts)


def _jpeg_insert_icc(data: bytes, icc: bytes) -> bytes:
    """Insert ``APP2 ICC_PROFILE`` segments after SOI (and after a JFIF APP0 segment)."""
    if data[:2] != b"\xff\xd8":
        return data
    pos = 2
    if data[2:4] == b"\xff\xe0":
        pos = 4 + struct.unpack(">H", data[4:6])[0]
    chunk = 65519
    pieces = [icc[i : i + chunk] for i in range(0, len(icc), chunk)]
    if len(pieces) > 255:
        return data
    segs = b"".join(
        b"\xff\xe2" + struct.pack(">H", 2 + 14 + len(p)) + b"ICC_PROFILE\x00" + bytes((i + 1, len(pieces))) + p
        for i, p in enumerate(pieces)
    )
    return data[:pos] + segs + data[pos:]


def _encode_pillow(q: np.ndarray, ext: str, quality: int, icc: bytes) -> bytes | None:
    """Encode through Pillow to embed an ICC profile; ``None`` where Pillow cannot hold the pixels."""
    from PIL import Image as PILImage

    if q.ndim == 3 and q.shape[2] == 3:
        q, mode = q[:, :, ::-1], "RGB"
    elif q.ndim == 3 and q.shape[2] == 4:
        q, mode = q[:, :, [2, 1, 0, 3]], "RGBA"
    elif q.ndim == 2:
        mode = "I;16" if q.dtype == np.uint16 else "L"
    else:
        return None
    if q.dtype == np.uint16 and mode != "I;16":
        return None  # Pillow has no 16-bit RGB(A): keep the pixels, drop the profile
    try:
        im = PILImage.fromarray(np.ascontiguousarray(q), mode) if mode != "I;16" else PILImage.fromarray(q)
        out = io.BytesIO()
        if ext == ".webp":
            im.save(out, format="WEBP", quality=int(quality), icc_profile=icc)
        else:
            im.save(out, format="TIFF", compression="tiff_lzw", icc_profile=icc)
        return out.getvalue()
    except Exception:  # noqa: BLE001 - fall back to OpenCV without the profile
        return None


def to_tensor(a: np.ndarray) -> torch.Tensor:
    """``(H, W, C)`` float array -> ``(1, C, H, W)`` float32 tensor (values unchanged)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).unsqueeze(0).float()


def from_tensor(t: torch.Tensor) -> np.ndarray:
    """``(1, C, H, W)`` or ``(C, H, W)`` tensor -> ``(H, W, C)`` float32 array, clamped to ``[0, 1]``."""
    if t.dim() == 4:
        t = t[0]
    return t.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
