"""MATLAB imresize (bicubic, antialiasing): hand-computed values, shapes, fast paths, torch path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import esrcli.ops.imresize as R
from esrcli.ops.imresize import contributions, cubic, imresize, imresize_pt


def _generic(a: np.ndarray, scale, antialiasing: bool = True) -> np.ndarray:
    """The plain gather-and-sum of MATLAB, without the uniform-stride fast path."""
    h, w = a.shape[:2]
    (sh, sw), (oh, ow), order = R._plan(h, w, scale)
    out = a.astype(np.float64)
    for axis in order:
        n_in, n_out, s = (h, oh, sh) if axis == 0 else (w, ow, sw)
        wt, ix = contributions(n_in, n_out, s, antialiasing)
        out = R._resize_axis(out, axis, wt, ix)
    return out


def test_cubic_kernel_values():
    x = np.array([0.0, 0.25, 0.75, 1.0, 1.25, 1.75, 2.0, 2.5, -0.75])
    np.testing.assert_allclose(cubic(x), [1, 0.8671875, 0.2265625, 0, -0.0703125, -0.0234375, 0, 0, 0.2265625])


def test_hand_computed_upscale_by_two():
    # in = [0, 1], x2: u = 0.75, 1.25, 1.75, 2.25; Keys weights with mirrored borders (worked by hand)
    out = imresize(np.array([[0.0, 1.0]]), (1, 2))
    np.testing.assert_allclose(out, [[-0.09375, 0.203125, 0.796875, 1.09375]], atol=1e-15)


def test_contributions_rows_sum_to_one_and_mirror():
    w, idx = contributions(5, 3, 0.5)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    assert idx.min() >= 0 and idx.max() <= 4
    assert w.shape[1] <= 10  # ceil(4 / 0.5) + 2 taps, all-zero columns removed


@pytest.mark.parametrize(
    ("shape", "scale", "expected"),
    [
        ((10, 10), 0.5, (5, 5)),
        ((7, 9), 0.5, (4, 5)),
        ((5, 7, 3), 1 / 3, (2, 3, 3)),
        ((100, 75), 0.7, (70, 53)),
        ((3, 4, 1), 2.5, (8, 10, 1)),
        ((6, 8), (0.5, 2.0), (3, 16)),
    ],
)
def test_output_shapes(shape, scale, expected):
    assert imresize(np.zeros(shape), scale).shape == expected


@pytest.mark.parametrize("scale", [0.5, 0.25, 1 / 3, 0.7, 1.5, 4.0])
def test_constant_image_stays_constant(scale):
    out = imresize(np.full((23, 17, 3), 77.0), scale)
    np.testing.assert_allclose(out, 77.0, atol=1e-10)


def test_uint8_is_rounded_and_saturated():
    step = np.zeros((8, 8), np.uint8)
    step[:, 4:] = 255
    out = imresize(step, 4)
    assert out.dtype == np.uint8
    assert out.min() == 0 and out.max() == 255  # the cubic overshoot is clipped
    f = imresize(step.astype(np.float64), 4)
    assert f.min() < 0 and f.max() > 255
    np.testing.assert_array_equal(out, np.clip(np.floor(f + 0.5), 0, 255))


@pytest.mark.parametrize("shape", [(48, 50), (17, 9, 3), (5, 7), (33, 20, 4), (96, 96)])
@pytest.mark.parametrize("scale", [0.5, 0.25, 1 / 3])
def test_uniform_fast_path_matches_generic(shape, scale):
    rng = np.random.default_rng(0)
    a = rng.random(shape) * 255
    fast = imresize(a, scale)
    ref = _generic(a, scale)
    assert fast.shape == ref.shape
    np.testing.assert_allclose(fast, ref, atol=1e-10, rtol=0)


@pytest.mark.parametrize("scale", [0.5, 0.25, 0.7, 3.0])
def test_uint8_in_uint8_out_for_every_path(scale):
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)
    out = imresize(a, scale)
    assert out.dtype == np.uint8
    ref = _generic(a, scale)
    np.testing.assert_array_equal(out, np.clip(np.floor(ref + 0.5), 0, 255))


def test_fast_path_is_taken_for_halving():
    assert R._uniform_step(96, 48, 0.5, True) is not None
    assert R._uniform_step(100, 70, 0.7, True) is None


def test_rows_first_on_equal_scales():
    # MATLAB resizes the dimension with the smaller scale first (rows on ties); the result of
    # the two orders differs only by rounding for floats, but the order is part of exactness.
    assert R._plan(10, 12, (0.5, 0.25))[2] == (1, 0)
    assert R._plan(10, 12, 0.5)[2] == (0, 1)


@pytest.mark.parametrize("scale", [0.5, 0.7, 4.0])
def test_torch_path_matches_numpy(scale):
    rng = np.random.default_rng(1)
    a = rng.random((2, 3, 21, 18))
    out = imresize_pt(torch.from_numpy(a), scale)
    ref = np.stack([imresize(x.transpose(1, 2, 0), scale).transpose(2, 0, 1) for x in a])
    assert tuple(out.shape) == ref.shape
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-10)


@pytest.mark.parametrize("bad", [0, -1.0, float("inf")])
def test_bad_scale_raises(bad):
    with pytest.raises(ValueError, match="scale"):
        imresize(np.zeros((4, 4)), bad)


def test_bad_shape_raises():
    with pytest.raises(ValueError, match="expected"):
        imresize(np.zeros(5), 2)
    with pytest.raises(ValueError, match="float tensor"):
        imresize_pt(torch.zeros(4, 4, dtype=torch.uint8), 2)
