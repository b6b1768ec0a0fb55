"""Blur kernels, 2-D filtering and unsharp masking (Real-ESRGAN / BasicSR conventions).

Kernels follow BasicSR's ``basicsr/data/degradations.py`` (used by Real-ESRGAN, Wang et al.
ICCVW 2021, Sec. 3): bivariate (an)isotropic Gaussian, generalized Gaussian and plateau
kernels on a centred integer grid, and the circular low-pass ("sinc") kernel built from
the first-order Bessel function J1 that synthesises ringing and overshoot artifacts.
Coordinates: ``x`` runs along columns (to the right), ``y`` along rows (downwards); a
rotation ``theta`` turns the ``sigma_x`` axis from +x towards +y.

All kernels are computed in float64 and normalised to sum to 1 before the cast to the
requested dtype. Scalar parameters give one ``(k, k)`` kernel; 1-D tensors of parameters
``(B,)`` give a batch ``(B, k, k)``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "gaussian_kernel1d",
    "mesh_grid",
    "bivariate_gaussian",
    "bivariate_generalized_gaussian",
    "bivariate_plateau",
    "circular_lowpass_kernel",
    "pad_kernel",
    "filter2d",
    "filter_separable",
    "gaussian_blur",
    "usm_sharpen",
]

Scalar = float | torch.Tensor

# OpenCV's fixed small Gaussian kernels used when sigma <= 0 (imgproc/src/smooth.dispatch.cpp).
_CV_SMALL_GAUSSIAN = {
    1: (1.0,),
    3: (0.25, 0.5, 0.25),
    5: (0.0625, 0.25, 0.375, 0.25, 0.0625),
    7: (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125),
}


def _check_ksize(ksize: int) -> None:
    if not isinstance(ksize, int) or ksize < 1 or ksize % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd integer, got {ksize!r}")


def gaussian_kernel1d(ksize: int, sigma: float = 0.0, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A normalised 1-D Gaussian kernel with OpenCV's ``getGaussianKernel`` semantics.

    Args:
        ksize: odd kernel length.
        sigma: standard deviation in pixels; ``<= 0`` derives it from ``ksize`` as OpenCV does,
            ``0.3 * ((ksize - 1) * 0.5 - 1) + 0.8`` (e.g. 8.0 for ``ksize = 51``), with OpenCV's
            fixed binomial kernels for ``ksize <= 7``.
        device: device of the result.
        dtype: dtype of the result.

    Returns:
        ``(ksize,)`` tensor summing to 1.

    Raises:
        ValueError: ``ksize`` is not a positive odd integer.
    """
    _check_ksize(ksize)
    if sigma <= 0 and ksize in _CV_SMALL_GAUSSIAN:
        return torch.tensor(_CV_SMALL_GAUSSIAN[ksize], dtype=torch.float64).to(device=device, dtype=dtype)
    if sigma <= 0:
        sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
    x = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    k = torch.exp(-(x * x) / (2 * sigma * sigma))
    return (k / k.sum()).to(device=device, dtype=dtype)


