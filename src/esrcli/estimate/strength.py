"""The recommended ``--denoise`` strength for an image, from its estimated degradation.

The strength is the network-interpolation weight of a model against its weak-denoise partner, as in
Real-ESRGAN's ``realesr-general-x4v3`` (``dni_weight = [s, 1 - s]`` over the normal and the
weak-denoise model): 1 restores with the model's full denoising, 0 with the weak-denoise partner.
"""

from __future__ import annotations

import numpy as np


# Calibrated with benchmarks/bench_denoise_auto.py --extra --grid 0.1 and
# benchmarks/fit_denoise_strength.py on Set5 + Set14 (docs/denoise.md): for esr-general-x4-net
# and its weak-denoise partner, full denoising only pays (PSNR_Y) for heavy noise or compression.
NOISE_START = 20.0  # noise sigma (8-bit levels) up to which the partner alone (S = 0) is best
NOISE_FULL = 46.0  # sigma at which S reaches 1
JPEG_START = 25.0  # JPEG quality above which compression adds nothing to S
JPEG_FULL = 15.0  # quality at which compression alone gives S = 1


def recommend_denoise(noise_sigma: float, jpeg_quality: int | None, blur_sigma: float) -> float:
    """The denoise strength in [0, 1] for an image with the given estimated degradation.

    ``S = clip(clip((sigma - 20) / 26, 0, 1) + clip((25 - q) / 10, 0, 1), 0, 1)``: zero for clean,
    noisy (sigma <= 20) or moderately compressed (quality >= 25) images, rising to 1 at sigma
    46 or quality 15; noise and compression add up. Fitted on Set5 + Set14 with known
    degradations (bicubic x4 reduction, Gaussian colour noise 0-40, JPEG 10-90): on the issue's
    mix (sigma 0-20, quality 30-90) PSNR_Y is highest with the weak-denoise partner alone, and
    the normal model's denoising wins only beyond it (docs/denoise.md has the figures).

    Args:
        noise_sigma: standard deviation of the additive noise, in 8-bit levels (mean over channels).
        jpeg_quality: IJG quality 1-100 of the last JPEG compression, or ``None`` for none.
        blur_sigma: Gaussian blur sigma in pixels at the image's own scale. Not used: the
            calibration did not vary blur (both models of a pair deblur alike).

    Returns:
        A float in [0, 1]; 1 for strong noise or compression, 0 for clean inputs.
    """
    del blur_sigma
    s_noise = min(1.0, max(0.0, (float(noise_sigma) - NOISE_START) / (NOISE_FULL - NOISE_START)))
    s_jpeg = 0.0 if jpeg_quality is None else min(1.0, max(0.0, (JPEG_START - float(jpeg_quality)) / (JPEG_START - JPEG_FULL)))
    return float(min(1.0, s_noise + s_jpeg))


def auto_denoise(color: np.ndarray) -> float:
    """The ``--denoise auto`` strength of one image: :func:`esrcli.estimate.estimate`'s ``denoise``.

    The per-image callback that ``esr upscale --denoise auto`` and ``esrcli.Upscaler(denoise="auto")``
    hand to the batch engine (:class:`esrcli.infer.batch.BatchOptions`'s ``denoise``).

    Args:
        color: float32 ``(H, W, 3)`` RGB or ``(H, W, 1)`` / ``(H, W)`` gray, values in ``[0, 1]``.

    Returns:
        The recommended strength in ``[0, 1]``; for an image smaller than the estimator's minimum
        side (64 px), which cannot be estimated, the strength of a clean image
        (``recommend_denoise(0, None, 0)``, 0 as calibrated).

    Raises:
        EsrError: the estimator's weights are broken.
    """
    from esrcli.estimate import estimate
    from esrcli.estimate.core import MIN_SIDE

    a = color[:, :, 0] if color.ndim == 3 and color.shape[2] == 1 else color
    if min(a.shape[:2]) < MIN_SIDE:
        return recommend_denoise(0.0, None, 0.0)
    return float(estimate(np.ascontiguousarray(a, dtype=np.float32)).denoise)
