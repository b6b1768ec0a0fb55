"""The degradation pipeline, parameter sampling, paired crops and the pair pool."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
import torch

from esrcli.config import from_dict
from esrcli.config.degrade import DegradeConfig
from esrcli.data.testchart import draw_test_chart
from esrcli.degrade import PairPool, degrade, degrade_with_params, sample_params, synthesize_pairs
from esrcli.degrade.kernels import make_kernel
from esrcli.degrade.sheet import contact_sheet, describe
from esrcli.errors import DataError
from esrcli.ops.filters import usm_sharpen


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def gt() -> torch.Tensor:
    chart = torch.from_numpy(draw_test_chart(96)).permute(2, 0, 1)
    return torch.stack([chart, chart.flip(-1), chart.transpose(-1, -2)]).contiguous()


def test_shapes_dtype_range_and_8bit_levels(gt):
    lq, params = degrade(gt, DegradeConfig(), _gen())
    assert lq.shape == (3, 3, 24, 24) and lq.dtype == torch.float32 and lq.device == gt.device
    assert float(lq.min()) >= 0 and float(lq.max()) <= 1
    assert torch.equal(lq * 255, (lq * 255).round())
    assert len(params) == 3
    json.loads(json.dumps(params))  # JSON-serialisable
    # it really degrades: LQ differs from a plain area downscale of the GT
    plain = torch.nn.functional.interpolate(gt, scale_factor=0.25, mode="area")
    assert float((lq - plain).abs().mean()) > 0.01


def test_scale_2_and_odd_sizes(gt):
    cfg = from_dict(DegradeConfig, {"scale": 2, "gt_size": 64})
    lq, _ = degrade(gt[:, :, :90, :94], cfg, _gen(1))
    assert lq.shape == (3, 3, 45, 47)


def test_same_seed_same_output_and_params_rebuild_it(gt):
    cfg = DegradeConfig()
    a, pa = degrade(gt, cfg, _gen(5))
    b, pb = degrade(gt, cfg, _gen(5))
    c, _ = degrade(gt, cfg, _gen(6))
    assert torch.equal(a, b) and pa == pb
    assert not torch.equal(a, c)
    # the params (e.g. one line of params.jsonl) rebuild the output exactly, per sample
    torch.testing.assert_close(degrade_with_params(gt[1:2], json.loads(json.dumps(pa[1:2]))), a[1:2], atol=0, rtol=0)


def test_torch_jpeg_codec_in_the_pipeline(gt):
    """[degrade] jpeg_codec = "torch": the same draws, JPEG by esr's torch codec; the pairs
    stay within a level or so of libjpeg's, the params record the codec and rebuild them."""
    base = DegradeConfig()
    torch_cfg = from_dict(DegradeConfig, {"jpeg_codec": "torch"})
    a, pa = degrade(gt, base, _gen(7))
    b, pb = degrade(gt, torch_cfg, _gen(7))
    assert all("jpeg_codec" not in p for p in pa) and all(p.pop("jpeg_codec") == "torch" for p in pb) and pa == pb
    diff = (a - b).abs() * 255
    assert 0 < float(diff.mean()) < 1.0 and float((diff < 0.5).float().mean()) > 0.7
    pb = [{**p, "jpeg_codec": "torch"} for p in pb]
    torch.testing.assert_close(degrade_with_params(gt, pb), b, atol=0, rtol=0)
    with pytest.raises(ValueError, match="jpeg_codec: expected one of libjpeg, torch, got 'pil'"):
        degrade_with_params(gt[:1], [{**pb[0], "jpeg_codec": "pil"}])
    with pytest.raises(Exception, match="jpeg_codec"):
        from_dict(DegradeConfig, {"jpeg_codec": "pil"})


def test_per_sample_parameters_mix_in_a_batch():
    params = sample_params(DegradeConfig(), 64, _gen(2))
    assert len({p["first"]["resize"]["factor"] for p in params}) > 50
    assert len({p["first"]["resize"]["mode"] for p in params}) == 3
    assert len({p["first"]["noise"]["type"] for p in params}) == 2
    assert len({p["final"]["order"] for p in params}) == 2


