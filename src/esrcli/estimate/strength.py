"""The recommended ``--denoise`` strength for an image, from its estimated degradation.

The strength is the network-interpolation weight of a model against its weak-denoise partner, as in
Real-ESRGAN's ``realesr-general-x4v3`` (``dni_weight = [s, 1 - s]`` over the normal and the
weak-denoise model): 1 restores with the model's full denoising, 0 with the weak-denoise partner.
"""

from __future__ import annotations

import numpy as np


def recommend_denoise(noise_sigma: float, jpeg_quality: int | None, blur_sigma: float) -> float:
    """The denoise strength in [0, 1] for an image with the given estimated degradation.

    Args:
        noise_sigma: standard deviation of the additive noise, in 8-bit levels (mean over channels).
        jpeg_quality: IJG quality 1-100 of the last JPEG compression, or ``None`` for none.
        blur_sigma: Gaussian blur sigma in pixels at the image's own scale.

    Returns:
        A float in [0, 1]; 1 for strong noise or compression, lower for clean inputs.
    """
    # Placeholder mapping (to be calibrated against the weak-denoise partner): noise dominates.
    s_noise = min(1.0, max(0.0, noise_sigma / 10.0))
    s_jpeg = 0.0 if jpeg_quality is None else min(1.0, max(0.0, (90 - jpeg_quality) / 50.0))
    del blur_sigma
    return float(max(s_noise, s_jpeg))


def check_estimator():
    """``esrcli.estimate.estimate``, the function that ``--denoise auto`` needs.

    Raises:
        EsrError: this build has no estimator (one line, with a hint).
    """
    import esrcli.estimate as est
    from esrcli.errors import EsrError

    fn = getattr(est, "estimate", None)
    if fn is None:
        raise EsrError("--denoise auto needs the degradation estimator (esrcli.estimate.estimate), which this build lacks",
                       "pass a fixed strength, e.g. --denoise 0.5")
    return fn


def auto_denoise(color: np.ndarray) -> float:
    """The ``--denoise auto`` strength of one image: :func:`esrcli.estimate.estimate`'s ``denoise``.

    The per-image callback that ``esr upscale --denoise auto`` and ``esrcli.Upscaler(denoise="auto")``
    hand to the batch engine (:class:`esrcli.infer.batch.BatchOptions`'s ``denoise``).

    Args:
        color: float32 ``(H, W, 3)`` RGB or ``(H, W, 1)`` / ``(H, W)`` gray, values in ``[0, 1]``.

    Returns:
        The recommended strength in ``[0, 1]``; ``1.0`` (the model's full denoising) for an image
        smaller than the estimator's minimum side (64 px), which cannot be estimated.

    Raises:
        EsrError: the estimator is not available in this build (``esrcli.estimate.estimate``
            missing), or its weights are broken.
    """
    import esrcli.estimate as est

    fn = check_estimator()
    a = color[:, :, 0] if color.ndim == 3 and color.shape[2] == 1 else color
    if min(a.shape[:2]) < int(getattr(est, "MIN_SIDE", 64)):
        return 1.0
    return float(fn(np.ascontiguousarray(a, dtype=np.float32)).denoise)
