"""Colour conversions with MATLAB's conventions (ITU-R BT.601 "studio swing" YCbCr, rgb2gray).

The numbers SR papers report (PSNR/SSIM on Y, NIQE) come from MATLAB. Its conversions are:

* ``rgb2ycbcr`` (BT.601, studio range): with ``R, G, B`` in ``[0, 1]``::

      Y  =  16 + ( 65.481 R + 128.553 G +  24.966 B)
      Cb = 128 + (-37.797 R -  74.203 G + 112.000 B)
      Cr = 128 + (112.000 R -  93.786 G -  18.214 B)

  on the ``[0, 255]`` scale (``Y`` in ``[16, 235]``). For ``uint8`` input MATLAB computes in
  double precision and rounds the result to ``uint8`` (half away from zero).
* ``rgb2gray``: ``0.298936021293775 R + 0.587043074451121 G + 0.114020904255103 B`` (the first
  row of the inverse of MATLAB's NTSC matrix), rounded to ``uint8`` for ``uint8`` input.

Sources: MATLAB Image Processing Toolbox documentation of ``rgb2ycbcr``/``rgb2gray``;
ITU-R BT.601; BasicSR ``basicsr/utils/color_util.py`` uses the same coefficients.

Arrays here are numpy ``(H, W, 3)`` RGB (``..., 3`` in general, channel last) unless the
function name ends in ``_pt`` (torch, ``(B, 3, H, W)``, channel dimension ``-3``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

__all__ = [
    "YCBCR_MATRIX",
    "YCBCR_OFFSET",
    "GRAY_WEIGHTS",
    "matlab_round",
    "rgb2ycbcr",
    "ycbcr2rgb",
    "bgr2ycbcr",
    "rgb2gray",
    "rgb2y_255",
    "rgb2ycbcr_pt",
]

#: Rows Y, Cb, Cr; columns R, G, B; applied to RGB in [0, 1] giving values on the [0, 255] scale.
YCBCR_MATRIX = np.array(
    [
        [65.481, 128.553, 24.966],
        [-37.797, -74.203, 112.0],
        [112.0, -93.786, -18.214],
    ],
    dtype=np.float64,
)
#: Offsets of Y, Cb, Cr on the [0, 255] scale.
YCBCR_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float64)
#: MATLAB rgb2gray weights for R, G, B.
GRAY_WEIGHTS = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103], dtype=np.float64)


def matlab_round(x: np.ndarray) -> np.ndarray:
    """Round half away from zero, as MATLAB's ``round`` and its uint8 conversion do.

    ``np.round`` rounds half to even (``2.5 -> 2``); MATLAB gives ``3``. Exact for every
    float64 (no ``x + 0.5`` rounding step).

    Args:
        x: float array.

    Returns:
        Float array of the same shape and dtype with integral values.
    """
    x = np.asarray(x)
    a = np.abs(x)
    f = np.floor(a)
    f += (a - f) >= 0.5
    return np.copysign(f, x)


def _check_rgb(img: np.ndarray, name: str) -> None:
    if img.ndim < 1 or img.shape[-1] != 3:
        raise ValueError(f"{name}: expected an array with 3 channels last (..., 3), got shape {tuple(img.shape)}")


def _to_uint8(x: np.ndarray, in_range: bool = False) -> np.ndarray:
    """MATLAB's conversion of doubles to uint8: saturate, then round half away from zero.

    ``in_range=True`` promises ``0 <= x <= 255`` and lets ``x`` be overwritten.
    """
    if not in_range:
        x = np.clip(x, 0.0, 255.0)  # clipping first gives the same result and leaves x >= 0
    f = np.floor(x)
    np.subtract(x, f, out=x)
    f += x >= 0.5
    return f.astype(np.uint8)


def rgb2ycbcr(img: np.ndarray, y_only: bool = False) -> np.ndarray:
    """MATLAB ``rgb2ycbcr`` (BT.601 studio swing).

    Conventions by input dtype (as MATLAB):

    * ``uint8`` ``[0, 255]``: computed in float64, rounded half away from zero and returned as
      ``uint8`` (``Y`` in ``[16, 235]``).
    * float ``[0, 1]``: returned as float64 in ``[0, 1]`` (``Y`` in ``[16/255, 235/255]``), not
      rounded.

    Args:
        img: ``(..., 3)`` RGB array, ``uint8`` or float in ``[0, 1]``.
        y_only: return only ``Y`` with shape ``(...)`` instead of ``(..., 3)`` YCbCr.

    Returns:
        ``Y`` ``(...)`` or YCbCr ``(..., 3)``, dtype ``uint8`` for ``uint8`` input, else float64.

    Raises:
        ValueError: the last dimension is not 3.
    """
    img = np.asarray(img)
    _check_rgb(img, "rgb2ycbcr")
    if img.dtype == np.uint8:
        # MATLAB: imapplymatrix(T/255, rgb, offset, 'uint8') in double, then rounded. The products
        # T(k,c)/255 * v come from 256-entry tables (identical values, one gather per channel).
        luts = _uint8_tables()
        rows = (0,) if y_only else (0, 1, 2)
        planes = []
        for k in rows:
            acc = luts[k, 0][img[..., 0]]
            acc += luts[k, 1][img[..., 1]]
            acc += luts[k, 2][img[..., 2]]
            acc += YCBCR_OFFSET[k]
            planes.append(_to_uint8(acc, in_range=True))  # Y in [16, 235], Cb/Cr in [16, 240]
        return planes[0] if y_only else np.stack(planes, axis=-1)
    x = img.astype(np.float64)
    t = YCBCR_MATRIX / 255.0
    off = YCBCR_OFFSET / 255.0
    if y_only:
        return x @ t[0] + off[0]
    return x @ t.T + off


@lru_cache(maxsize=1)
def _uint8_tables() -> np.ndarray:
    """``tables[k, c, v] = (YCBCR_MATRIX[k, c] / 255) * v`` for v = 0..255 (float64, read-only)."""
    t = (YCBCR_MATRIX / 255.0)[:, :, None] * np.arange(256, dtype=np.float64)[None, None, :]
    t.setflags(write=False)
    return t


def ycbcr2rgb(img: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb2ycbcr` (MATLAB ``ycbcr2rgb``), same dtype conventions.

    Args:
        img: ``(..., 3)`` YCbCr, ``uint8`` or float in ``[0, 1]``.

    Returns:
        RGB ``(..., 3)``; ``uint8`` (rounded, clipped) for ``uint8`` input, else float64 (not clipped).

    Raises:
        ValueError: the last dimension is not 3.
    """
    img = np.asarray(img)
    _check_rgb(img, "ycbcr2rgb")
    is_u8 = img.dtype == np.uint8
    x = img.astype(np.float64)
    if not is_u8:
        x = x * 255.0
    inv = np.linalg.inv(YCBCR_MATRIX)  # maps (YCbCr - offset) on [0,255] to RGB in [0,1]
    out = (x - YCBCR_OFFSET) @ inv.T
    return _to_uint8(out * 255.0) if is_u8 else out


