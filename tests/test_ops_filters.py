"""Blur kernels, filter2d, gaussian_blur and USM (esrcli.ops.filters)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from esrcli.ops import filters as F_


def _kernels(size=21):
    return {
        "iso": F_.bivariate_gaussian(size, 2.0, 2.0, 0.0),
        "aniso": F_.bivariate_gaussian(size, 3.0, 1.0, 0.7),
        "generalized": F_.bivariate_generalized_gaussian(size, 2.0, 1.2, -0.4, 0.6),
        "plateau": F_.bivariate_plateau(size, 1.5, 2.5, 1.1, 1.7),
        "sinc": F_.circular_lowpass_kernel(math.pi / 4, size),
    }


@pytest.mark.parametrize("name", ["iso", "aniso", "generalized", "plateau", "sinc"])
def test_kernels_sum_to_one_and_are_point_symmetric(name):
    k = _kernels()[name]
    assert k.shape == (21, 21) and k.dtype == torch.float32
    assert abs(float(k.double().sum()) - 1.0) < 1e-5
    torch.testing.assert_close(k, torch.flip(k, dims=(0, 1)), atol=1e-7, rtol=0)


def test_isotropic_kernel_is_rotation_invariant_and_matches_formula():
    k = F_.bivariate_gaussian(7, 1.3, 1.3, 0.0, dtype=torch.float64)
    torch.testing.assert_close(k, k.T)
    torch.testing.assert_close(k, F_.bivariate_gaussian(7, 1.3, 1.3, 1.234, dtype=torch.float64))
    ax = np.arange(-3, 4, dtype=np.float64)
    ref = np.exp(-(ax[None] ** 2 + ax[:, None] ** 2) / (2 * 1.3**2))
    np.testing.assert_allclose(k.numpy(), ref / ref.sum(), atol=1e-12)


def _principal_angle(k: torch.Tensor) -> float:
    """Angle of the kernel's major axis in (x=column, y=row) coordinates, from its second moments."""
    xx, yy = F_.mesh_grid(k.shape[-1])
    k = k.double()
    cxx, cyy, cxy = (k * xx * xx).sum(), (k * yy * yy).sum(), (k * xx * yy).sum()
    return 0.5 * math.atan2(2 * float(cxy), float(cxx - cyy))


@pytest.mark.parametrize("theta", [0.0, math.pi / 6, math.pi / 2, -math.pi / 3])
def test_anisotropic_kernel_orientation(theta):
    k = F_.bivariate_gaussian(21, 3.0, 0.8, theta)
    got = _principal_angle(k)
    diff = (got - theta + math.pi / 2) % math.pi - math.pi / 2  # axes are defined modulo pi
    assert abs(diff) < 0.02
    if theta == 0.0:  # elongated along rows (horizontal): wider spread in x than in y
        assert float(k[10, :].sum()) > float(k[:, 10].sum()) - 1e-6
        assert k[10, 14] > k[14, 10]


def test_generalized_and_plateau_shapes():
    g_heavy = F_.bivariate_generalized_gaussian(21, 2.0, 2.0, 0.0, 0.5)
    g_flat = F_.bivariate_generalized_gaussian(21, 2.0, 2.0, 0.0, 4.0)
    gauss = F_.bivariate_gaussian(21, 2.0, 2.0, 0.0)
    torch.testing.assert_close(F_.bivariate_generalized_gaussian(21, 2.0, 2.0, 0.0, 1.0), gauss)
    # beta < 1: heavier tails than the Gaussian; beta > 1: flatter top
    assert g_heavy[10, 20] > gauss[10, 20]
    assert g_flat[10, 11] / g_flat[10, 10] > gauss[10, 11] / gauss[10, 10]
    p = F_.bivariate_plateau(21, 2.0, 2.0, 0.0, 2.0)
    assert p[10, 10] == p.max() and p[10, 20] > 0


def test_batched_kernels_match_scalar_ones():
    sx = torch.tensor([0.5, 1.0, 2.5])
    sy = torch.tensor([1.5, 1.0, 0.7])
    th = torch.tensor([0.1, 0.0, -1.2])
    kb = F_.bivariate_gaussian(15, sx, sy, th)
    assert kb.shape == (3, 15, 15)
    for i in range(3):
        torch.testing.assert_close(kb[i], F_.bivariate_gaussian(15, float(sx[i]), float(sy[i]), float(th[i])))
    sb = F_.circular_lowpass_kernel(torch.tensor([1.0, 2.0]), 13, pad_to=21)
    assert sb.shape == (2, 21, 21) and float(sb[:, :4].abs().sum()) == 0.0


