"""Images as the metrics see them: ``uint8`` ``(H, W, C)`` arrays, the way MATLAB reads them.

Conventions (documented in docs/metrics.md):

* 8-bit files give their exact sample values.
* 16-bit files are quantised to 8 bits, ``round(v * 255 / 65535)`` (half away from zero), so
  that every metric is computed on ``uint8`` data as MATLAB would after ``im2uint8``.
* Gray files give ``(H, W, 1)``; alpha is ignored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from esrcli.data.imageio import Image, read_image
from esrcli.ops.color import matlab_round

__all__ = ["to_uint8", "read_uint8"]


def to_uint8(image: Image | np.ndarray) -> np.ndarray:
    """Colour samples of a decoded image as ``uint8`` ``(H, W, C)`` (C = 1 or 3), alpha dropped.

    Args:
        image: an :class:`~esrcli.data.imageio.Image` or a float ``(H, W, C)`` array in ``[0, 1]``.

    Returns:
        ``uint8`` array; 16-bit sources are rounded to the nearest 8-bit level.
    """
    color = image.color if isinstance(image, Image) else np.asarray(image)
    if color.ndim == 2:
        color = color[:, :, None]
    return np.clip(matlab_round(color.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def read_uint8(path: str | Path) -> np.ndarray:
    """Read an image file for metrics: ``uint8`` ``(H, W, 3)`` RGB or ``(H, W, 1)`` gray.

    Raises:
        ImageError: the file is missing, unreadable or not an image (message names the file).
    """
    return to_uint8(read_image(path))
