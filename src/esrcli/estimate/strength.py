"""The recommended ``--denoise`` strength for an image, from its estimated degradation.

The strength is the network-interpolation weight of a model against its weak-denoise partner, as in
Real-ESRGAN's ``realesr-general-x4v3`` (``dni_weight = [s, 1 - s]`` over the normal and the
weak-denoise model): 1 restores with the model's full denoising, 0 with the weak-denoise partner.
"""

from __future__ import annotations


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
