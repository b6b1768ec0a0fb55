"""PSNR, SSIM, NIQE: the official reference values, conventions, robustness and error paths."""

from __future__ import annotations

import csv
import importlib
import math
import re

import cv2
import numpy as np
import pytest
import torch

from esrcli.errors import MetricError
from esrcli.metrics import niqe, niqe_gray, psnr, psnr_pt, read_uint8, ssim, ssim_pt, y_channel
from esrcli.metrics.evaluate import evaluate_pair, match_sizes
from esrcli.metrics.niqe import _aggd_table, _nearest_index, aggd_fit, load_pristine_model, niqe_reference, prepare_niqe_input
from esrcli.ops.imresize import imresize

niqe_mod = importlib.import_module("esrcli.metrics.niqe")  # the package attribute `niqe` is the function


def _reference_rows(shared):
    with open(shared / "metrics" / "reference.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(cv2.GaussianBlur(rng.random((h, w)) * 255, (0, 0), 1.5))


# --------------------------------------------------------------------- reference values (1e-6)


def test_reference_csv_has_the_expected_rows(shared):
    rows = _reference_rows(shared)
    assert [r["metric"] for r in rows] == ["niqe", "niqe"] + ["psnr", "ssim", "psnr_y", "ssim_y"] * 2


@pytest.mark.parametrize("index", range(10))
def test_reference_row_is_reproduced(shared, index):
    row = _reference_rows(shared)[index]
    images = shared / "metrics"
    expected = float(row["expected"])
    metric = row["metric"]
    if metric == "niqe":
        convert = "gray" if "rgb2gray" in row["convention"] else "y"
        value = niqe(read_uint8(images / row["input"]), crop_border=0, convert=convert)
    else:
        m = re.fullmatch(r"bicubic\((\S+), x(\d+)\) vs (\S+)", row["input"])
        assert m, row["input"]
        scale = int(m.group(2))
        sr = imresize(read_uint8(images / m.group(1)), scale)  # MATLAB bicubic, rounded to uint8
        assert sr.dtype == np.uint8
        gt = read_uint8(images / m.group(3))
        fn = psnr if metric.startswith("psnr") else ssim
        value = fn(sr, gt, crop_border=scale, test_y_channel=metric.endswith("_y"))
    assert abs(value - expected) <= 1e-6, f"{metric} {row['input']}: {value!r} vs {expected!r}"


def test_niqe_closeness_to_the_matlab_values(shared):
    # LIVE niqe_release value (IQA-PyTorch calibration): reproduced to rounding.
    img = read_uint8(shared / "metrics" / "images" / "niqe_I04.bmp")
    assert abs(niqe(img, convert="gray") - 3.65492152353770) < 1e-10
    # BasicSR's quoted MATLAB R2021a value; measured 5.72957388 (|diff| 5.0e-7, see docs/metrics.md).
    img = read_uint8(shared / "metrics" / "images" / "niqe_baboon.png")
    assert abs(niqe(img, convert="y") - 5.72957338) < 6e-7


def test_fast_niqe_equals_the_loop_reference(shared):
    gray = prepare_niqe_input(read_uint8(shared / "metrics" / "images" / "niqe_I04.bmp"), 0, "gray")
    assert abs(niqe_gray(gray) - niqe_reference(gray)) < 1e-9


# --------------------------------------------------------------------- NIQE internals


def test_pristine_model_is_embedded():
    model = load_pristine_model()
    assert model.mu.shape == (36,) and model.cov.shape == (36, 36)
    np.testing.assert_allclose(model.window.sum(), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.outer(model.kernel_1d, model.kernel_1d), model.window, atol=1e-15)


def test_gamma_grid_is_matlab_colon():
    gam, r_gam, _, _ = _aggd_table()
    assert gam.shape == (9801,) and gam[0] == 0.2 and gam[-1] == 10.0
    np.testing.assert_allclose(np.diff(gam), 0.001, atol=1e-12)
    assert np.all(np.diff(r_gam) > 0)


def test_nearest_index_equals_brute_force_argmin():
    _, r_gam, _, _ = _aggd_table()
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(0.0, 0.8, 500), r_gam[[0, 17, 9800]], (r_gam[:-1:997] + r_gam[1::997]) / 2, [np.nan]])
    brute = np.array([0 if np.isnan(v) else int(np.argmin((r_gam - v) ** 2)) for v in x])
    np.testing.assert_array_equal(_nearest_index(r_gam, x), brute)


