"""NIQE, the Natural Image Quality Evaluator, exactly as the authors' MATLAB release computes it.

Mittal, Soundararajan, Bovik, "Making a 'Completely Blind' Image Quality Analyzer",
IEEE Signal Processing Letters 20(3), 2013. Reference implementation: LIVE ``niqe_release``
(``computequality.m``, ``computefeature.m``, ``estimateaggdparam.m``); pristine model
``modelparameters.mat`` (embedded here as ``niqe_pris_params.npz``, see ``NOTICE_niqe.txt``).

The score (lower is better, about 2-10 for photographs) is computed as follows, from a
gray image ``im`` (float64, values ``0..255``):

1. crop to a multiple of the 96x96 block size (top-left corner kept);
2. for each of two scales: ``mu = imfilter(im, w, 'replicate')`` with the 7x7 Gaussian window
   ``w`` (sigma 7/6, normalised), ``sigma = sqrt(|imfilter(im.^2, w, 'replicate') - mu.^2|)``,
   MSCN coefficients ``(im - mu) / (sigma + 1)``; on each non-overlapping block (96x96, then
   48x48) 18 features: an AGGD fit of the coefficients (shape, mean of the two scales) and,
   for the 4 neighbour products (circular shifts ``[0 1; 1 0; 1 1; -1 1]`` inside the block),
   an AGGD fit each (shape, mean, left scale, right scale); the AGGD shape is searched on the
   grid ``0.2:0.001:10`` (eq. of Lasmar et al. 2009); then ``im = imresize(im, 0.5)``
   (MATLAB bicubic with antialiasing, on the float image);
3. multivariate Gaussian fit of the 36-dimensional block features (``nanmean``, ``nancov``),
   and ``sqrt((mu_p - mu_d) pinv((cov_p + cov_d) / 2) (mu_p - mu_d)')``.

Conventions of this implementation beyond MATLAB's:

* Flat windows: where the 7x7 window is constant (range at most ``FLAT_TOL``), the MSCN
  coefficient is exactly 0 in exact arithmetic; MATLAB's floating-point result there is rounding
  noise (~1e-14) whose signs change the AGGD fits. Here such coefficients are set to exactly 0,
  so input noise below ``FLAT_TOL`` cannot move the score. Textured images (the reference
  images among them) have no such window and are unaffected.
* With a single usable block the feature covariance is taken as zero (MATLAB's ``nancov`` of
  one row is not a covariance); with no usable block :class:`~esrcli.errors.MetricError`.

Speed: the five AGGD fits of a block need only per-block sums (counts and sums of squares of
the negative and positive values, sum of absolute values), computed for a band of blocks at a
time with batched dot products, bands in parallel threads; the shape search is a
``searchsorted`` in the strictly increasing table ``r(gamma)`` (precomputed once), which gives
the same index as MATLAB's ``min((r_gam - rhatnorm).^2)`` (first index on ties).
:func:`niqe_reference` is the direct per-block transcription, kept for tests and benchmarks.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from importlib import resources

import cv2
import numpy as np

from esrcli.errors import MetricError
from esrcli.ops.color import matlab_round, rgb2gray, rgb2ycbcr
from esrcli.ops.imresize import imresize

__all__ = [
    "BLOCK_SIZE",
    "FLAT_TOL",
    "NiqeModel",
    "load_pristine_model",
    "aggd_fit",
    "block_features",
    "niqe_features",
    "niqe_gray",
    "niqe_reference",
    "niqe",
    "prepare_niqe_input",
]

#: Block size (pixels) of the feature blocks at the first scale (the MATLAB release's default).
BLOCK_SIZE = 96
#: A 7x7 window whose values span at most this (on the 0..255 scale) counts as flat.
FLAT_TOL = 1e-8
#: MATLAB's circshift offsets (rows, columns) of the four neighbour products.
_SHIFTS = ((0, 1), (1, 0), (1, 1), (-1, 1))


class NiqeModel:
    """The pristine multivariate Gaussian of NIQE and the 7x7 window.

    Attributes:
        mu: float64 ``(36,)`` mean of the pristine features.
        cov: float64 ``(36, 36)`` covariance of the pristine features.
        window: float64 ``(7, 7)`` Gaussian window (sigma 7/6, sums to 1).
    """

    def __init__(self, mu: np.ndarray, cov: np.ndarray, window: np.ndarray) -> None:
        self.mu = np.asarray(mu, dtype=np.float64).reshape(-1)
        self.cov = np.asarray(cov, dtype=np.float64)
        self.window = np.asarray(window, dtype=np.float64)
        if self.mu.shape != (36,) or self.cov.shape != (36, 36) or self.window.shape != (7, 7):
            raise MetricError(
                f"NIQE model: expected mu (36,), cov (36, 36), window (7, 7); got "
                f"{self.mu.shape}, {self.cov.shape}, {self.window.shape}"
            )
        # The window is an outer product g g^T (to 1e-17); filter separably with its marginal.
        self.kernel_1d = self.window.sum(axis=1)


@lru_cache(maxsize=1)
def load_pristine_model() -> NiqeModel:
    """The embedded pristine model (MATLAB ``modelparameters.mat`` of the NIQE authors).

    Raises:
        MetricError: the package data file is missing or unreadable.
    """
    try:
        ref = resources.files("esrcli.metrics").joinpath("niqe_pris_params.npz")
        with ref.open("rb") as fh, np.load(fh) as data:
            return NiqeModel(data["mu_pris_param"], data["cov_pris_param"], data["gaussian_window"])
    except (OSError, KeyError, ValueError) as exc:
        raise MetricError(f"niqe_pris_params.npz: cannot load the NIQE model ({exc})") from None


def _matlab_colon(start: float, step: float, stop: float) -> np.ndarray:
    """MATLAB's ``start:step:stop`` (values built symmetrically from both ends, as MATLAB does)."""
    n = int(round((stop - start) / step))
    k = np.arange(n + 1, dtype=np.float64)
    end = start + n * step
    half = n // 2
    v = start + k * step
    v[half + 1 :] = end - (n - k[half + 1 :]) * step
    if n % 2 == 0:
        v[half] = start + half * step
    else:
        v[half + 1] = end - (n - half - 1) * step
    return v


