"""Classical degradation estimators: Immerkaer's noise estimate and JPEG quantisation-table reading.

These are the baselines the CNN estimator is measured against (``benchmarks/bench_estimate.py``), and
the exact source of ``jpeg_quality`` when the input is a JPEG file.
"""

from __future__ import annotations

import io
import math
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from esrcli.errors import ImageError

__all__ = ["immerkaer_sigma", "immerkaer_per_channel", "ijg_quality_from_tables", "jpeg_file_quality"]

# Immerkaer's mask: the difference of two Laplacians, which cancels image structure up to second order.
_MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)


def immerkaer_sigma(channel: np.ndarray) -> float:
    """Immerkaer's fast noise estimate of one channel.

    sigma = sqrt(pi/2) / (6 (W-2)(H-2)) * sum |I * M|, with M the 3x3 mask above
    (J. Immerkaer, "Fast Noise Variance Estimation", CVIU 64(2), 1996, eq. 6).

    Args:
        channel: ``(H, W)`` array in 8-bit levels (any float/int dtype), H, W >= 3.

    Returns:
        The noise standard deviation in the same units as the input.

    Raises:
        ValueError: not 2-D or smaller than 3x3.
    """
    if channel.ndim != 2 or min(channel.shape) < 3:
        raise ValueError(f"expected an (H, W) channel of at least 3x3, got {channel.shape}")
    a = channel.astype(np.float32, copy=False)
    r = cv2.filter2D(a, cv2.CV_32F, _MASK, borderType=cv2.BORDER_REPLICATE)[1:-1, 1:-1]
    h, w = a.shape
    return float(math.sqrt(math.pi / 2.0) * np.abs(r, dtype=np.float64).sum() / (6.0 * (w - 2) * (h - 2)))


def immerkaer_per_channel(image: np.ndarray) -> tuple[float, ...]:
    """Immerkaer's estimate of each channel of an ``(H, W)`` or ``(H, W, C)`` image in 8-bit levels."""
    if image.ndim == 2:
        return (immerkaer_sigma(image),)
    return tuple(immerkaer_sigma(image[:, :, c]) for c in range(image.shape[2]))


@lru_cache(maxsize=1)
def _ijg_luma_tables() -> np.ndarray:
    """``(100, 64)`` IJG luminance tables of qualities 1..100, in Pillow's order (read back from Pillow)."""
    from PIL import Image as PILImage

    src = PILImage.new("L", (8, 8), 128)
    out = np.zeros((100, 64), dtype=np.float64)
    for q in range(1, 101):
        buf = io.BytesIO()
        src.save(buf, format="JPEG", quality=q)
        with PILImage.open(io.BytesIO(buf.getvalue())) as im:
            out[q - 1] = np.asarray(im.quantization[0], dtype=np.float64)
    return out


def ijg_quality_from_tables(tables: dict[int, list[int]]) -> int:
    """The IJG quality (1-100) whose scaled standard luminance table is closest to table 0.

    IJG scales the Annex K table by ``5000/q`` (q < 50) or ``200 - 2q`` (q >= 50) percent, rounded and
    clamped to [1, 255]; files written by libjpeg/Pillow/OpenCV match one quality exactly. Files with
    custom tables (cameras, Photoshop) get the nearest quality in mean absolute difference.

    Args:
        tables: Pillow's ``Image.quantization`` (table id -> 64 values).

    Raises:
        ValueError: no table 0 or not 64 entries.
    """
    t0 = np.asarray(tables.get(0, []), dtype=np.float64)
    if t0.size != 64:
        raise ValueError("JPEG luminance quantisation table missing or not 64 entries")
    ref = _ijg_luma_tables()
    err = np.abs(ref - t0[None, :]).mean(axis=1)
    # ties (q near 100 where tables saturate at 1): the highest quality
    best = np.flatnonzero(err == err.min())
    return int(best.max() + 1)


def jpeg_file_quality(path: str | Path) -> int | None:
    """The IJG quality of a JPEG file from its quantisation tables, or ``None`` for other formats.

    Raises:
        ImageError: the file cannot be opened.
    """
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    path = Path(path)
    try:
        with PILImage.open(path) as im:
            if im.format != "JPEG":
                return None
            tables = getattr(im, "quantization", None)
            if not tables:
                return None
            return ijg_quality_from_tables(tables)
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageError(f"{path}: not a readable image ({exc})") from None
    except ValueError:
        return None