def test_aggd_fit_recovers_gaussian_and_laplacian_shapes():
    rng = np.random.default_rng(1)
    x = np.stack([rng.normal(0, 1, 200_000), rng.laplace(0, 1, 200_000)])
    alpha, bl, br = aggd_fit(x)
    assert abs(alpha[0] - 2.0) < 0.05 and abs(alpha[1] - 1.0) < 0.05
    # GGD scale: Gaussian sigma 1 -> beta = sqrt(2); Laplace b = 1 -> beta = 1
    np.testing.assert_allclose([bl[0], br[0]], math.sqrt(2), rtol=0.02)
    np.testing.assert_allclose([bl[1], br[1]], 1.0, rtol=0.02)


def test_aggd_fit_one_sided_row_is_nan_like_matlab():
    alpha, bl, br = aggd_fit(np.array([[1.0, 2.0, 0.0, 3.0]]))
    assert alpha[0] == 0.2 and math.isnan(bl[0]) and math.isfinite(br[0])


def test_threads_do_not_change_the_score():
    img = _textured(288, 384)
    assert niqe_gray(img, workers=1) == niqe_gray(img, workers=3)


def test_flat_region_noise_cannot_move_the_score(monkeypatch):
    img = _textured(192, 288, seed=2)
    img[:, :144] = 100.0
    noise = np.random.default_rng(3).standard_normal(img.shape) * 1e-12
    clean = niqe_gray(img)
    assert math.isfinite(clean)
    assert abs(niqe_gray(img + noise) - clean) < 1e-9
    assert abs(niqe_reference(img + noise) - clean) < 1e-9
    # Without the flat-window rule the rounding noise decides the AGGD fits (the rule matters).
    monkeypatch.setattr(niqe_mod, "FLAT_TOL", -1.0)
    assert abs(niqe_gray(img + noise) - clean) > 1e-3


def test_flat_image_is_a_metric_error():
    with pytest.raises(MetricError, match="flat"):
        niqe(np.full((192, 192, 3), 128, np.uint8))
    y, x = np.indices((192, 192))  # textured, but every neighbour product has one sign
    with pytest.raises(MetricError, match="perfectly regular pattern"):
        niqe(((x + y) % 2 * 255).astype(np.uint8))


def test_too_small_for_one_block_is_a_metric_error():
    with pytest.raises(MetricError, match="too small for NIQE: 95x200"):
        niqe(np.zeros((200, 95, 3), np.uint8))
    with pytest.raises(MetricError, match="too small"):
        niqe(_textured(100, 100), crop_border=4)  # 92x92 after cropping


def test_single_block_uses_zero_feature_covariance():
    value = niqe(_textured(100, 120).astype(np.uint8))
    assert math.isfinite(value) and value > 0


def test_niqe_input_conventions():
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, np.zeros((100, 100, 1), np.uint8)], axis=2)
    np.testing.assert_array_equal(prepare_niqe_input(rgba), prepare_niqe_input(rgb))
    gray = rgb[:, :, :1]
    np.testing.assert_array_equal(prepare_niqe_input(gray, convert="gray"), gray[:, :, 0])
    # float input is the uint8 image MATLAB reads (rounded half away from zero)
    np.testing.assert_array_equal(prepare_niqe_input(rgb.astype(np.float64) + 0.4), prepare_niqe_input(rgb))
    assert prepare_niqe_input(rgb, crop_border=3).shape == (94, 94)
    with pytest.raises(MetricError, match="convert"):
        prepare_niqe_input(rgb, convert="lab")
    with pytest.raises(MetricError, match="shape"):
        prepare_niqe_input(np.zeros((4, 4, 2)))


# --------------------------------------------------------------------- PSNR / SSIM


def test_psnr_known_value_and_inf():
    a = np.zeros((8, 8, 3))
    assert psnr(a, a + 1) == pytest.approx(20 * math.log10(255), abs=1e-12)
    assert psnr(a, a) == math.inf
    assert psnr(a, a, test_y_channel=True) == math.inf


def test_psnr_crop_border_ignores_the_frame():
    a = np.full((20, 20, 3), 50, np.uint8)
    b = a.copy()
    b[:2] = 0
    assert psnr(a, b, crop_border=2) == math.inf
    assert psnr(a, b, crop_border=1) < 40


def test_y_channel_is_basicsr_formula():
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (6, 7, 3)).astype(np.float64)
    y = y_channel(img)
    assert y.shape == (6, 7, 1)
    exact = 16 + img @ np.array([65.481, 128.553, 24.966]) / 255
    np.testing.assert_allclose(y[..., 0], exact, atol=1e-4)  # float32 conversion, as BasicSR
    gray = img[..., :1]
    np.testing.assert_array_equal(y_channel(gray), gray)


def test_ssim_identical_is_one_and_noise_lowers_it():
    img = _textured(64, 64)
    rgb = np.stack([img, img[::-1], img[:, ::-1]], axis=2)
    assert ssim(rgb, rgb) == pytest.approx(1.0, abs=1e-12)
    noisy = np.clip(rgb + np.random.default_rng(6).normal(0, 20, rgb.shape), 0, 255)
    v = ssim(rgb, noisy)
    assert 0 < v < 0.95