def _response(k: torch.Tensor, freq: float) -> float:
    """|H| of a kernel at radial frequency ``freq`` (rad/pixel) along x."""
    xx, _ = F_.mesh_grid(k.shape[-1])
    return abs(float((k.double() * torch.cos(freq * xx)).sum()))


def test_sinc_frequency_response():
    wc = math.pi / 3
    k = F_.circular_lowpass_kernel(wc, 21, dtype=torch.float64)
    assert _response(k, 0.0) == pytest.approx(1.0, abs=1e-9)
    assert _response(k, 0.3 * wc) > 0.85  # passes low frequencies
    assert _response(k, 2.0 * wc) < 0.15  # attenuates above the cutoff
    assert _response(k, 2.8) < 0.1
    # ringing: the impulse response has negative lobes
    assert float(k.min()) < 0


def test_sinc_centre_value_and_bessel():
    k = F_.circular_lowpass_kernel(2.0, 7, dtype=torch.float64)
    # unnormalised centre / neighbour ratio: (w^2 / 4pi) / (w J1(w) / 2pi) with r = 1
    j1 = float(torch.special.bessel_j1(torch.tensor(2.0, dtype=torch.float64)))
    assert float(k[3, 3] / k[3, 4]) == pytest.approx((4 / (4 * math.pi)) / (2 * j1 / (2 * math.pi)), rel=1e-9)


@pytest.mark.parametrize(
    "call",
    [
        lambda: F_.bivariate_gaussian(8, 1.0, 1.0),
        lambda: F_.bivariate_gaussian(7, -1.0, 1.0),
        lambda: F_.bivariate_plateau(7, 1.0, 1.0, 0.0, 0.0),
        lambda: F_.circular_lowpass_kernel(4.0, 7),
        lambda: F_.gaussian_kernel1d(4),
        lambda: F_.pad_kernel(torch.ones(7, 7), 8),
        lambda: F_.filter2d(torch.rand(1, 3, 8, 8), torch.ones(4, 4)),
        lambda: F_.filter2d(torch.rand(2, 3, 8, 8), torch.ones(3, 3, 3)),
        lambda: F_.filter2d(torch.rand(3, 8, 8), torch.ones(3, 3)),
    ],
)
def test_invalid_arguments_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_gaussian_kernel1d_matches_opencv():
    for ksize, sigma in [(51, 0), (7, 0), (5, 0), (3, 0), (21, 2.5), (31, 0)]:
        ref = cv2.getGaussianKernel(ksize, sigma, cv2.CV_64F).reshape(-1)
        np.testing.assert_allclose(F_.gaussian_kernel1d(ksize, sigma, dtype=torch.float64).numpy(), ref, atol=1e-12)


def test_filter2d_matches_opencv_and_torch_path():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 40, 33, generator=g)
    kern = torch.stack([F_.bivariate_gaussian(9, 1.5, 0.7, 0.4), F_.circular_lowpass_kernel(1.3, 9)])
    out = F_.filter2d(img, kern)
    for i in range(2):
        ref = cv2.filter2D(img[i].permute(1, 2, 0).numpy(), -1, kern[i].numpy(), borderType=cv2.BORDER_REFLECT_101)
        np.testing.assert_allclose(out[i].permute(1, 2, 0).numpy(), ref, atol=1e-5)
    # the conv2d path (used on CUDA and under autograd) agrees with the OpenCV path
    with torch.enable_grad():
        conv = F_.filter2d(img.clone().requires_grad_(True), kern).detach()
    torch.testing.assert_close(conv, out, atol=1e-5, rtol=0)
    shared = F_.filter2d(img, kern[0])
    with torch.enable_grad():
        x = img.clone().requires_grad_(True)
        shared_conv = F_.filter2d(x, kern[0])
        shared_conv.sum().backward()  # differentiable on the conv2d path
    assert x.grad is not None and x.grad.shape == img.shape
    torch.testing.assert_close(shared_conv.detach(), shared, atol=1e-5, rtol=0)
    torch.testing.assert_close(shared[1:2], F_.filter2d(img[1:2], kern[0:1]))


