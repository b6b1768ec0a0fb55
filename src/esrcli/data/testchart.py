"""A deterministic resolution test chart that esr draws itself (no image file needed).

The chart has what makes degradations visible: black/white edges at several angles (a
Siemens-star wedge pattern), fine line gratings of 1-4 px period, text at several sizes,
grey and colour gradients, and a textured area (seeded pseudo-random blobs and a chirp).
The same size always gives the same pixels.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["draw_test_chart"]


def _star(n: int, spokes: int = 24) -> np.ndarray:
    y, x = np.mgrid[0:n, 0:n].astype(np.float64) - (n - 1) / 2
    ang = np.arctan2(y, x)
    r = np.hypot(x, y)
    star = (np.sin(ang * spokes / 2) > 0).astype(np.float32)
    star[r > n / 2 - 2] = 1.0
    star[r < 2] = 0.5
    return star


def _gratings(h: int, w: int) -> np.ndarray:
    out = np.ones((h, w), np.float32)
    band = h // 4
    for i, period in enumerate((2, 3, 4, 6)):
        rows = slice(i * band, (i + 1) * band - 2)
        cols = np.arange(w)
        if i % 2 == 0:
            out[rows, :] = ((cols // (period // 2 if period > 2 else 1)) % 2).astype(np.float32)[None, :]
        else:
            rr = np.arange(rows.start, rows.stop)
            out[rows, :] = ((rr // (period // 2)) % 2).astype(np.float32)[:, None]
    return out


def _texture(h: int, w: int, seed: int = 1234) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    for _ in range(60):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        s = rng.uniform(1.5, 6.0)
        col = rng.uniform(0, 1, 3)
        blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * s * s))
        img += blob[..., None] * (col - 0.5)
    chirp = 0.5 + 0.5 * np.sin(2 * math.pi * (x * x) / (4.0 * w))
    img = 0.5 + img * 0.8
    img[h // 2 :, :, :] = 0.6 * img[h // 2 :, :, :] + 0.4 * chirp[h // 2 :, :, None]
    return np.clip(img, 0, 1).astype(np.float32)


def _text_panel(h: int, w: int) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    im = Image.new("RGB", (w, h), (245, 245, 240))
    d = ImageDraw.Draw(im)
    y = 2
    for size, line in ((18, "esr 4x"), (13, "Real-ESRGAN"), (10, "blur noise JPEG"), (8, "ringing 0123456789")):
        try:
            font = ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1: fixed-size bitmap font
            font = ImageFont.load_default()
        d.text((3, y), line, fill=(10, 10, 10), font=font)
        y += size + 4
    # grey and colour gradients
    gy = y + 2
    gh = max(4, (h - gy) // 3)
    for x in range(w):
        v = int(255 * x / max(1, w - 1))
        d.line([(x, gy), (x, gy + gh - 1)], fill=(v, v, v))
        d.line([(x, gy + gh), (x, gy + 2 * gh - 1)], fill=(v, 255 - v, 128))
        d.line([(x, gy + 2 * gh), (x, h - 1)], fill=(255 - v // 2, v // 3, v))
    return np.asarray(im, dtype=np.float32) / 255.0


def draw_test_chart(size: int = 256) -> np.ndarray:
    """Draw the test chart.

    Args:
        size: side of the square chart in pixels (>= 64; a multiple of 4 is best).

    Returns:
        ``(size, size, 3)`` float32 RGB in ``[0, 1]``.

    Raises:
        ValueError: ``size`` below 64.
    """
    if size < 64:
        raise ValueError(f"test chart size must be >= 64, got {size}")
    half = size // 2
    rest = size - half
    chart = np.zeros((size, size, 3), np.float32)
    chart[:half, :half] = _star(half)[..., None]
    chart[:half, half:] = _gratings(half, rest)[..., None]
    chart[half:, :half] = _text_panel(rest, half)
    chart[half:, half:] = _texture(rest, rest)
    # thin separating frame lines (sharp edges in both directions)
    chart[half - 1 : half + 1, :, :] = 0.0
    chart[:, half - 1 : half + 1, :] = 0.0
    return chart