def test_per_batch_resize_shares_sizes_and_the_batched_path_matches_sample_by_sample(gt, monkeypatch):
    """[degrade] per_batch_resize: the resizes and the final order are drawn once per batch
    (Real-ESRGAN's way); kernels, noise and qualities stay per sample. Such a batch runs
    through each step at once (the GPU's path, forced here on the CPU) with the same output
    as sample by sample, bit for bit, also when only some samples share their sizes."""
    from esrcli.degrade import pipeline

    groups: list[int] = []  # the size of every group degraded at once
    run_group = pipeline._degrade_group

    def counted(x, ps):
        groups.append(len(ps))
        return run_group(x, ps)

    monkeypatch.setattr(pipeline, "_degrade_group", counted)
    cfg = from_dict(DegradeConfig, {"per_batch_resize": True})
    gt6 = torch.cat([gt, gt.flip(-2)])
    for seed in range(4):
        params = sample_params(cfg, 6, _gen(seed))
        assert params[0] == sample_params(DegradeConfig(), 1, _gen(seed))[0]  # the first draws as per-sample mode
        shared = {json.dumps([p["first"]["resize"], p["second"]["resize"], p["final"]["order"], p["final"]["resize_mode"]]) for p in params}
        assert len(shared) == 1
        assert len({json.dumps([p["first"]["blur"], p["second"]["noise"], p["final"]["jpeg_quality"]]) for p in params}) == 6
        groups.clear()
        batched = degrade_with_params(gt6, params, batched=True)
        assert groups == [6]
        assert torch.equal(batched, degrade_with_params(gt6, params, batched=False))
        mixed = params[:3] + sample_params(DegradeConfig(), 3, _gen(seed + 10))  # a group of 3 and 3 singles
        groups.clear()
        out = degrade_with_params(gt6, mixed, batched=True)
        assert sorted(groups) == [1, 1, 1, 3]
        assert torch.equal(out, degrade_with_params(gt6, mixed, batched=False))
    # over batches the shared draws still follow the configured frequencies
    firsts = [sample_params(cfg, 4, _gen(s))[0]["first"]["resize"]["direction"] for s in range(300)]
    assert 0.6 < _freq(firsts, "down") < 0.8 and len(set(firsts)) == 3


def _freq(values, key):
    return sum(1 for v in values if v == key) / len(values)


def test_sampled_parameter_frequencies_follow_the_config():
    cfg = DegradeConfig()
    n = 4000
    ps = sample_params(cfg, n, _gen(3))
    tol = 0.03
    first_k = [p["first"]["blur"] for p in ps]
    assert _freq([k["type"] for k in first_k], "sinc") == pytest.approx(0.1, abs=tol)
    fam = [k["type"] for k in first_k if k["type"] != "sinc"]
    for name, prob in zip(cfg.first.kernel_list, cfg.first.kernel_prob):
        assert _freq(fam, name) == pytest.approx(prob, abs=tol), name
    sizes = Counter(k["size"] for k in first_k)
    assert set(sizes) == set(cfg.first.kernel_range)
    assert all(abs(c / n - 1 / 8) < tol for c in sizes.values())
    for k in first_k:
        if k["type"] == "sinc":
            lo = math.pi / 3 if k["size"] < 13 else math.pi / 5
            assert lo <= k["omega_c"] <= math.pi
        else:
            assert 0.2 <= k["sigma_x"] <= 3.0 and 0.2 <= k["sigma_y"] <= 3.0
            if not k["type"].endswith("aniso"):
                assert k["sigma_x"] == k["sigma_y"] and k["theta"] == 0.0
            if k["type"].startswith("generalized"):
                assert 0.5 <= k["beta"] <= 4.0
    for stage, rp in (("first", (0.2, 0.7, 0.1)), ("second", (0.3, 0.4, 0.3))):
        dirs = [p[stage]["resize"]["direction"] for p in ps]
        for d, prob in zip(("up", "down", "keep"), rp):
            assert _freq(dirs, d) == pytest.approx(prob, abs=tol)
        noise = [p[stage]["noise"] for p in ps]
        assert _freq([x["type"] for x in noise], "gaussian") == pytest.approx(0.5, abs=tol)
        assert _freq([x["gray"] for x in noise], True) == pytest.approx(0.4, abs=tol)
        modes = [p[stage]["resize"]["mode"] for p in ps]
        assert _freq(modes, "bicubic") == pytest.approx(1 / 3, abs=tol)
    ups = [p["first"]["resize"]["factor"] for p in ps if p["first"]["resize"]["direction"] == "up"]
    downs = [p["first"]["resize"]["factor"] for p in ps if p["first"]["resize"]["direction"] == "down"]
    assert 1.0 <= min(ups) and max(ups) <= 1.5 and 0.15 <= min(downs) and max(downs) <= 1.0
    sig = [p["second"]["noise"]["sigma"] for p in ps if p["second"]["noise"]["type"] == "gaussian"]
    assert 1.0 <= min(sig) and max(sig) <= 25.0
    assert _freq([p["first"]["blur"] is None for p in ps], True) == 0.0
    assert _freq([p["second"]["blur"] is None for p in ps], True) == pytest.approx(0.2, abs=tol)
    assert _freq([p["final"]["sinc"] is None for p in ps], True) == pytest.approx(0.2, abs=tol)
    assert _freq([p["final"]["order"] for p in ps], "sinc_first") == pytest.approx(0.5, abs=tol)
    q = [p["final"]["jpeg_quality"] for p in ps] + [p["first"]["jpeg_quality"] for p in ps]
    assert min(q) == 30 and max(q) == 95 and all(isinstance(x, int) for x in q)
    omegas = [p["final"]["sinc"]["omega_c"] for p in ps if p["final"]["sinc"]]
    assert math.pi / 3 <= min(omegas) and max(omegas) <= math.pi


