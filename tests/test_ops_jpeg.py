"""JPEG round trip (esrcli.ops.jpeg) and resize (esrcli.ops.resize)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from esrcli.data.testchart import draw_test_chart
from esrcli.ops.jpeg import jpeg_compress, jpeg_compress_torch, quant_tables
from esrcli.ops.resize import resize


@pytest.fixture(scope="module")
def chart() -> torch.Tensor:
    return torch.from_numpy(draw_test_chart(128)).permute(2, 0, 1).unsqueeze(0).contiguous()


def test_jpeg_quality_monotonic(chart):
    errors = []
    for q in (10, 30, 50, 70, 90, 98):
        out = jpeg_compress(chart, q)
        assert out.shape == chart.shape and out.dtype == torch.float32
        errors.append(float((out - chart).abs().mean()))
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.02 and errors[0] > 0.03


def test_jpeg_has_8x8_blocking():
    g = torch.Generator().manual_seed(0)
    smooth = F.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=(128, 128), mode="bicubic", align_corners=False).clamp(0, 1)
    out = jpeg_compress(smooth, 10)
    d = (out[..., 1:] - out[..., :-1]).abs().mean(dim=(0, 1, 2))  # mean jump between neighbouring columns
    at_block = d[7::8].mean()
    inside = torch.cat([d[i::8] for i in range(7)]).mean()
    assert float(at_block) > 1.5 * float(inside)


def test_jpeg_per_sample_quality_and_8bit_output(chart):
    batch = chart.expand(2, -1, -1, -1)
    out = jpeg_compress(batch, [20, 95])
    torch.testing.assert_close(out[0:1], jpeg_compress(chart, 20))
    torch.testing.assert_close(out[1:2], jpeg_compress(chart, torch.tensor([95.2])))
    levels = out * 255
    assert torch.equal(levels, levels.round())


@pytest.mark.parametrize("codec", [jpeg_compress, jpeg_compress_torch])
@pytest.mark.parametrize("bad", [0, 101, [50]])
def test_jpeg_errors(chart, bad, codec):
    with pytest.raises(ValueError):
        codec(chart.expand(2, -1, -1, -1), bad)


@pytest.mark.parametrize("codec", [jpeg_compress, jpeg_compress_torch])
def test_jpeg_rejects_non_rgb(codec):
    with pytest.raises(ValueError, match=r"expected an RGB batch \(B, 3, H, W\), got \(1, 1, 16, 16\)"):
        codec(torch.rand(1, 1, 16, 16), 50)


def test_quant_tables_follow_libjpeg_scaling():
    """jpeg_quality_scaling: 5000/q below 50, 200 - 2q from 50; (T * s + 50) // 100 in 1..255."""
    luma, chroma = quant_tables(torch.tensor([50, 100, 1, 75, 10]))
    assert luma[0, 0, :4].tolist() == [16, 11, 10, 16] and chroma[0, 7, 7] == 99  # q 50: the base tables
    assert bool((luma[1] == 1).all() and (chroma[1] == 1).all())
    assert bool((luma[2] == 255).all())  # 16 * 5000 clipped to baseline's 255
    assert luma[3, 0, 0] == 8 and luma[3, 0, 2] == 5  # s = 50: (16 * 50 + 50) // 100, (10 * 50 + 50) // 100
    assert luma[4, 0, 1] == 55 and chroma[4, 0, 0] == 85  # s = 500: (11 * 500 + 50) // 100


@pytest.mark.parametrize("size", [(128, 128), (37, 53), (8, 9), (6, 4), (1, 1)])
def test_torch_jpeg_matches_libjpeg(size):
    """The torch codec reproduces OpenCV's libjpeg-turbo: the same blocks and chroma filters,
    most pixels equal, the rest a coefficient's rounding apart (float DCT vs islow)."""
    g = torch.Generator().manual_seed(3)
    h, w = size
    x = F.interpolate(torch.rand(3, 3, max(h // 6, 1), max(w // 6, 1), generator=g), size=size, mode="bicubic").clamp(0, 1)
    x = (x + 0.04 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    qs = [12, 50, 90]
    ref, out = jpeg_compress(x, qs), jpeg_compress_torch(x, qs)
    assert out.shape == x.shape and out.dtype == x.dtype
    levels = out * 255
    assert torch.equal(levels, levels.round())
    diff = (out - ref).abs() * 255
    psnr = 10 * torch.log10(1 / (out - ref).square().mean().clamp_min(1e-12))
    assert float(psnr) > 45 and float((diff < 0.5).float().mean()) > 0.8 and float(diff.mean()) < 0.3, (float(psnr), float(diff.mean()))
    # far from the input at low quality, as libjpeg is: the codec is really applied
    assert float((out[0] - x[0]).abs().mean()) > 0.5 * float((ref[0] - x[0]).abs().mean()) > 0
    for i, q in enumerate(qs):  # per-sample quality = one call per sample
        torch.testing.assert_close(out[i : i + 1], jpeg_compress_torch(x[i : i + 1], q))


def test_torch_jpeg_has_8x8_blocking():
    g = torch.Generator().manual_seed(0)
    smooth = F.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=(128, 128), mode="bicubic", align_corners=False).clamp(0, 1)
    d = (jpeg_compress_torch(smooth, 10)[..., 1:] - jpeg_compress_torch(smooth, 10)[..., :-1]).abs().mean(dim=(0, 1, 2))
    assert float(d[7::8].mean()) > 1.5 * float(torch.cat([d[i::8] for i in range(7)]).mean())


@pytest.mark.parametrize("mode", ["area", "bilinear", "bicubic"])
def test_resize_modes_and_sizes(chart, mode):
    out = resize(chart, scale_factor=0.37, mode=mode)
    assert out.shape[-2:] == (47, 47)  # floor(128 * 0.37)
    ref = F.interpolate(chart, scale_factor=0.37, mode=mode, align_corners=None if mode == "area" else False)
    torch.testing.assert_close(out, ref)
    assert resize(chart, size=(50, 70), mode=mode).shape[-2:] == (50, 70)
    assert resize(chart, scale_factor=1.0, mode=mode) is chart
    assert resize(torch.rand(1, 3, 4, 4), scale_factor=0.1, mode=mode).shape[-2:] == (1, 1)


@pytest.mark.parametrize(
    "kwargs", [{"scale_factor": 0.5, "mode": "nearest"}, {"mode": "area"}, {"size": (2, 2), "scale_factor": 0.5}, {"scale_factor": -1.0}, {"size": (0, 3)}]
)
def test_resize_errors(kwargs):
    with pytest.raises(ValueError):
        resize(torch.rand(1, 3, 8, 8), **kwargs)


def test_test_chart_is_deterministic():
    a, b = draw_test_chart(96), draw_test_chart(96)
    assert a.shape == (96, 96, 3) and a.dtype == np.float32
    assert np.array_equal(a, b) and 0 <= a.min() and a.max() <= 1
    assert a.std() > 0.2  # high contrast content
    with pytest.raises(ValueError):
        draw_test_chart(32)