def test_filter2d_padded_kernel_equals_native_size_and_identity():
    img = torch.rand(1, 3, 30, 30)
    k = F_.bivariate_gaussian(7, 1.0, 2.0, 0.3)
    torch.testing.assert_close(F_.filter2d(img, k), F_.filter2d(img, F_.pad_kernel(k, 21)), atol=1e-6, rtol=0)
    pulse = torch.zeros(21, 21)
    pulse[10, 10] = 1
    torch.testing.assert_close(F_.filter2d(img, pulse), img)
    tiny = torch.rand(1, 3, 5, 5)  # smaller than the kernel radius: replicate border, no error
    assert F_.filter2d(tiny, F_.pad_kernel(k, 21)).shape == tiny.shape


def _usm_reference(img: np.ndarray, weight=0.5, radius=50, threshold=10) -> np.ndarray:
    """BasicSR's numpy ``usm_sharp`` recipe (HWC float32)."""
    if radius % 2 == 0:
        radius += 1
    blur = cv2.GaussianBlur(img, (radius, radius), 0)
    residual = img - blur
    mask = (np.abs(residual) * 255 > threshold).astype("float32")
    soft = cv2.GaussianBlur(mask, (radius, radius), 0)
    sharp = np.clip(img + weight * residual, 0, 1)
    return soft * sharp + (1 - soft) * img


def test_usm_matches_basicsr_recipe_and_sharpens():
    g = torch.Generator().manual_seed(1)
    base = torch.zeros(1, 3, 64, 64)
    base[..., 20:44, 20:44] = 0.6
    img = (F_.filter2d(base, F_.bivariate_gaussian(9, 2.0, 2.0)) + 0.02 * torch.rand(1, 3, 64, 64, generator=g)).clamp(0, 1)
    out = F_.usm_sharpen(img)
    ref = _usm_reference(img[0].permute(1, 2, 0).numpy().copy())
    np.testing.assert_allclose(out[0].permute(1, 2, 0).numpy(), ref, atol=2e-5)
    assert out.shape == img.shape and out.dtype == torch.float32
    assert 0 <= float(out.min()) and float(out.max()) <= 1
    # sharper: larger gradient energy across the edge
    grad = lambda t: float((t[..., 1:] - t[..., :-1]).abs().sum())  # noqa: E731
    assert grad(out) > grad(img) * 1.05
    with torch.enable_grad():  # conv2d path agrees
        out2 = F_.usm_sharpen(img.clone().requires_grad_(True)).detach()
    torch.testing.assert_close(out2, out, atol=1e-5, rtol=0)
    with pytest.raises(ValueError):
        F_.usm_sharpen(img, radius=0)


def test_separable_filter_equals_2d_isotropic_gaussian():
    img = torch.rand(2, 3, 37, 41, generator=torch.Generator().manual_seed(3))
    for size, sigma in [(7, 0.4), (13, 1.7), (21, 3.0)]:
        k1 = F_.gaussian_kernel1d(size, sigma)
        ref = F_.filter2d(img, F_.bivariate_gaussian(size, sigma, sigma))
        torch.testing.assert_close(F_.filter_separable(img, k1, k1), ref, atol=2e-6, rtol=0)
        with torch.enable_grad():
            conv = F_.filter_separable(img.clone().requires_grad_(True), k1, k1).detach()
        torch.testing.assert_close(conv, ref, atol=2e-6, rtol=0)
    with pytest.raises(ValueError):
        F_.filter_separable(img, torch.ones(3), torch.ones(5))


def test_separable_filter_with_one_kernel_per_sample():
    """(B, k) kernels: each sample filtered by its own, on OpenCV's path and on conv2d's."""
    img = torch.rand(3, 3, 30, 33, generator=torch.Generator().manual_seed(4))
    k1 = torch.stack([F_.gaussian_kernel1d(9, s) for s in (0.6, 1.5, 2.8)])
    ky = k1.flip(0)  # a different y kernel per sample too
    ref = torch.cat([F_.filter_separable(img[i : i + 1], k1[i], ky[i]) for i in range(3)])
    out = F_.filter_separable(img, k1, ky)
    assert torch.equal(out, ref)
    assert not torch.allclose(out[0], F_.filter_separable(img[:1], k1[1], ky[1])[0], atol=1e-3)
    with torch.enable_grad():
        conv = F_.filter_separable(img.clone().requires_grad_(True), k1, ky).detach()
    torch.testing.assert_close(conv, ref, atol=2e-6, rtol=0)
    with pytest.raises(ValueError, match="got 2 kernels for a batch of 3"):
        F_.filter_separable(img, k1[:2], ky[:2])
    with pytest.raises(ValueError, match="one shape"):
        F_.filter_separable(img, k1, ky[0])