def test_ssim_matches_a_direct_2d_filter_implementation():
    rng = np.random.default_rng(7)
    a = rng.integers(0, 256, (40, 50, 3)).astype(np.float64)
    b = np.clip(a + rng.normal(0, 10, a.shape), 0, 255)
    k = cv2.getGaussianKernel(11, 1.5)
    win = np.outer(k, k)
    vals = []
    for c in range(3):
        x, y = a[..., c], b[..., c]
        f = lambda z: cv2.filter2D(z, -1, win)[5:-5, 5:-5]  # noqa: E731
        m1, m2 = f(x), f(y)
        s1, s2, s12 = f(x * x) - m1**2, f(y * y) - m2**2, f(x * y) - m1 * m2
        c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
        vals.append(np.mean(((2 * m1 * m2 + c1) * (2 * s12 + c2)) / ((m1**2 + m2**2 + c1) * (s1 + s2 + c2))))
    assert ssim(a, b) == pytest.approx(float(np.mean(vals)), abs=1e-12)


def test_ssim_threads_and_strips_do_not_change_the_result():
    rng = np.random.default_rng(9)
    a = rng.integers(0, 256, (150, 70, 3)).astype(np.float64)
    b = np.clip(a + rng.normal(0, 15, a.shape), 0, 255)
    assert ssim(a, b, workers=1) == ssim(a, b, workers=3)


def test_mismatched_and_too_small_inputs_raise():
    with pytest.raises(MetricError, match="sizes differ"):
        psnr(np.zeros((10, 10, 3)), np.zeros((10, 11, 3)))
    with pytest.raises(MetricError, match="too small"):
        ssim(np.zeros((20, 20, 3)), np.zeros((20, 20, 3)), crop_border=5)
    with pytest.raises(MetricError, match="nothing left"):
        psnr(np.zeros((8, 8)), np.zeros((8, 8)), crop_border=4)
    with pytest.raises(MetricError, match="crop_border"):
        psnr(np.zeros((8, 8)), np.zeros((8, 8)), crop_border=-1)


def test_tensor_versions_match_numpy():
    rng = np.random.default_rng(8)
    a = rng.random((2, 3, 32, 30))
    b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    p = psnr_pt(ta, tb, crop_border=2)
    s = ssim_pt(ta, tb, crop_border=2)
    assert p.shape == (2,) and p.dtype == torch.float64
    for i in range(2):
        x, y = a[i].transpose(1, 2, 0) * 255, b[i].transpose(1, 2, 0) * 255
        assert p[i].item() == pytest.approx(psnr(x, y, 2), abs=1e-9)
        assert s[i].item() == pytest.approx(ssim(x, y, 2), abs=1e-9)
        assert psnr_pt(ta, tb, 2, True)[i].item() == pytest.approx(psnr(x, y, 2, True), abs=1e-3)
    assert torch.isinf(psnr_pt(ta, ta)).all()
    with pytest.raises(MetricError, match="differ"):
        psnr_pt(ta, tb[:, :, :-1])


# --------------------------------------------------------------------- pairs and reading


def test_match_sizes_mod_crops_gt_and_repeats_gray():
    sr = np.zeros((12, 16, 1), np.uint8)
    gt = np.zeros((14, 19, 3), np.uint8)
    a, b, cropped = match_sizes(sr, gt, scale=4)
    assert cropped and a.shape == b.shape == (12, 16, 3)
    with pytest.raises(MetricError, match="sizes differ: sr 16x12 vs gt 20x12"):
        match_sizes(sr, np.zeros((12, 20, 3), np.uint8), scale=4)


def test_evaluate_pair_reports_niqe_problem_without_failing():
    img = _textured(64, 64).astype(np.uint8)
    rgb = np.stack([img] * 3, axis=2)
    scores = evaluate_pair(rgb, rgb, scale=2)
    assert scores.psnr == math.inf and scores.ssim == pytest.approx(1.0)
    assert scores.niqe is None and "too small" in scores.niqe_error
    assert evaluate_pair(rgb, rgb, scale=2, with_niqe=False).niqe_error is None


def test_read_uint8_quantises_16_bit_and_drops_alpha(tmp_path):
    v = np.array([[0, 257, 32767, 65535]], np.uint16)
    rgba = np.stack([v, v, v, np.full_like(v, 1000)], axis=2)
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    out = read_uint8(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (1, 4, 3)
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 127, 255])  # round(v / 257)
    cv2.imwrite(str(tmp_path / "g.png"), np.array([[0, 7, 255]], np.uint8))
    g = read_uint8(tmp_path / "g.png")
    assert g.shape == (1, 3, 1)
    np.testing.assert_array_equal(g[0, :, 0], [0, 7, 255])