def test_config_changes_what_is_sampled():
    cfg = from_dict(
        DegradeConfig,
        {
            "first": {"kernel_list": ["aniso"], "kernel_prob": [1.0], "sinc_prob": 0.0, "resize_prob": [0, 1, 0], "gaussian_noise_prob": 1.0},
            "second": {"blur_prob": 0.0},
            "final": {"sinc_prob": 0.0, "sinc_first_prob": 1.0},
        },
    )
    ps = sample_params(cfg, 200, _gen(4))
    assert {p["first"]["blur"]["type"] for p in ps} == {"aniso"}
    assert {p["first"]["resize"]["direction"] for p in ps} == {"down"}
    assert {p["first"]["noise"]["type"] for p in ps} == {"gaussian"}
    assert all(p["second"]["blur"] is None and p["final"]["sinc"] is None for p in ps)
    assert {p["final"]["order"] for p in ps} == {"sinc_first"}


def test_make_kernel_from_params():
    for p in sample_params(DegradeConfig(), 40, _gen(8)):
        for k in (p["first"]["blur"], p["second"]["blur"], p["final"]["sinc"]):
            if k is not None:
                t = make_kernel(k)
                assert t.shape == (k["size"], k["size"]) and abs(float(t.sum()) - 1) < 1e-5
    with pytest.raises(ValueError):
        make_kernel({"type": "box", "size": 7})


def test_degrade_errors(gt):
    with pytest.raises(ValueError):
        degrade(gt[0], DegradeConfig(), _gen())
    with pytest.raises(ValueError):
        degrade(gt.to(torch.uint8), DegradeConfig(), _gen())
    with pytest.raises(DataError):
        degrade(gt[:, :, :3, :3], DegradeConfig(), _gen())
    with pytest.raises(ValueError):
        degrade_with_params(gt, sample_params(DegradeConfig(), 2, _gen()))


def test_tiny_images_do_not_fail():
    lq, _ = degrade(torch.rand(4, 3, 8, 8, generator=_gen(9)), DegradeConfig(), _gen(9))
    assert lq.shape == (4, 3, 2, 2)


def test_synthesize_pairs_crops_aligned_patches():
    cfg = from_dict(DegradeConfig, {"gt_size": 64})
    src = torch.from_numpy(draw_test_chart(160)).permute(2, 0, 1).unsqueeze(0).repeat(2, 1, 1, 1)[:, :, :, :100]
    gt, gt_usm, lq, params = synthesize_pairs(src, cfg, _gen(10), gt_usm=True, degrade_usm=False)
    assert gt.shape == gt_usm.shape == (2, 3, 64, 64) and lq.shape == (2, 3, 16, 16)
    assert not torch.equal(gt, gt_usm)
    for i, p in enumerate(params):
        t, l = p["crop"]["top"], p["crop"]["left"]
        assert torch.equal(gt[i], src[i, :, t * 4 : t * 4 + 64, l * 4 : l * 4 + 64])
        # USM computed on the crop's neighbourhood only == crop of the USM of the whole image
        full = usm_sharpen(src[i : i + 1], cfg.usm_radius, cfg.usm_weight, cfg.usm_threshold)[0]
        torch.testing.assert_close(gt_usm[i], full[:, t * 4 : t * 4 + 64, l * 4 : l * 4 + 64], atol=1e-6, rtol=0)
    # same seed -> same pairs; without USM the second output is the plain GT
    gt2, same, lq2, _ = synthesize_pairs(src, cfg, _gen(10), gt_usm=False)
    assert torch.equal(gt2, gt) and torch.equal(lq2, lq) and same is gt2
    # Real-ESRGAN's default: with gt_usm the sharpened GT is degraded
    gt3, usm3, lq3, p3 = synthesize_pairs(src, cfg, _gen(10), gt_usm=True)
    assert torch.equal(usm3, gt_usm) and torch.equal(gt3, gt) and not torch.equal(lq3, lq)
    full_usm = usm_sharpen(src, cfg.usm_radius, cfg.usm_weight, cfg.usm_threshold)
    lq_ref = degrade_with_params(full_usm, [{k: v for k, v in p.items() if k != "crop"} for p in p3])
    for i, p in enumerate(p3):
        t, l = p["crop"]["top"], p["crop"]["left"]
        assert torch.equal(lq3[i], lq_ref[i, :, t : t + 16, l : l + 16])
    with pytest.raises(DataError):
        synthesize_pairs(src[:, :, :60, :], cfg, _gen(), gt_usm=False)