def mesh_grid(ksize: int, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Centred integer coordinates ``(xx, yy)`` of a ``ksize x ksize`` kernel, each ``(k, k)``.

    ``xx`` varies along columns, ``yy`` along rows, both from ``-(k//2)`` to ``k//2``.

    Raises:
        ValueError: ``ksize`` is not a positive odd integer.
    """
    _check_ksize(ksize)
    ax = torch.arange(ksize, dtype=dtype, device=device) - ksize // 2
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    return xx, yy


def _as_param(v: Scalar, device: torch.device | str | None) -> torch.Tensor:
    t = torch.as_tensor(v, dtype=torch.float64, device=device)
    return t.reshape(-1, 1, 1) if t.dim() else t


def _quadratic_form(ksize: int, sigma_x: Scalar, sigma_y: Scalar, theta: Scalar, device) -> tuple[torch.Tensor, bool]:
    """``p^T Sigma^-1 p`` on the grid, Sigma = R diag(sx^2, sy^2) R^T, R rotation by theta."""
    batched = any(isinstance(v, torch.Tensor) and v.dim() > 0 for v in (sigma_x, sigma_y, theta))
    sx, sy, th = (_as_param(v, device) for v in (sigma_x, sigma_y, theta))
    if bool((sx <= 0).any()) or bool((sy <= 0).any()):
        raise ValueError("sigma_x and sigma_y must be > 0")
    xx, yy = mesh_grid(ksize, device=device)
    c, s = torch.cos(th), torch.sin(th)
    u = c * xx + s * yy  # coordinate along the sigma_x axis
    v = -s * xx + c * yy  # coordinate along the sigma_y axis
    return (u * u) / (sx * sx) + (v * v) / (sy * sy), batched


def _finish(k: torch.Tensor, device, dtype: torch.dtype) -> torch.Tensor:
    k = k / k.sum(dim=(-2, -1), keepdim=True)
    return k.to(device=device, dtype=dtype)


def bivariate_gaussian(
    ksize: int,
    sigma_x: Scalar,
    sigma_y: Scalar,
    theta: Scalar = 0.0,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Anisotropic (or, with ``sigma_y == sigma_x``, isotropic) Gaussian blur kernel.

    ``k(p) ∝ exp(-0.5 * p^T Sigma^-1 p)`` (Real-ESRGAN Eq. 2).

    Args:
        ksize: odd kernel size.
        sigma_x: standard deviation along the (rotated) x axis, pixels; float or ``(B,)``.
        sigma_y: standard deviation along the (rotated) y axis, pixels; float or ``(B,)``.
        theta: rotation angle in radians; float or ``(B,)``.
        device: device of the result.
        dtype: dtype of the result.

    Returns:
        ``(k, k)`` or ``(B, k, k)`` kernel(s), each summing to 1.

    Raises:
        ValueError: even/non-positive ``ksize`` or a sigma ``<= 0``.
    """
    q, _ = _quadratic_form(ksize, sigma_x, sigma_y, theta, device)
    return _finish(torch.exp(-0.5 * q), device, dtype)


def bivariate_generalized_gaussian(
    ksize: int,
    sigma_x: Scalar,
    sigma_y: Scalar,
    theta: Scalar,
    beta: Scalar,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Generalized Gaussian kernel ``k(p) ∝ exp(-0.5 * (p^T Sigma^-1 p)^beta)`` (Real-ESRGAN Sec. 3.1).

    ``beta < 1`` gives heavier tails, ``beta > 1`` a flatter top; ``beta = 1`` is the Gaussian.
    Arguments as :func:`bivariate_gaussian`, plus ``beta > 0`` (float or ``(B,)``).

    Raises:
        ValueError: even/non-positive ``ksize``, a sigma ``<= 0`` or ``beta <= 0``.
    """
    q, _ = _quadratic_form(ksize, sigma_x, sigma_y, theta, device)
    b = _as_param(beta, device)
    if bool((b <= 0).any()):
        raise ValueError("beta must be > 0")
    return _finish(torch.exp(-0.5 * torch.pow(q, b)), device, dtype)


def bivariate_plateau(
    ksize: int,
    sigma_x: Scalar,
    sigma_y: Scalar,
    theta: Scalar,
    beta: Scalar,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Plateau-shaped kernel ``k(p) ∝ 1 / (1 + (p^T Sigma^-1 p)^beta)`` (Real-ESRGAN Sec. 3.1).

    Arguments as :func:`bivariate_generalized_gaussian`.

    Raises:
        ValueError: even/non-positive ``ksize``, a sigma ``<= 0`` or ``beta <= 0``.
    """
    q, _ = _quadratic_form(ksize, sigma_x, sigma_y, theta, device)
    b = _as_param(beta, device)
    if bool((b <= 0).any()):
        raise ValueError("beta must be > 0")
    return _finish(torch.reciprocal(torch.pow(q, b) + 1), device, dtype)


def circular_lowpass_kernel(
    cutoff: Scalar,
    ksize: int,
    pad_to: int = 0,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """2-D sinc (ideal circular low-pass) kernel: ``k(r) ∝ omega_c * J1(omega_c r) / (2 pi r)``.

    The centre takes the limit ``omega_c^2 / (4 pi)``. Real-ESRGAN (Sec. 3.4, Eq. 4) uses it to
    synthesise ringing and overshoot.

    Args:
        cutoff: cutoff frequency omega_c in radians per pixel, in ``(0, pi]``; float or ``(B,)``.
        ksize: odd kernel size.
        pad_to: zero-pad the kernel to this (odd, larger) size; 0 for no padding.
        device: device of the result.
        dtype: dtype of the result.

    Returns:
        ``(k, k)`` or ``(B, k, k)`` kernel(s), each summing to 1.

    Raises:
        ValueError: even/non-positive ``ksize`` or a cutoff outside ``(0, pi]``.
    """
    xx, yy = mesh_grid(ksize, device=device)
    w = _as_param(cutoff, device)
    if bool((w <= 0).any()) or bool((w > math.pi + 1e-9).any()):
        raise ValueError("cutoff must be in (0, pi]")
    r = torch.sqrt(xx * xx + yy * yy)
    safe_r = torch.where(r > 0, r, torch.ones_like(r))
    k = w * torch.special.bessel_j1(w * safe_r) / (2 * math.pi * safe_r)
    k = torch.where(r > 0, k, (w * w / (4 * math.pi)).expand_as(k))
    k = _finish(k, device, dtype)
    return pad_kernel(k, pad_to) if pad_to > ksize else k


def pad_kernel(kernel: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad a square odd kernel ``(..., k, k)`` symmetrically to ``(..., size, size)``.

    Raises:
        ValueError: ``size`` smaller than the kernel or of different parity.
    """
    k = kernel.shape[-1]
    if size < k or (size - k) % 2:
        raise ValueError(f"cannot pad a {k}x{k} kernel to {size}x{size}")
    p = (size - k) // 2
    return F.pad(kernel, (p, p, p, p)) if p else kernel


def _pad(img: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """Reflect padding (``dcb|abcd|cba``, OpenCV's BORDER_REFLECT_101); replicate when the image
    is too small to reflect."""
    if ph == 0 and pw == 0:
        return img
    h, w = img.shape[-2:]
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(img, (pw, pw, ph, ph), mode=mode)


def _check_image(img: torch.Tensor) -> None:
    if not isinstance(img, torch.Tensor) or img.dim() != 4:
        shape = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
        raise ValueError(f"expected an image batch (B, C, H, W), got {shape}")


def filter2d(img: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlate each channel with a 2-D kernel, reflect padding, same output size.

    Matches BasicSR's ``filter2D`` and OpenCV's ``filter2D`` with ``BORDER_REFLECT_101``
    (replicate border when the image is smaller than the kernel radius). All Real-ESRGAN
    kernels are point-symmetric, so correlation equals convolution. On CPU without autograd
    the work runs in OpenCV's ``filter2D`` (direct or DFT-based by kernel size), several times
    faster than a grouped ``conv2d``; on CUDA or with autograd, one grouped ``conv2d``.

    Args:
        img: ``(B, C, H, W)`` float tensor.
        kernel: ``(k, k)`` shared by all samples, or ``(B, k, k)`` one kernel per sample; ``k`` odd.

    Returns:
        ``(B, C, H, W)`` tensor, same dtype and device as ``img``.

    Raises:
        ValueError: wrong shapes, an even kernel size or a batch size mismatch.
    """
    _check_image(img)
    if kernel.dim() not in (2, 3) or kernel.shape[-1] != kernel.shape[-2] or kernel.shape[-1] % 2 == 0:
        raise ValueError(f"expected an odd square kernel (k, k) or (B, k, k), got {tuple(kernel.shape)}")
    b, c, h, w = img.shape
    k = kernel.shape[-1]
    if kernel.dim() == 3 and kernel.shape[0] != b:
        raise ValueError(f"got {kernel.shape[0]} kernels for a batch of {b}")
    if _use_opencv(img):
        kn = kernel.detach().to(device="cpu", dtype=torch.float32).numpy()
        border = cv2.BORDER_REFLECT_101 if k // 2 < min(h, w) else cv2.BORDER_REPLICATE
        src = img.detach().contiguous()
        out = torch.empty_like(src)
        s, d = src.view(b, c, h, w).numpy(), out.numpy()
        for i in range(b):
            ki = kn if kernel.dim() == 2 else kn[i]
            for j in range(c):
                cv2.filter2D(s[i, j], cv2.CV_32F, ki, dst=d[i, j], borderType=border)
        return out
    kernel = kernel.to(device=img.device, dtype=img.dtype)
    x = _pad(img, k // 2, k // 2)
    if kernel.dim() == 2:
        weight = kernel.expand(c, 1, k, k).contiguous()
        return F.conv2d(x, weight, groups=c)
    weight = kernel.repeat_interleave(c, dim=0).unsqueeze(1)
    out = F.conv2d(x.reshape(1, b * c, *x.shape[-2:]), weight, groups=b * c)
    return out.view(b, c, h, w)


def _use_opencv(img: torch.Tensor) -> bool:
    """OpenCV's filters are several times faster than ``conv2d`` on CPU; used when no gradient is needed."""
    return img.device.type == "cpu" and img.dtype == torch.float32 and not (img.requires_grad and torch.is_grad_enabled())


def filter_separable(img: torch.Tensor, kernel_x: torch.Tensor, kernel_y: torch.Tensor) -> torch.Tensor:
    """Correlate each channel with the separable kernel ``outer(kernel_y, kernel_x)``, reflect border.

    Equals :func:`filter2d` with that 2-D kernel at ``2k`` instead of ``k^2`` operations per pixel
    (an isotropic Gaussian is separable). On CPU without autograd OpenCV's ``sepFilter2D``;
    elsewhere two 1-D ``conv2d`` passes.

    Args:
        img: ``(B, C, H, W)`` float tensor.
        kernel_x: ``(k,)`` kernel along rows (x, columns), ``k`` odd, shared by all samples,
            or ``(B, k)``, one per sample.
        kernel_y: kernel along columns (y, rows), the shape of ``kernel_x``.

    Returns:
        ``(B, C, H, W)`` tensor, same dtype and device.

    Raises:
        ValueError: not a 4-D tensor, kernels that are not odd and of one shape, or a batch
            size mismatch.
    """
    _check_image(img)
    if kernel_x.dim() not in (1, 2) or kernel_x.shape != kernel_y.shape or kernel_x.shape[-1] % 2 == 0:
        raise ValueError(f"expected two odd 1-D kernels (k,) or (B, k) of one shape, got {tuple(kernel_x.shape)} and {tuple(kernel_y.shape)}")
    ksize = kernel_x.shape[-1]
    b, c, h, w = img.shape
    if kernel_x.dim() == 2 and kernel_x.shape[0] != b:
        raise ValueError(f"got {kernel_x.shape[0]} kernels for a batch of {b}")
    if kernel_x.dim() == 2 and b == 1:  # one sample's kernels are a shared pair
        kernel_x, kernel_y = kernel_x[0], kernel_y[0]
    if _use_opencv(img):
        kx = kernel_x.detach().to(device="cpu", dtype=torch.float32).numpy()
        ky = kernel_y.detach().to(device="cpu", dtype=torch.float32).numpy()
        border = cv2.BORDER_REFLECT_101 if ksize // 2 < min(h, w) else cv2.BORDER_REPLICATE
        src = img.detach().contiguous()
        out = torch.empty_like(src)
        s, d = src.view(b * c, h, w).numpy(), out.view(b * c, h, w).numpy()
        for i in range(b * c):
            j = i // c
            cv2.sepFilter2D(s[i], cv2.CV_32F, kx if kx.ndim == 1 else kx[j], ky if ky.ndim == 1 else ky[j], dst=d[i], borderType=border)
        return out
    kx = kernel_x.to(device=img.device, dtype=img.dtype)
    ky = kernel_y.to(device=img.device, dtype=img.dtype)
    p = ksize // 2
    x = _pad(img, p, p).reshape(b * c, 1, h + 2 * p, w + 2 * p)
    if kernel_x.dim() == 1:
        x = F.conv2d(x, kx.view(1, 1, 1, ksize))
        x = F.conv2d(x, ky.view(1, 1, ksize, 1))
        return x.view(b, c, h, w)
    x = x.view(1, b * c, h + 2 * p, w + 2 * p)  # one group per (sample, channel)
    x = F.conv2d(x, kx.repeat_interleave(c, dim=0).view(b * c, 1, 1, ksize), groups=b * c)
    x = F.conv2d(x, ky.repeat_interleave(c, dim=0).view(b * c, 1, ksize, 1), groups=b * c)
    return x.view(b, c, h, w)


def gaussian_blur(img: torch.Tensor, ksize: int, sigma: float = 0.0) -> torch.Tensor:
    """Separable Gaussian blur with OpenCV's ``GaussianBlur`` semantics and reflect-101 border.

    On CPU (float32, no autograd) the two 1-D passes run in OpenCV's ``sepFilter2D``, which is
    an order of magnitude faster there than ``conv2d``; elsewhere (CUDA, autograd) two 1-D
    ``conv2d`` passes.

    Args:
        img: ``(B, C, H, W)`` float tensor.
        ksize: odd kernel size.
        sigma: standard deviation in pixels; ``<= 0`` derives it from ``ksize`` (OpenCV's rule).

    Returns:
        ``(B, C, H, W)`` tensor, same dtype and device.

    Raises:
        ValueError: not a 4-D tensor, or ``ksize`` not a positive odd integer.
    """
    _check_image(img)
    k1 = gaussian_kernel1d(ksize, sigma, dtype=torch.float64)
    return filter_separable(img, k1, k1)


def usm_sharpen(img: torch.Tensor, radius: int = 50, weight: float = 0.5, threshold: float = 10) -> torch.Tensor:
    """Unsharp masking as Real-ESRGAN applies it to the ground truth (BasicSR ``USMSharp``).

    ``blur = G * img`` (Gaussian, kernel size ``radius`` made odd (50 -> 51), sigma from
    OpenCV's rule (8.0 for 51)); ``residual = img - blur``; ``mask = |residual| * 255 > threshold``;
    ``soft = G * mask``; ``sharp = clip(img + weight * residual, 0, 1)``;
    ``out = soft * sharp + (1 - soft) * img``.

    Args:
        img: ``(B, C, H, W)`` float32 RGB in ``[0, 1]``.
        radius: Gaussian kernel size (an even value is increased by one).
        weight: weight of the residual added back.
        threshold: residual threshold in 8-bit levels.

    Returns:
        ``(B, C, H, W)`` sharpened image in ``[0, 1]``, same dtype and device.

    Raises:
        ValueError: not a 4-D tensor or ``radius < 1``.
    """
    _check_image(img)
    if radius < 1:
        raise ValueError(f"radius must be >= 1, got {radius}")
    ksize = radius + 1 if radius % 2 == 0 else radius
    if _use_opencv(img):
        return _usm_opencv(img, ksize, weight, threshold)
    blur = gaussian_blur(img, ksize)
    residual = img - blur
    mask = (residual.abs() * 255 > threshold).to(img.dtype)
    soft = gaussian_blur(mask, ksize)
    sharp = (img + weight * residual).clamp_(0, 1)
    return torch.lerp(img, sharp, soft)


def _usm_opencv(img: torch.Tensor, ksize: int, weight: float, threshold: float) -> torch.Tensor:
    """CPU USM one plane at a time, so each plane's blur, mask and blend stay in cache."""
    b, c, h, w = img.shape
    k = gaussian_kernel1d(ksize, dtype=torch.float64).numpy().astype(np.float32)
    border = cv2.BORDER_REFLECT_101 if ksize // 2 < min(h, w) else cv2.BORDER_REPLICATE
    src = img.detach().contiguous()
    out = torch.empty_like(src)
    s_all, d_all = src.view(b * c, h, w).numpy(), out.view(b * c, h, w).numpy()
    for i in range(b * c):
        s = s_all[i]
        residual = s - cv2.sepFilter2D(s, cv2.CV_32F, k, k, borderType=border)
        mask = (np.abs(residual) * 255 > threshold).astype(np.float32)
        soft = cv2.sepFilter2D(mask, cv2.CV_32F, k, k, borderType=border)
        sharp = s + weight * residual
        np.clip(sharp, 0, 1, out=sharp)
        sharp -= s
        sharp *= soft
        sharp += s
        d_all[i] = sharp
    return out
