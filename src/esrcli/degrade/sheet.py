"""A contact sheet that shows what the degradation model does to an image.

One tile for the HR crop, then one per LQ sample enlarged with nearest-neighbour (so
blur, noise, ringing and JPEG blocks are seen pixel by pixel), each captioned with its
sampled parameters: both stages' kernels, noise and resize, JPEG qualities and the order
of the final step.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["describe", "contact_sheet"]

_SHORT = {
    "iso": "iso",
    "aniso": "aniso",
    "generalized_iso": "gen-iso",
    "generalized_aniso": "gen-aniso",
    "plateau_iso": "plat-iso",
    "plateau_aniso": "plat-aniso",
}


def _kernel(k: dict[str, Any] | None) -> str:
    if k is None:
        return "no blur"
    if k["type"] == "sinc":
        return f"sinc{k['size']} wc={k['omega_c']:.2f}"
    text = f"{_SHORT[k['type']]}{k['size']} s={k['sigma_x']:.2f}"
    if k["type"].endswith("aniso"):
        text += f"/{k['sigma_y']:.2f} {math.degrees(k['theta']):+.0f}deg"
    if k.get("beta") is not None:
        text += f" b={k['beta']:.2f}"
    return text


def _noise(n: dict[str, Any]) -> str:
    gray = " gray" if n["gray"] else ""
    if n["type"] == "gaussian":
        return f"gauss {n['sigma']:.1f}{gray}"
    return f"poisson {n['scale']:.2f}{gray}"


def _resize(r: dict[str, Any]) -> str:
    return f"{r['direction']} {r['factor']:.2f} {r['mode']}"


def describe(params: dict[str, Any]) -> list[str]:
    """Short caption lines (ASCII) for one sample's parameter dict from ``sample_params``."""
    s1, s2, fin = params["first"], params["second"], params["final"]
    order = "sinc>jpeg" if fin["order"] == "sinc_first" else "jpeg>sinc"
    sinc = "no sinc" if fin["sinc"] is None else f"sinc{fin['sinc']['size']} wc={fin['sinc']['omega_c']:.2f}"
    return [
        f"1: {_kernel(s1['blur'])}",
        f"   {_noise(s1['noise'])}, {_resize(s1['resize'])}, q{s1['jpeg_quality']}",
        f"2: {_kernel(s2['blur'])}",
        f"   {_noise(s2['noise'])}, {_resize(s2['resize'])}",
        f"final: {order} q{fin['jpeg_quality']}, {sinc}",
    ]


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def text_width(lines: list[str], font) -> int:
    """Pixels the widest of ``lines`` takes in ``font`` (for cells that fit their captions)."""
    from PIL import Image, ImageDraw

    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    return math.ceil(max(measure.textlength(line, font=font) for line in lines))


def contact_sheet(
    hr: np.ndarray,
    lqs: list[np.ndarray],
    params: list[dict[str, Any]],
    scale: int,
    title: str = "",
    columns: int | None = None,
) -> np.ndarray:
    """Lay out the HR crop and the LQ samples (enlarged ``scale`` x, nearest) with captions.

    Args:
        hr: ``(H, W, 3)`` float32 RGB in ``[0, 1]``, the source crop.
        lqs: LQ samples, each ``(H / scale, W / scale, 3)`` float32 RGB in ``[0, 1]``.
        params: the parameter dict of each sample (same order as ``lqs``).
        scale: the enlargement factor of the LQ tiles.
        title: caption of the HR tile (e.g. the source file name).
        columns: tiles per row (default: a landscape-ish grid, 5 for 12 samples).

    Returns:
        ``(rows, cols, 3)`` float32 RGB sheet in ``[0, 1]``.

    Raises:
        ValueError: ``lqs`` and ``params`` of different lengths.
    """
    from PIL import Image, ImageDraw

    if len(lqs) != len(params):
        raise ValueError(f"{len(lqs)} images but {len(params)} parameter sets")
    h, w = hr.shape[:2]
    font = _font(11)
    line_h, pad = 13, 6
    cap_h = 5 * line_h + 4
    if columns is None:
        columns = math.ceil(math.sqrt(1.3 * (len(lqs) + 1)))
    cols = max(1, min(columns, len(lqs) + 1))
    rows = math.ceil((len(lqs) + 1) / cols)

    def to_pil(a: np.ndarray) -> Image.Image:
        return Image.fromarray(np.clip(np.rint(a * 255), 0, 255).astype(np.uint8))

    tiles = [(to_pil(hr), [title or "HR crop", f"{w}x{h} ground truth", f"LQ tiles: x{scale} nearest"])]
    for lq, p in zip(lqs, params):
        big = np.repeat(np.repeat(lq, scale, axis=0), scale, axis=1)[:h, :w]
        tiles.append((to_pil(big), describe(p)))
    # a cell is as wide as its widest caption, so captions of a small crop do not run into each other
    cell_w, cell_h = max(w, text_width([line for _, lines in tiles for line in lines], font)) + pad, h + cap_h + pad
    sheet = Image.new("RGB", (cols * cell_w + pad, rows * cell_h + pad), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (im, lines) in enumerate(tiles):
        x0 = pad + (i % cols) * cell_w
        y0 = pad + (i // cols) * cell_h
        sheet.paste(im, (x0, y0))
        for j, line in enumerate(lines):
            draw.text((x0, y0 + h + 2 + j * line_h), line, fill=(0, 0, 0), font=font)
    return np.asarray(sheet, dtype=np.float32) / 255.0