def test_pair_pool_fills_then_exchanges_and_restores():
    pool = PairPool(pool_size=10, batch_size=4)
    assert pool.pool_size == 8
    g = _gen(11)
    seen = []
    for step in range(2):  # filling: batches pass through unchanged
        lq, gt = torch.full((4, 3, 2, 2), float(step)), torch.full((4, 3, 8, 8), float(step))
        out = pool.exchange(lq, gt, generator=g)
        assert out[0] is lq and out[1] is gt and out[2] is None
        seen.append(step)
    assert pool.full and len(pool) == 8
    state = pool.state_dict()
    lq, gt = torch.full((4, 3, 2, 2), 9.0), torch.full((4, 3, 8, 8), 9.0)
    out_lq, out_gt, _ = pool.exchange(lq, gt, generator=_gen(12))
    assert set(out_lq[:, 0, 0, 0].tolist()) <= {0.0, 1.0}
    # pairs stay paired: lq value == gt value per sample
    assert torch.equal(out_lq[:, 0, 0, 0], out_gt[:, 0, 0, 0])
    # restoring the checkpointed state reproduces the exchange exactly
    other = PairPool(pool_size=10, batch_size=4)
    other.load_state_dict(state)
    o_lq, o_gt, _ = other.exchange(lq, gt, generator=_gen(12))
    assert torch.equal(o_lq, out_lq) and torch.equal(o_gt, out_gt)
    with pytest.raises(ValueError):
        pool.exchange(torch.zeros(3, 3, 2, 2), torch.zeros(3, 3, 8, 8))
    with pytest.raises(ValueError):
        pool.exchange(lq, gt, torch.zeros(4, 3, 8, 8))
    with pytest.raises(ValueError):
        PairPool(pool_size=12, batch_size=4).load_state_dict(state)


def test_pair_pool_with_gt_usm_keeps_triples_together():
    pool = PairPool(pool_size=4, batch_size=2)
    g = _gen(13)
    for v in range(4):
        t = lambda s: torch.full(s, float(v))  # noqa: E731
        lq, gt, usm = pool.exchange(t((2, 3, 1, 1)), t((2, 3, 4, 4)), t((2, 3, 4, 4)), generator=g)
        assert torch.equal(lq[:, 0, 0, 0], gt[:, 0, 0, 0]) and torch.equal(gt, usm)


def test_describe_and_contact_sheet(gt):
    lq, params = degrade(gt, DegradeConfig(), _gen(14))
    lines = describe(params[0])
    assert len(lines) == 5 and lines[0].startswith("1: ") and "final:" in lines[-1]
    assert all(line.isascii() for line in lines)
    hr = gt[0].permute(1, 2, 0).numpy()
    sheet = contact_sheet(hr, [lq[i].permute(1, 2, 0).numpy() for i in range(3)], params, 4, columns=2)
    assert sheet.ndim == 3 and sheet.shape[2] == 3 and sheet.shape[1] > 2 * 96 and sheet.dtype.name == "float32"
    # a tiny crop: each cell as wide as its captions, so they do not run into the next column's
    tiny = contact_sheet(hr[:16, :16], [lq[i, :, :4, :4].permute(1, 2, 0).numpy() for i in range(3)], params, 4, columns=2)
    from PIL import Image, ImageDraw

    from esrcli.degrade.sheet import _font

    widest = max(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(line, font=_font(11)) for p in params for line in describe(p))
    assert tiny.shape[1] >= 2 * widest