@lru_cache(maxsize=1)
def _aggd_table() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shape grid, ``r(gamma)``, ``sqrt(G(1/a)/G(3/a))`` and ``G(2/a)/G(1/a)`` (all float64)."""
    gam = _matlab_colon(0.2, 0.001, 10.0)
    g = np.frompyfunc(math.gamma, 1, 1)
    g1 = g(1.0 / gam).astype(np.float64)
    g2 = g(2.0 / gam).astype(np.float64)
    g3 = g(3.0 / gam).astype(np.float64)
    r_gam = (g2 * g2) / (g1 * g3)
    if not np.all(np.diff(r_gam) > 0):  # the nearest-neighbour search below relies on this
        raise MetricError("NIQE: AGGD table is not strictly increasing (math.gamma inaccurate?)")
    scale = np.sqrt(g1 / g3)
    mean_ratio = g2 / g1
    for a in (gam, r_gam, scale, mean_ratio):
        a.setflags(write=False)
    return gam, r_gam, scale, mean_ratio


def _nearest_index(table: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Index of ``min((table - x).^2)`` for a strictly increasing table (first on ties; NaN -> 0)."""
    n = table.shape[0]
    hi = np.clip(np.searchsorted(table, x, side="left"), 1, n - 1)
    lo = hi - 1
    with np.errstate(invalid="ignore"):
        d_lo = (table[lo] - x) ** 2
        d_hi = (table[hi] - x) ** 2
        idx = np.where(d_hi < d_lo, hi, lo)
    return np.where(np.isnan(x), 0, idx)


