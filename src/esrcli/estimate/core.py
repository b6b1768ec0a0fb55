"""``estimate(image)``: noise sigma per channel, JPEG quality, blur sigma and the recommended denoise strength.

How: up to :data:`MAX_PATCHES` 64x64 patches on the image's 8-pixel JPEG block grid (detected; spread evenly over the
image, so a 12 MP photo costs the same as a 1 MP one) go through the embedded ``esr-estimator`` CNN
(:mod:`esrcli.estimate.net`); each output is aggregated over the patches with a robust statistic
(median for JPEG and blur; for noise the median over the flatter half of the patches, where the CNN
is most reliable). When the input is a JPEG file, ``jpeg_quality`` comes exactly from its quantisation
tables instead (:func:`esrcli.estimate.classical.jpeg_file_quality`).
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Union

import numpy as np

from esrcli.errors import ImageError, WeightsError
from esrcli.estimate.classical import jpeg_file_quality
from esrcli.estimate.net import BLUR_SCALE, NOISE_SCALE, PATCH
from esrcli.estimate.strength import recommend_denoise

__all__ = ["DegradationEstimate", "estimate", "MIN_SIDE", "MAX_PATCHES", "MODEL_FILE"]

MIN_SIDE = PATCH  # smallest image side the estimator accepts
MAX_PATCHES = 128
MODEL_FILE = "esr-estimator.safetensors"
NO_JPEG_BELOW = 0.025  # CNN compression output (100 - q)/100 under which the image counts as not JPEG

ImageLike = Union[np.ndarray, str, "os.PathLike[str]"]


@dataclass(frozen=True)
class DegradationEstimate:
    """How an image was degraded, as estimated.

    Attributes:
        noise_sigma: standard deviation of the additive noise per channel (1 value for gray, 3 for
            RGB), in 8-bit levels, as present in the image.
        jpeg_quality: IJG quality 1-100 of the last JPEG compression, or ``None`` when none is seen.
        blur_sigma: sigma in pixels, at the image's own scale, of the Gaussian blur matching its
            softness (0 = as sharp as a clean photo).
        denoise: recommended ``--denoise`` strength in [0, 1]
            (:func:`esrcli.estimate.strength.recommend_denoise`).
    """

    noise_sigma: tuple[float, ...]
    jpeg_quality: int | None
    blur_sigma: float
    denoise: float

    @property
    def noise_sigma_mean(self) -> float:
        """Mean of :attr:`noise_sigma` over channels."""
        return float(np.mean(self.noise_sigma))


def _load_net(weights: str | None = None):
    """The CNN (eval mode) of ``weights`` (an ``esr train-estimator`` export), by default the
    embedded one; ``None`` when the package has no estimator weights. Cached per file and
    version: a file rewritten in place, or the same relative name from another folder, loads
    afresh.

    Raises:
        WeightsError: a missing or unreadable file, or not esr-estimator weights (names it).
    """
    if weights is None:
        return _load_net_cached(None)
    if not os.path.isfile(weights):
        raise WeightsError(f"{weights}: no such estimator weights file")
    st = os.stat(weights)
    return _load_net_cached((os.path.realpath(weights), st.st_mtime_ns, st.st_size), weights)


@lru_cache(maxsize=4)
def _load_net_cached(key: tuple[str, int, int] | None, label: str | None = None):
    """:func:`_load_net`'s loader, cached by ``(real path, mtime, size)`` (``None``: embedded)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from esrcli.estimate.net import EstimatorNet

    weights = label if key is not None else None  # the name the caller gave, for messages
    if key is None:
        ref = resources.files("esrcli.models").joinpath(MODEL_FILE)
        if not ref.is_file():
            return None
        context = resources.as_file(ref)
    else:
        context = nullcontext(Path(key[0]))
    with context as path:
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            sd = load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - any parse failure is a broken file
            raise WeightsError(f"{weights or path}: cannot read the estimator weights ({str(exc).splitlines()[0] if str(exc) else exc})") from None
    if meta.get("format") != "esr-estimator":
        raise WeightsError(f"{weights or path}: not esr-estimator weights (metadata format={meta.get('format')!r})",
                           "esr train-estimator writes them (RUN/esr-estimator.safetensors)")
    net = EstimatorNet(int(meta.get("width", "16")))
    try:
        net.load_state_dict(sd)
    except RuntimeError:
        raise WeightsError(f"{weights or path}: estimator weights that do not fit their declared width {meta.get('width')}") from None
    net.eval()
    return net