def bgr2ycbcr(img: np.ndarray, y_only: bool = False) -> np.ndarray:
    """:func:`rgb2ycbcr` for channel order B, G, R (OpenCV arrays); output is still Y, Cb, Cr."""
    img = np.asarray(img)
    _check_rgb(img, "bgr2ycbcr")
    return rgb2ycbcr(img[..., ::-1], y_only=y_only)


def rgb2gray(img: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2gray``: weights 0.298936021293775, 0.587043074451121, 0.114020904255103.

    Args:
        img: ``(..., 3)`` RGB, ``uint8`` or float (any range; the weights sum to 1).

    Returns:
        ``(...)`` gray: ``uint8`` rounded half away from zero for ``uint8`` input (as MATLAB),
        else float64 in the input's range.

    Raises:
        ValueError: the last dimension is not 3.
    """
    img = np.asarray(img)
    _check_rgb(img, "rgb2gray")
    out = img.astype(np.float64) @ GRAY_WEIGHTS
    return _to_uint8(out) if img.dtype == np.uint8 else out


def rgb2y_255(img: np.ndarray) -> np.ndarray:
    """Y on the ``[0, 255]`` scale from RGB on ``[0, 255]``, not rounded (BasicSR's ``test_y_channel``).

    ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255``, in float64.

    Args:
        img: ``(..., 3)`` RGB, any numeric dtype, values in ``[0, 255]``.

    Returns:
        ``(...)`` float64 ``Y`` in ``[16, 235]``.

    Raises:
        ValueError: the last dimension is not 3.
    """
    img = np.asarray(img)
    _check_rgb(img, "rgb2y_255")
    return (img.astype(np.float64) @ YCBCR_MATRIX[0]) / 255.0 + YCBCR_OFFSET[0]


def rgb2ycbcr_pt(img: torch.Tensor, y_only: bool = False) -> torch.Tensor:
    """Torch :func:`rgb2ycbcr` for float tensors in ``[0, 1]`` (no rounding).

    Args:
        img: ``(B, 3, H, W)`` (or ``(3, H, W)``) float RGB in ``[0, 1]``, any device.
        y_only: return ``(B, 1, H, W)`` Y only.

    Returns:
        YCbCr (or Y) in ``[0, 1]`` (Y in ``[16/255, 235/255]``), same dtype and device.

    Raises:
        ValueError: the channel dimension (-3) is not 3.
    """
    if img.dim() < 3 or img.shape[-3] != 3:
        raise ValueError(f"rgb2ycbcr_pt: expected (B, 3, H, W), got shape {tuple(img.shape)}")
    dtype = img.dtype if img.is_floating_point() else torch.float32
    m = torch.as_tensor(YCBCR_MATRIX, dtype=dtype, device=img.device)
    off = torch.as_tensor(YCBCR_OFFSET, dtype=dtype, device=img.device)
    if y_only:
        m, off = m[:1], off[:1]
    out = torch.einsum("...chw,kc->...khw", img.to(dtype), m) + off[:, None, None]
    return out / 255.0