def _moments(x: np.ndarray) -> np.ndarray:
    """Per-row sufficient statistics of an AGGD fit: ``(N, 5)`` = count<0, count>0, sum x^2 over
    x<0, sum x^2 over x>0, sum |x|, for ``x`` of shape ``(N, n)`` (float64, C-contiguous).

    Two elementwise passes (``sign``, ``|x|``), two sums and three batched dot products (BLAS):
    ``P - N = sum(sign)``, ``P + N = sign . sign``, ``sum x^2 = x . x``,
    ``sum_{x>0} x^2 - sum_{x<0} x^2 = |x| . x``. The counts are exact; the sums agree with direct
    summation to rounding.
    """
    n = x.shape[0]
    s = np.sign(x)
    a = np.abs(x)
    xr, sr, ar = x[:, None, :], s[:, None, :], a[:, None, :]
    pos_minus_neg = s.sum(axis=1)
    pos_plus_neg = (sr @ s[:, :, None]).reshape(n)
    ssq = (xr @ x[:, :, None]).reshape(n)
    ssq_diff = (ar @ x[:, :, None]).reshape(n)  # sum over x>0 minus sum over x<0 of x^2
    out = np.empty((n, 5), dtype=np.float64)
    out[:, 0] = (pos_plus_neg - pos_minus_neg) / 2
    out[:, 1] = (pos_plus_neg + pos_minus_neg) / 2
    out[:, 2] = np.maximum((ssq - ssq_diff) / 2, 0.0)
    out[:, 3] = np.maximum((ssq + ssq_diff) / 2, 0.0)
    out[:, 4] = a.sum(axis=1)
    del xr, sr, ar
    return out