def _as_samples(image: np.ndarray, name: str, from_file: bool = False) -> np.ndarray:
    """``(H, W, C)`` samples (C = 1 or 3; alpha dropped; uint8, uint16 or float32 in [0, 1]) of an
    array; a float file's samples are clipped into [0, 1] as esr reads such files everywhere."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise ImageError(f"{name}: expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {a.shape}")
    if a.shape[2] in (2, 4):
        a = a[:, :, : a.shape[2] - 1]
    if a.shape[2] == 3:
        # gray stored as RGB(A) (OpenCV expands gray+alpha so): estimate it as gray
        rows = a[:: max(1, a.shape[0] // 64)]
        if np.array_equal(rows[:, :, 0], rows[:, :, 1]) and np.array_equal(rows[:, :, 0], rows[:, :, 2]) \
                and np.array_equal(a[:, :, 0], a[:, :, 1]) and np.array_equal(a[:, :, 0], a[:, :, 2]):
            a = a[:, :, :1]
    if a.dtype in (np.float32, np.float64):
        if a.size and not np.isfinite(a).all():
            raise ImageError(f"{name}: the image contains NaN or infinite values")
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if not from_file and (lo < -0.1 or hi > 1.1):  # 8-bit values in a float array would be misread, not clipped
            hint = " (8-bit values? divide by 255)" if hi > 2 else ""
            raise ImageError(f"{name}: float samples must lie in [0, 1], got {lo:.6g} to {hi:.6g}{hint}")
        a = np.clip(a, 0, 1).astype(np.float32, copy=False)
    if a.dtype not in (np.uint8, np.uint16, np.float32):
        raise ImageError(f"{name}: expected uint8, uint16 or float32/float64 samples in [0, 1], got {a.dtype}")
    return a


def _to_levels(a: np.ndarray) -> np.ndarray:
    """float32 8-bit levels (0-255) of uint8 / uint16 / float [0, 1] samples."""
    if a.dtype == np.uint8:
        return a.astype(np.float32)
    scale = 255.0 / 65535.0 if a.dtype == np.uint16 else 255.0
    return a.astype(np.float32) * np.float32(scale)


def _dct8() -> np.ndarray:
    """The orthonormal 8-point DCT-II matrix (JPEG's block transform), float32 ``(8, 8)``."""
    k, n = np.arange(8)[:, None], np.arange(8)[None, :]
    c = np.sqrt(np.where(k == 0, 1.0, 2.0) / 8.0) * np.cos((2 * n + 1) * k * np.pi / 16)
    return c.astype(np.float32)


_DCT8 = _dct8()
#: Texture energy (8-bit levels, :func:`_flatness`) under which no patch of an image shows
#: any detail (a flat colour, at most faint noise): its blur and JPEG quality are not estimated.
FLAT_LEVEL = 0.25
PHASE_WINDOW = 264  # pixels per side of the centre window block_phase reads (33 blocks)


def block_phase(gray: np.ndarray) -> tuple[int, int]:
    """Offset ``(dy, dx)`` in 0..7 of the 8x8 JPEG block grid of a decoded (possibly cropped) image.

    JPEG rounds each block's DCT coefficients to multiples of its quantisation steps, so on the
    encoder's grid most AC coefficients of a decoded block are (nearly) zero, and on any other
    grid they are not. For each of the 64 offsets this takes the fraction of AC coefficients
    below 0.75 (8-bit levels) over the blocks of a centre window (at most
    :data:`PHASE_WINDOW` pixels a side, cut at multiples of 8 from the origin so the offset
    stays the image's) and returns the offset with the most; ``(0, 0)`` when none stands out
    by a full percentage point (an image never compressed, resized after compression, or flat).

    Args:
        gray: ``(H, W)`` luma or one colour plane, uint8, uint16 or float32 in [0, 1].

    Returns:
        ``(dy, dx)``: the first block starts at row ``dy`` and column ``dx``.
    """
    g = _to_levels(np.asarray(gray)) - np.float32(128.0)
    h, w = g.shape
    ch, cw = min(h, PHASE_WINDOW), min(w, PHASE_WINDOW)
    top, left = (h - ch) // 16 * 8, (w - cw) // 16 * 8
    g = g[top : top + ch, left : left + cw]
    if ch < 24 or cw < 24:  # fewer than two whole blocks a side at some offset
        return 0, 0
    scores = np.zeros((8, 8), np.float64)
    for dy in range(8):
        for dx in range(8):
            hh, ww = (ch - dy) // 8 * 8, (cw - dx) // 8 * 8
            blocks = g[dy : dy + hh, dx : dx + ww].reshape(hh // 8, 8, ww // 8, 8).transpose(0, 2, 1, 3)
            coef = np.abs(_DCT8 @ blocks @ _DCT8.T).reshape(-1, 64)[:, 1:]
            scores[dy, dx] = np.mean(coef < 0.75)
    best = np.unravel_index(int(np.argmax(scores)), scores.shape)
    others = np.delete(scores.ravel(), best[0] * 8 + best[1])
    if scores[best] < others.max() + 0.01:
        return 0, 0
    return int(best[0]), int(best[1])


def _patch_origins(h: int, w: int, n: int, phase: tuple[int, int] = (0, 0)) -> list[tuple[int, int]]:
    """Up to ``n`` top-left corners on the 8-pixel grid shifted by ``phase``, spread evenly over an ``h x w`` image."""
    dy, dx = phase
    h, w = h - dy, w - dx
    ny, nx = (h - PATCH) // 8 + 1, (w - PATCH) // 8 + 1
    # a rows x cols lattice with about n points and the image's aspect ratio
    rows = max(1, min(ny, int(round(np.sqrt(n * ny / nx)))))
    cols = max(1, min(nx, n // rows))
    ys = np.unique(np.linspace(0, ny - 1, rows).round().astype(int)) * 8 + dy
    xs = np.unique(np.linspace(0, nx - 1, cols).round().astype(int)) * 8 + dx
    return [(int(y), int(x)) for y in ys for x in xs]


def _patches(samples: np.ndarray) -> np.ndarray:
    """``(N, 3, P, P)`` float32 in [0, 1] (8-bit rounded; gray replicated) from ``(H, W, C)`` samples."""
    h, w, c = samples.shape
    dy, dx = block_phase(samples[:, :, min(1, c - 1)])
    if h - dy < PATCH or w - dx < PATCH:
        dy = dx = 0
    out = []
    for y, x in _patch_origins(h, w, MAX_PATCHES, (dy, dx)):
        p = samples[y : y + PATCH, x : x + PATCH]
        if p.dtype != np.uint8:
            p = np.clip(np.rint(_to_levels(p)), 0, 255)
        out.append(p)
    a = np.stack(out).astype(np.float32) * np.float32(1.0 / 255.0)
    if c == 1:
        a = np.repeat(a, 3, axis=3)
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def _flatness(patches: np.ndarray) -> np.ndarray:
    """Per-patch texture energy: mean absolute difference between 2-pixel-apart samples (noise mostly cancels)."""
    g = patches.mean(axis=1)
    return np.abs(g[:, 2:, :] - g[:, :-2, :]).mean(axis=(1, 2)) + np.abs(g[:, :, 2:] - g[:, :, :-2]).mean(axis=(1, 2))


def _cnn(patches: np.ndarray, net) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return net(torch.from_numpy(patches)).numpy()


def _classical(levels: np.ndarray) -> tuple[tuple[float, ...], float | None, float]:
    from esrcli.estimate.classical import immerkaer_per_channel

    return immerkaer_per_channel(levels.astype(np.float32)), None, 0.0


def estimate(image: ImageLike, weights: str | Path | None = None) -> DegradationEstimate:
    """Estimate the noise, JPEG quality and blur of one image.

    Args:
        image: a path (any format esr reads; a JPEG file's quality is read exactly from its
            quantisation tables), or an array ``(H, W)`` gray, ``(H, W, 3)`` RGB or ``(H, W, 4)``
            RGBA (alpha ignored), uint8, uint16 or float32/float64 in [0, 1] (values within 0.1
            outside it are clipped). Each side must be at least
            :data:`MIN_SIDE`. Files are read as stored (no EXIF rotation: the JPEG block grid
            stays where the encoder put it); gray stored as RGB is estimated as gray.
        weights: estimator weights written by ``esr train-estimator``
            (``RUN/esr-estimator.safetensors``); default: the embedded ones.

    Returns:
        A :class:`DegradationEstimate`.

    Raises:
        ImageError: unreadable file, unsupported array (shape, dtype, NaN or infinite values,
            floats outside [-0.1, 1.1]), or an image smaller than 64x64; the message names
            the file (or ``<array>``).
        WeightsError: the estimator weights are missing (a ``weights`` file) or broken.
    """
    file_quality: int | None = None
    is_file = isinstance(image, (str, os.PathLike))
    if is_file:
        from esrcli.data.imageio import read_samples

        path = Path(image)
        name = str(path)
        samples = _as_samples(read_samples(path), name, from_file=True)
        file_quality = jpeg_file_quality(path)
    else:
        name = "<array>"
        samples = _as_samples(image, name)
    h, w = samples.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ImageError(f"{name}: too small to estimate ({w}x{h}; at least {MIN_SIDE}x{MIN_SIDE})")
    net = _load_net(None if weights is None else str(weights))
    channels = samples.shape[2]
    if net is None:
        noise, quality, blur = _classical(_to_levels(samples))
    else:
        patches = _patches(samples)
        out = _cnn(patches, net)
        flat = _flatness(patches)
        keep = flat <= np.median(flat)
        # gray: one sigma, the median over the three (equal-input) channel outputs together
        per_channel = np.median(out[keep, :3], axis=None if channels == 1 else 0) * NOISE_SCALE
        noise = tuple(float(max(0.0, v)) for v in np.atleast_1d(per_channel))
        comp = float(np.median(out[:, 3]))
        quality = None if comp < NO_JPEG_BELOW else int(np.clip(round(100.0 - 100.0 * comp), 1, 100))
        blur = float(max(0.0, np.median(out[:, 4]) * BLUR_SCALE))
        if float(flat.max()) < FLAT_LEVEL / 255.0:  # no detail anywhere: blur and JPEG leave no trace
            quality, blur = None, 0.0
    if file_quality is not None:
        quality = file_quality
    noise = tuple(round(float(v), 3) for v in noise)
    blur = round(float(blur), 3)
    denoise = float(recommend_denoise(float(np.mean(noise)), quality, blur))
    return DegradationEstimate(noise_sigma=noise, jpeg_quality=quality, blur_sigma=blur, denoise=denoise)
