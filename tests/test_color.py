"""MATLAB colour conversions: rgb2ycbcr, ycbcr2rgb, rgb2gray, rounding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from esrcli.ops.color import (
    GRAY_WEIGHTS,
    bgr2ycbcr,
    matlab_round,
    rgb2gray,
    rgb2y_255,
    rgb2ycbcr,
    rgb2ycbcr_pt,
    ycbcr2rgb,
)


def test_matlab_round_is_half_away_from_zero():
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49999999999999994, 2.4999999999999996, 3.7, -3.7])
    np.testing.assert_array_equal(matlab_round(x), [-3, -2, -1, 1, 2, 3, 0, 2, 4, -4])


def test_rgb2ycbcr_uint8_known_values():
    rgb = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8)
    out = rgb2ycbcr(rgb)
    assert out.dtype == np.uint8
    # Y = 16 + 65.481 R + 128.553 G + 24.966 B (R, G, B in [0, 1]); rounded
    np.testing.assert_array_equal(out[0, :, 0], [16, 235, 81, 145, 41])
    np.testing.assert_array_equal(out[0, 0, 1:], [128, 128])
    np.testing.assert_array_equal(out[0, 1, 1:], [128, 128])
    np.testing.assert_array_equal(out[0, 2, 1:], [90, 240])  # 128 - 37.797, 128 + 112
    np.testing.assert_array_equal(rgb2ycbcr(rgb, y_only=True), out[..., 0])


def test_rgb2ycbcr_uint8_matches_float_formula_rounded():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    y = rgb2ycbcr(rgb, y_only=True).astype(np.float64)
    exact = 16 + rgb.astype(np.float64) @ np.array([65.481, 128.553, 24.966]) / 255
    assert np.abs(y - exact).max() <= 0.5 + 1e-9
    np.testing.assert_array_equal(y, np.floor(exact + 0.5))


def test_rgb2ycbcr_float_range_and_inverse():
    rng = np.random.default_rng(1)
    rgb = rng.random((8, 9, 3))
    ycc = rgb2ycbcr(rgb)
    assert ycc.dtype == np.float64
    assert 16 / 255 - 1e-12 <= ycc[..., 0].min() and ycc[..., 0].max() <= 235 / 255 + 1e-12
    np.testing.assert_allclose(ycbcr2rgb(ycc), rgb, atol=1e-12)
    np.testing.assert_allclose(rgb2ycbcr(rgb, y_only=True) * 255, rgb2y_255(rgb * 255), atol=1e-10)


def test_ycbcr2rgb_uint8_roundtrip_is_close():
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    back = ycbcr2rgb(rgb2ycbcr(rgb))
    assert back.dtype == np.uint8
    assert np.abs(back.astype(int) - rgb).max() <= 2


def test_bgr2ycbcr_is_rgb2ycbcr_on_reversed_channels():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(bgr2ycbcr(rgb[..., ::-1]), rgb2ycbcr(rgb))


def test_rgb2gray_matlab_weights_and_rounding():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [10, 20, 30]]], dtype=np.uint8)
    g = rgb2gray(rgb)
    assert g.dtype == np.uint8 and g.shape == (1, 5)
    # 0.298936*255 = 76.23, 0.587043*255 = 149.70, 0.114021*255 = 29.08; 10/20/30 -> 17.98
    np.testing.assert_array_equal(g[0], [76, 150, 29, 255, 18])
    f = rgb2gray(rgb.astype(np.float64))
    np.testing.assert_allclose(f, rgb.astype(np.float64) @ GRAY_WEIGHTS)


def test_rgb2ycbcr_pt_matches_numpy():
    rng = np.random.default_rng(4)
    rgb = rng.random((2, 3, 7, 5))
    t = rgb2ycbcr_pt(torch.from_numpy(rgb))
    ref = rgb2ycbcr(rgb.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(t.numpy(), ref, atol=1e-12)
    y = rgb2ycbcr_pt(torch.from_numpy(rgb).float(), y_only=True)
    assert y.shape == (2, 1, 7, 5) and y.dtype == torch.float32


@pytest.mark.parametrize("fn", [rgb2ycbcr, rgb2gray, ycbcr2rgb, rgb2y_255])
def test_wrong_channel_count_raises(fn):
    with pytest.raises(ValueError, match="3 channels"):
        fn(np.zeros((4, 4, 2)))


def test_pt_wrong_shape_raises():
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        rgb2ycbcr_pt(torch.zeros(1, 4, 3, 3))