def _aggd_from_moments(m: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(grid index of alpha, left std, right std)`` from :func:`_moments` rows (``n`` samples each)."""
    _, r_gam, _, _ = _aggd_table()
    with np.errstate(invalid="ignore", divide="ignore"):
        left_std = np.sqrt(m[:, 2] / m[:, 0])
        right_std = np.sqrt(m[:, 3] / m[:, 1])
        gammahat = left_std / right_std
        mean_abs = m[:, 4] / n
        rhat = mean_abs * mean_abs / ((m[:, 2] + m[:, 3]) / n)
        rhatnorm = (rhat * (gammahat**3 + 1) * (gammahat + 1)) / ((gammahat**2 + 1) ** 2)
    return _nearest_index(r_gam, rhatnorm), left_std, right_std


def aggd_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit asymmetric generalised Gaussians (MATLAB ``estimateaggdparam``) to each row of ``x``.

    Moment matching of Lasmar, Stitou, Berthoumieu (ICIP 2009): left/right standard
    deviations of the negative/positive samples, ``rhat = mean(|x|)^2 / mean(x^2)``
    normalised by ``gammahat = left/right``, shape ``alpha`` = grid value ``0.2:0.001:10``
    whose ``r(alpha) = G(2/a)^2 / (G(1/a) G(3/a))`` is nearest.

    Args:
        x: float64 ``(N, n)``: N independent samples of n values each (zeros count in the
            moments but in neither side).

    Returns:
        ``(alpha, beta_left, beta_right)``, each float64 ``(N,)``. A row with no negative or
        no positive value gives NaN betas and ``alpha = 0.2`` (MATLAB's ``min`` over NaN).
    """
    gam, _, scale, _ = _aggd_table()
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
    idx, left_std, right_std = _aggd_from_moments(_moments(x), x.shape[1])
    return gam[idx], left_std * scale[idx], right_std * scale[idx]


def _block_moments(blocks: np.ndarray) -> np.ndarray:
    """``(N, 5, 5)`` moments of the 5 AGGD fits (coefficients, 4 neighbour products) per block."""
    nb, bh, bw = blocks.shape
    out = np.empty((nb, 5, 5), dtype=np.float64)
    out[:, 0] = _moments(blocks.reshape(nb, -1))
    padded = np.pad(blocks, ((0, 0), (1, 1), (1, 1)), mode="wrap")
    prod = np.empty_like(blocks)
    for i, (dy, dx) in enumerate(_SHIFTS):
        # circshift(B, [dy dx])(r, c) = B(r - dy, c - dx), circular within the block
        np.multiply(blocks, padded[:, 1 - dy : 1 - dy + bh, 1 - dx : 1 - dx + bw], out=prod)
        out[:, 1 + i] = _moments(prod.reshape(nb, -1))
    return out


def _features_from_moments(m: np.ndarray, n: int) -> np.ndarray:
    """The 18 features per block from :func:`_block_moments` (``n`` values per block)."""
    gam, _, scale, mean_ratio = _aggd_table()
    nb = m.shape[0]
    feats = np.empty((nb, 18), dtype=np.float64)
    idx, left_std, right_std = _aggd_from_moments(m[:, 0], n)
    feats[:, 0] = gam[idx]
    feats[:, 1] = (left_std * scale[idx] + right_std * scale[idx]) / 2
    for i in range(4):
        idx, left_std, right_std = _aggd_from_moments(m[:, 1 + i], n)
        bl, br = left_std * scale[idx], right_std * scale[idx]
        feats[:, 2 + 4 * i] = gam[idx]
        feats[:, 3 + 4 * i] = (br - bl) * mean_ratio[idx]  # (beta_r - beta_l) G(2/a)/G(1/a)
        feats[:, 4 + 4 * i] = bl
        feats[:, 5 + 4 * i] = br
    return feats


def block_features(blocks: np.ndarray) -> np.ndarray:
    """The 18 NIQE features of each MSCN block (MATLAB ``computefeature``).

    Args:
        blocks: float64 ``(N, bh, bw)`` MSCN coefficients.

    Returns:
        float64 ``(N, 18)``: ``alpha, (beta_l + beta_r)/2`` of the coefficients, then for each
        neighbour product (shifts ``[0 1], [1 0], [1 1], [-1 1]``, circular within the block)
        ``alpha, (beta_r - beta_l) G(2/alpha)/G(1/alpha), beta_l, beta_r``.
    """
    blocks = np.ascontiguousarray(blocks, dtype=np.float64)
    return _features_from_moments(_block_moments(blocks), blocks.shape[1] * blocks.shape[2])


def _image_features(mscn: np.ndarray, bs: int, workers: int) -> np.ndarray:
    """Block features of an MSCN image, one band of blocks at a time (in cache; threads)."""
    h, w = mscn.shape
    nbh, nbw = h // bs, w // bs

    def band(r: int) -> np.ndarray:  # blocks of row r, as (nbw, bs, bs)
        b = np.ascontiguousarray(mscn[r * bs : (r + 1) * bs].reshape(bs, nbw, bs).transpose(1, 0, 2))
        return _block_moments(b)

    if workers > 1 and nbh > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(band, range(nbh)))
    else:
        parts = [band(r) for r in range(nbh)]
    # column-major block order (MATLAB blkproc + reshape): index = c * nbh + r
    moments = np.stack(parts, axis=1).reshape(nbw * nbh, 5, 5)
    return _features_from_moments(moments, bs * bs)


