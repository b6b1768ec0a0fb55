"""Image quality metrics with the conventions SR papers use.

* :func:`psnr`, :func:`ssim` (BasicSR ``calculate_psnr``/``calculate_ssim``, MATLAB ``ssim_index``),
  on numpy ``(H, W[, C])`` images on ``[0, 255]``; :func:`psnr_pt`, :func:`ssim_pt` on
  ``(B, C, H, W)`` tensors in ``[0, 1]``.
* :func:`niqe` (no-reference; the MATLAB release of Mittal et al. 2013, reproduced to 1e-6 or better).
* :func:`read_uint8`: an image file as the metrics see it (8-bit levels, alpha ignored).
"""

from esrcli.metrics.image import read_uint8, to_uint8
from esrcli.metrics.niqe import niqe, niqe_gray
from esrcli.metrics.psnr_ssim import psnr, psnr_pt, ssim, ssim_pt, y_channel

__all__ = ["psnr", "ssim", "psnr_pt", "ssim_pt", "y_channel", "niqe", "niqe_gray", "read_uint8", "to_uint8"]