def _default_workers() -> int:
    """One worker below 4 CPUs: on 2 cores the block statistics ran slower on 2 threads
    (0.064 s/MP) than on 1 (0.046 s/MP), numpy and OpenCV already using both cores."""
    n = os.cpu_count() or 1
    return 1 if n < 4 else min(4, n // 2)


def _mscn(im: np.ndarray, kernel_1d: np.ndarray) -> np.ndarray:
    """MSCN coefficients ``(im - mu) / (sigma + 1)`` with 'replicate' borders; flat windows -> 0."""
    mu = cv2.sepFilter2D(im, cv2.CV_64F, kernel_1d, kernel_1d, borderType=cv2.BORDER_REPLICATE)
    sq = np.multiply(im, im)
    sigma = cv2.sepFilter2D(sq, cv2.CV_64F, kernel_1d, kernel_1d, borderType=cv2.BORDER_REPLICATE)
    np.multiply(mu, mu, out=sq)
    np.subtract(sigma, sq, out=sigma)
    np.abs(sigma, out=sigma)
    np.sqrt(sigma, out=sigma)
    # A window with range <= FLAT_TOL has sigma < 1e-4 even with rounding noise, so the exact
    # range test only runs where sigma is small.
    candidates = np.flatnonzero(sigma < 1e-3)
    sigma += 1.0
    out = np.subtract(im, mu, out=mu)
    out /= sigma
    if candidates.size:
        out.reshape(-1)[candidates[_window_range(im, candidates) <= FLAT_TOL]] = 0.0
    return out


def _window_range(im: np.ndarray, flat_index: np.ndarray) -> np.ndarray:
    """max - min of the 7x7 window ('replicate' borders) around the given pixels."""
    h, w = im.shape
    if flat_index.size > im.size // 16:  # many: morphological filters over the whole image
        box = np.ones((7, 7), np.uint8)
        rng = cv2.dilate(im, box, borderType=cv2.BORDER_REPLICATE) - cv2.erode(im, box, borderType=cv2.BORDER_REPLICATE)
        return rng.reshape(-1)[flat_index]
    ys, xs = np.divmod(flat_index, w)
    lo = np.full(flat_index.shape, np.inf)
    hi = np.full(flat_index.shape, -np.inf)
    for dy in range(-3, 4):
        rows = np.clip(ys + dy, 0, h - 1) * w
        for dx in range(-3, 4):
            v = im.reshape(-1)[rows + np.clip(xs + dx, 0, w - 1)]
            np.minimum(lo, v, out=lo)
            np.maximum(hi, v, out=hi)
    return hi - lo


def niqe_features(
    gray: np.ndarray, model: NiqeModel | None = None, block_size: int = BLOCK_SIZE, workers: int | None = None
) -> np.ndarray:
    """The ``(nblocks, 36)`` NIQE block features of a gray image (both scales side by side).

    Args:
        gray: ``(H, W)`` float array, values on the ``0..255`` scale (not rounded here).
        model: pristine model (for the window); default the embedded one.
        block_size: block size at the first scale (even).
        workers: threads for the block statistics (default: 1 below 4 CPUs, else up to 4).

    Returns:
        float64 ``(nblocks, 36)``, blocks in column-major order as MATLAB's ``blkproc``.

    Raises:
        MetricError: the image has fewer than ``block_size`` rows or columns.
    """
    model = model or load_pristine_model()
    im = np.asarray(gray, dtype=np.float64)
    if im.ndim != 2:
        raise MetricError(f"NIQE: expected a gray (H, W) image, got shape {im.shape}")
    h, w = im.shape
    nbh, nbw = h // block_size, w // block_size
    if nbh == 0 or nbw == 0:
        raise MetricError(f"image too small for NIQE: {w}x{h} pixels, needs at least {block_size}x{block_size}")
    im = np.ascontiguousarray(im[: nbh * block_size, : nbw * block_size])
    workers = _default_workers() if workers is None else max(1, int(workers))
    feats = []
    for scale in (1, 2):
        mscn = _mscn(im, model.kernel_1d)
        feats.append(_image_features(mscn, block_size // scale, workers))
        if scale == 1:
            im = imresize(im, 0.5)
    return np.concatenate(feats, axis=1)


def _mvg_distance(feats: np.ndarray, model: NiqeModel) -> float:
    complete = feats[~np.isnan(feats).any(axis=1)]
    if complete.shape[0] == 0:
        raise MetricError("NIQE undefined: no block with natural-image statistics to fit (the image is flat, or a perfectly regular pattern)")
    with np.errstate(invalid="ignore"):
        mu = np.nanmean(feats, axis=0)  # MATLAB nanmean: per column
    if complete.shape[0] >= 2:
        cov = np.cov(complete, rowvar=False)  # MATLAB nancov: complete rows, N - 1
    else:
        cov = np.zeros((36, 36))
    mat = (model.cov + cov) / 2
    inv = np.linalg.pinv(mat, rcond=max(mat.shape) * np.finfo(np.float64).eps)  # MATLAB pinv tolerance
    d = model.mu - mu
    q = float(d @ inv @ d)
    if not math.isfinite(q):
        raise MetricError("NIQE undefined for this image (non-finite features)")
    return math.sqrt(max(q, 0.0))


def niqe_gray(
    gray: np.ndarray, model: NiqeModel | None = None, block_size: int = BLOCK_SIZE, workers: int | None = None
) -> float:
    """NIQE of a gray float image on the ``0..255`` scale, without rounding (MATLAB ``computequality``).

    Args:
        gray: ``(H, W)`` float array (MATLAB passes ``double(uint8 image)``).
        model: pristine model; default the embedded one.
        block_size: 96 as in the MATLAB release.
        workers: threads for the block statistics (default: 1 below 4 CPUs, else up to 4).

    Returns:
        The NIQE score (float, lower is better).

    Raises:
        MetricError: image smaller than one block, or no block whose statistics can be fitted
            (a flat image, or a perfectly regular pattern such as a 1-pixel checkerboard).
    """
    model = model or load_pristine_model()
    return _mvg_distance(niqe_features(gray, model, block_size, workers), model)


def niqe_reference(gray: np.ndarray, model: NiqeModel | None = None, block_size: int = BLOCK_SIZE) -> float:
    """A direct transcription of the MATLAB loops, one block and one fit at a time (slow).

    Same result as :func:`niqe_gray` (to rounding); kept as the straightforward reference
    for the tests and ``benchmarks/bench_metrics.py``: 2-D ``imfilter`` with the 7x7 window,
    ``circshift`` per block, and the full ``min((r_gam - rhatnorm).^2)`` search per fit.

    Raises:
        MetricError: as :func:`niqe_gray`.
    """
    model = model or load_pristine_model()
    gam, r_gam, _, _ = _aggd_table()

    def aggd(vec: np.ndarray) -> tuple[float, float, float]:
        with np.errstate(invalid="ignore", divide="ignore"):
            left = math.sqrt(np.mean(vec[vec < 0] ** 2)) if np.any(vec < 0) else math.nan
            right = math.sqrt(np.mean(vec[vec > 0] ** 2)) if np.any(vec > 0) else math.nan
            ghat = left / right
            mean_sq = np.mean(vec**2)
            rhat = np.mean(np.abs(vec)) ** 2 / mean_sq if mean_sq > 0 else math.nan
            rnorm = (rhat * (ghat**3 + 1) * (ghat + 1)) / ((ghat**2 + 1) ** 2)
        pos = 0 if math.isnan(rnorm) else int(np.argmin((r_gam - rnorm) ** 2))
        a = gam[pos]
        c = math.sqrt(math.gamma(1 / a) / math.gamma(3 / a))
        return a, left * c, right * c

    def features(block: np.ndarray) -> list[float]:
        a, bl, br = aggd(block.ravel())
        feat = [a, (bl + br) / 2]
        for shift in _SHIFTS:
            pair = block * np.roll(block, shift, axis=(0, 1))
            a, bl, br = aggd(pair.ravel())
            feat += [a, (br - bl) * (math.gamma(2 / a) / math.gamma(1 / a)), bl, br]
        return feat

    im = np.asarray(gray, dtype=np.float64)
    h, w = im.shape
    nbh, nbw = h // block_size, w // block_size
    if nbh == 0 or nbw == 0:
        raise MetricError(f"image too small for NIQE: {w}x{h} pixels, needs at least {block_size}x{block_size}")
    im = im[: nbh * block_size, : nbw * block_size]
    per_scale = []
    for scale in (1, 2):
        mu = cv2.filter2D(im, cv2.CV_64F, model.window, borderType=cv2.BORDER_REPLICATE)
        sigma = np.sqrt(np.abs(cv2.filter2D(im * im, cv2.CV_64F, model.window, borderType=cv2.BORDER_REPLICATE) - mu * mu))
        mscn = (im - mu) / (sigma + 1)
        win = np.lib.stride_tricks.sliding_window_view(np.pad(im, 3, mode="edge"), (7, 7))
        mscn[win.max(axis=(2, 3)) - win.min(axis=(2, 3)) <= FLAT_TOL] = 0.0
        bs = block_size // scale
        rows = []
        for c in range(nbw):
            for r in range(nbh):
                rows.append(features(mscn[r * bs : (r + 1) * bs, c * bs : (c + 1) * bs]))
        per_scale.append(np.array(rows))
        if scale == 1:
            im = imresize(im, 0.5)
    return _mvg_distance(np.concatenate(per_scale, axis=1), model)


def prepare_niqe_input(img: np.ndarray, crop_border: int = 0, convert: str = "y") -> np.ndarray:
    """Turn an RGB/gray image into the float64 gray array that MATLAB's NIQE would see.

    Args:
        img: ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA (alpha ignored),
            ``uint8`` or float on the ``[0, 255]`` scale. Float input is first rounded to the
            integer levels (half away from zero) and clipped to ``[0, 255]``, i.e. treated as
            the uint8 image MATLAB reads.
        crop_border: pixels removed on each side (after conversion, as BasicSR).
        convert: ``"y"`` (MATLAB ``rgb2ycbcr`` Y, uint8) or ``"gray"`` (MATLAB ``rgb2gray``, uint8);
            gray input is used as is.

    Returns:
        float64 ``(H', W')`` with integer values.

    Raises:
        MetricError: bad shape, unknown ``convert``, negative ``crop_border`` or nothing left after cropping.
    """
    if convert not in ("y", "gray"):
        raise MetricError(f"NIQE: convert must be 'y' or 'gray', got {convert!r}")
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[2] in (1, 3, 4):
        a = a[:, :, 0] if a.shape[2] == 1 else a[:, :, :3]
    elif a.ndim != 2:
        raise MetricError(f"NIQE: expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {a.shape}")
    if a.dtype != np.uint8:
        a = np.clip(matlab_round(a.astype(np.float64)), 0, 255).astype(np.uint8)
    if a.ndim == 3:
        a = rgb2ycbcr(a, y_only=True) if convert == "y" else rgb2gray(a)
    if crop_border < 0:
        raise MetricError(f"NIQE: crop_border must be >= 0, got {crop_border}")
    if crop_border:
        a = a[crop_border:-crop_border, crop_border:-crop_border]
    if a.size == 0:
        raise MetricError(f"NIQE: nothing left after cropping {crop_border} pixels from each side")
    return a.astype(np.float64)


def niqe(
    img: np.ndarray, crop_border: int = 0, convert: str = "y", model: NiqeModel | None = None, workers: int | None = None
) -> float:
    """NIQE of an image as the MATLAB release computes it (BasicSR's ``calculate_niqe`` arguments).

    Args:
        img: ``(H, W[, C])`` RGB/RGBA/gray image on the ``[0, 255]`` scale, ``uint8`` or float
            (rounded to integer levels first). Channel order RGB (BasicSR assumes BGR).
        crop_border: pixels removed on each side before the computation.
        convert: ``"y"`` or ``"gray"``, see :func:`prepare_niqe_input`.
        model: pristine model; default the embedded MATLAB one.
        workers: threads for the block statistics (default: 1 below 4 CPUs, else up to 4).

    Returns:
        The score (lower is better). Reproduces the LIVE MATLAB release to 1e-13 on
        ``niqe_I04.bmp`` and BasicSR's quoted MATLAB value for ``baboon.png`` to 5e-7.

    Raises:
        MetricError: image smaller than 96x96 after cropping, a flat image, bad arguments.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> round(niqe(rng.integers(0, 256, (192, 192, 3), dtype=np.uint8)), 1) > 0
        True
    """
    return niqe_gray(prepare_niqe_input(img, crop_border, convert), model, workers=workers)
