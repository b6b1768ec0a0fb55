"""Generators, discriminators and the VGG19 feature extractor: shapes, key layouts, numerics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from esrcli.archs import (
    RRDBNet,
    SRVGGNetCompact,
    UNetDiscriminatorSN,
    VGG19FeatureExtractor,
    VGGStyleDiscriminator,
    build_generator,
    generator_defaults,
    load_vgg19_weights,
    vgg19_cache_path,
)
from esrcli.errors import WeightsError


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks run fastest (and steadiest on a loaded 2-core machine) on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SMALL_RRDB = dict(num_feat=8, num_block=2, num_grow_ch=4)


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_rrdbnet_shapes(scale):
    net = RRDBNet(3, 3, scale=scale, **SMALL_RRDB)
    y = net(torch.rand(2, 3, 8, 12))
    assert y.shape == (2, 3, 8 * scale, 12 * scale)
    # Real-ESRGAN front end: conv_first sees the pixel-unshuffled input.
    assert net.conv_first.in_channels == 3 * {4: 1, 2: 4, 1: 16}[scale]


def test_pixel_unshuffle_matches_basicsr_layout():
    # BasicSR's pixel_unshuffle: view (b, c, h, s, w, s), permute to (b, c, s, s, h, w).
    x = torch.rand(2, 3, 8, 12)
    for s in (2, 4):
        ref = x.view(2, 3, 8 // s, s, 12 // s, s).permute(0, 1, 3, 5, 2, 4).reshape(2, 3 * s * s, 8 // s, 12 // s)
        assert torch.equal(F.pixel_unshuffle(x, s), ref)


def test_rrdbnet_official_keys():
    sd = RRDBNet().state_dict()
    assert len([k for k in sd if k.endswith(".weight")]) == 23 * 15 + 6
    keys = ("conv_first.weight", "body.22.rdb3.conv5.bias", "conv_body.weight", "conv_up1.bias",
            "conv_up2.weight", "conv_hr.weight", "conv_last.bias")
    for key in keys:
        assert key in sd
    assert sd["body.0.rdb1.conv5.weight"].shape == (64, 64 + 4 * 32, 3, 3)
    assert sum(t.numel() for t in sd.values()) == 16_697_987  # RealESRGAN_x4plus.pth


def _reference_rdb(rdb, x):
    """Dense block written out by hand from the ESRGAN paper."""
    feats = [x]
    for i, conv in enumerate([rdb.conv1, rdb.conv2, rdb.conv3, rdb.conv4, rdb.conv5]):
        out = conv(torch.cat(feats, 1))
        if i < 4:
            out = F.leaky_relu(out, 0.2)
        feats.append(out)
    return feats[-1] * 0.2 + x


def test_rrdbnet_matches_hand_written_forward():
    torch.manual_seed(0)
    net = RRDBNet(3, 3, scale=2, **SMALL_RRDB).eval()
    x = torch.rand(1, 3, 8, 8)
    feat = net.conv_first(F.pixel_unshuffle(x, 2))
    body = feat
    for rrdb in net.body:
        h = body
        for rdb in (rrdb.rdb1, rrdb.rdb2, rrdb.rdb3):
            h = _reference_rdb(rdb, h)
        body = h * 0.2 + body
    feat = feat + net.conv_body(body)
    feat = F.leaky_relu(net.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
    feat = F.leaky_relu(net.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
    ref = net.conv_last(F.leaky_relu(net.conv_hr(feat), 0.2))
    out = net(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    # The in-place activations/scaling must not break autograd: same gradients as the reference.
    ref.square().mean().backward()
    ref_grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    out.square().mean().backward()
    for g, p in zip(ref_grads, net.parameters()):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-7)


def test_rrdbnet_bad_scale():
    with pytest.raises(ValueError, match="scale"):
        RRDBNet(scale=3)


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
@pytest.mark.parametrize("act_type", ["relu", "prelu", "leakyrelu"])
def test_srvgg_shapes(scale, act_type):
    net = SRVGGNetCompact(num_feat=8, num_conv=2, scale=scale, act_type=act_type)
    y = net(torch.rand(1, 3, 6, 7))
    assert y.shape == (1, 3, 6 * scale, 7 * scale)


def test_srvgg_official_keys_and_residual():
    sd = SRVGGNetCompact(num_feat=64, num_conv=32, scale=4, act_type="prelu").state_dict()
    # realesr-general-x4v3 layout: convs at even indices 0..66, PReLU (64,) at odd indices.
    assert sd["body.66.weight"].shape == (48, 64, 3, 3)
    assert sd["body.1.weight"].shape == (64,)
    assert "body.67.weight" not in sd
    relu = SRVGGNetCompact(num_feat=8, num_conv=2, scale=2, act_type="relu")
    assert sorted(relu.state_dict()) == sorted(f"body.{i}.{p}" for i in (0, 2, 4, 6) for p in ("weight", "bias"))
    # With a zero body the output is the nearest-upsampled input.
    for p in relu.parameters():
        torch.nn.init.zeros_(p)
    x = torch.rand(1, 3, 5, 5)
    torch.testing.assert_close(relu(x), F.interpolate(x, scale_factor=2, mode="nearest"))


def test_srvgg_bad_act():
    with pytest.raises(ValueError, match="act_type"):
        SRVGGNetCompact(act_type="gelu")


def test_srvgg_bilinear_residual():
    net = SRVGGNetCompact(num_feat=8, num_conv=2, scale=4, act_type="prelu", upsample="bilinear")
    assert sorted(net.state_dict()) == sorted(SRVGGNetCompact(num_feat=8, num_conv=2, scale=4).state_dict())
    for p in net.body[-1].parameters():
        torch.nn.init.zeros_(p)
    x = torch.rand(1, 3, 6, 5)
    smooth = F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)
    torch.testing.assert_close(net(x), smooth)
    assert (smooth - F.interpolate(x, scale_factor=4, mode="nearest")).abs().max() > 0.05  # control
    # CPU inference on channels_last (the fused nearest path elsewhere) keeps the bilinear residual.
    low = net.eval().to(memory_format=torch.channels_last)
    with torch.inference_mode():
        torch.testing.assert_close(low(x.contiguous(memory_format=torch.channels_last)), smooth)
    with pytest.raises(ValueError, match="upsample"):
        SRVGGNetCompact(upsample="bicubic")


def test_unet_discriminator_shapes_and_keys():
    d = UNetDiscriminatorSN(3, num_feat=8)
    assert d(torch.rand(2, 3, 32, 24)).shape == (2, 1, 32, 24)
    sd = d.state_dict()
    for i in range(1, 9):
        assert {f"conv{i}.weight_orig", f"conv{i}.weight_u", f"conv{i}.weight_v"} <= set(sd)
        assert f"conv{i}.bias" not in sd
    assert {"conv0.weight", "conv0.bias", "conv9.weight", "conv9.bias"} <= set(sd)
    # Strict round trip, as an official net_d file would load.
    d2 = UNetDiscriminatorSN(3, num_feat=8)
    d2.load_state_dict(sd, strict=True)
    nos = UNetDiscriminatorSN(3, num_feat=8, skip_connection=False)
    assert nos(torch.rand(1, 3, 16, 16)).shape == (1, 1, 16, 16)


@pytest.mark.parametrize("size", [128, 256])
def test_vgg_style_discriminator(size):
    d = VGGStyleDiscriminator(3, num_feat=4, input_size=size)
    assert d(torch.rand(2, 3, size, size)).shape == (2, 1)
    sd = d.state_dict()
    assert {"conv0_0.bias", "bn0_1.running_mean", "conv4_1.weight", "linear1.weight", "linear2.bias"} <= set(sd)
    assert ("conv5_0.weight" in sd) == (size == 256)
    assert "conv0_1.bias" not in sd
    with pytest.raises(ValueError, match="expected"):
        d(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="input_size"):
        VGGStyleDiscriminator(input_size=64)


def test_build_generator():
    net = build_generator("RRDBNet", {"scale": 2, **SMALL_RRDB})
    assert isinstance(net, RRDBNet) and net.scale == 2
    net = build_generator("SRVGGNetCompact", {"num_feat": 4, "num_conv": 1, "scale": 3})
    assert isinstance(net, SRVGGNetCompact) and net.scale == 3
    assert generator_defaults("RRDBNet")["num_block"] == 23
    with pytest.raises(WeightsError, match="unknown generator architecture"):
        build_generator("EDSR", {})
    with pytest.raises(WeightsError, match="num_blocks"):
        build_generator("RRDBNet", {"num_blocks": 3})
    with pytest.raises(WeightsError, match="scale"):
        build_generator("RRDBNet", {"scale": 8})


# --------------------------------------------------------------------------- VGG19

_VGG_CONVS = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
_VGG_CH = [64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512]


def _torchvision_vgg19_state(gen: torch.Generator) -> dict[str, torch.Tensor]:
    """A state dict with torchvision vgg19's keys and feature shapes (small classifier)."""
    sd, cin = {}, 3
    for idx, cout in zip(_VGG_CONVS, _VGG_CH):
        sd[f"features.{idx}.weight"] = torch.randn(cout, cin, 3, 3, generator=gen) * (2 / (9 * cin)) ** 0.5
        sd[f"features.{idx}.bias"] = torch.randn(cout, generator=gen) * 0.1
        cin = cout
    # The real classifier is 4096-wide; only its presence matters (it must be ignored).
    for i, (o, n) in {0: (8, 16), 3: (8, 8), 6: (4, 8)}.items():
        sd[f"classifier.{i}.weight"] = torch.randn(o, n, generator=gen)
        sd[f"classifier.{i}.bias"] = torch.randn(o, generator=gen)
    return sd


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vgg") / "vgg19-dcbb9e9d.pth"
    sd = _torchvision_vgg19_state(torch.Generator().manual_seed(0))
    torch.save(sd, path)
    return path, sd


def test_vgg19_layout_and_pre_activation_features(vgg_file):
    path, sd = vgg_file
    vgg = VGG19FeatureExtractor()
    assert len(vgg.features) == 35  # truncated after conv5_4 (index 34)
    assert not any(p.requires_grad for p in vgg.parameters())
    assert set(vgg.state_dict()) == {k for k in sd if k.startswith("features.")}  # mean/std not persistent
    load_vgg19_weights(vgg, path)
    torch.testing.assert_close(vgg.features[34].weight, sd["features.34.weight"])

    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    feats = vgg(x)
    assert list(feats) == ["conv1_2", "conv2_2", "conv3_4", "conv4_4", "conv5_4"]
    assert feats["conv5_4"].shape == (1, 512, 2, 2)
    # By hand: normalise, conv1_1, ReLU, conv1_2 (no ReLU after it).
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    h = F.relu(F.conv2d((x - mean) / std, sd["features.0.weight"], sd["features.0.bias"], padding=1))
    ref = F.conv2d(h, sd["features.2.weight"], sd["features.2.bias"], padding=1)
    torch.testing.assert_close(feats["conv1_2"], ref, rtol=1e-4, atol=1e-4)
    assert (feats["conv1_2"] < 0).any()  # pre-activation, not clobbered by an in-place ReLU
    # Gradients reach the input although the network is frozen.
    feats["conv5_4"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_vgg19_truncation_range_norm(vgg_file):
    path, sd = vgg_file
    vgg = VGG19FeatureExtractor(layer_names=("conv2_2",), use_input_norm=False, range_norm=True)
    assert len(vgg.features) == 8
    load_vgg19_weights(vgg, path)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    out = vgg(x)["conv2_2"]
    h = (x + 1) / 2
    for i in (0, 2):
        h = F.conv2d(h, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"], padding=1)
        h = F.relu(h) if i == 0 else F.max_pool2d(F.relu(h), 2)
    for i in (5, 7):
        h = F.conv2d(h, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"], padding=1)
        if i == 5:
            h = F.relu(h)
    torch.testing.assert_close(out, h, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="conv9_9"):
        VGG19FeatureExtractor(layer_names=("conv9_9",))


def test_vgg19_weight_errors(tmp_path, vgg_file):
    path, sd = vgg_file
    vgg = VGG19FeatureExtractor(layer_names=("conv1_2",))
    missing = tmp_path / "nope.pth"
    with pytest.raises(WeightsError, match="nope.pth: VGG19 weights not found") as info:
        load_vgg19_weights(vgg, missing)
    assert "vgg19-dcbb9e9d.pth" in (info.value.hint or "")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(WeightsError, match="corrupt.pth: not a readable"):
        load_vgg19_weights(vgg, corrupt)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(WeightsError, match="empty.pth"):
        load_vgg19_weights(vgg, empty)
    bad = dict(sd)
    bad["features.2.weight"] = torch.zeros(64, 64, 5, 5)
    wrong = tmp_path / "wrong.pth"
    torch.save(bad, wrong)
    with pytest.raises(WeightsError, match=r"wrong.pth: features.2.weight has shape \(64, 64, 5, 5\)"):
        load_vgg19_weights(vgg, wrong)
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(WeightsError, match="other.pth: not a VGG19 weights file"):
        load_vgg19_weights(vgg, other)


def test_vgg19_cache_path():
    p = vgg19_cache_path()
    assert p.name == "vgg19-dcbb9e9d.pth"
    assert p.parent.name == "checkpoints"
    assert str(p.parent.parent) == torch.hub.get_dir()


def test_rrdbnet_inference_tail_in_strips_is_exact(monkeypatch):
    """Without autograd the x4 tail runs in strips (memory bound); the result must not change."""
    from esrcli.archs import RRDBNet

    torch.manual_seed(0)
    net = RRDBNet(3, 3, scale=4, num_feat=8, num_block=1, num_grow_ch=4).eval()
    x = torch.rand(1, 3, 37, 29)
    with torch.no_grad():
        whole = net(x)
        # At most 13 trunk rows a strip, halo included: 9 rows + 2 x 2 halo rows.
        monkeypatch.setattr(RRDBNet, "_TAIL_STRIP_ELEMENTS", 8 * 29 * 16 * 13)
        strips = net(x)
        calls = []
        real_tail = RRDBNet._tail
        monkeypatch.setattr(RRDBNet, "_tail", lambda self, f: calls.append(f.shape[2]) or real_tail(self, f))
        net(x)
    assert calls == [10, 12, 12, 12, 7]  # 37 rows in 5 equal strips of 8 (+ halo, clipped at the borders)
    assert strips.shape == whole.shape == (1, 3, 148, 116)
    # Same arithmetic up to the conv kernels' summation order for other shapes.
    assert (strips - whole).abs().max() < 1e-6
    monkeypatch.setattr(RRDBNet, "_TAIL_HALO", 0)  # control: without context the seams show
    with torch.no_grad():
        assert (net(x) - whole).abs().max() > 1e-4


def test_srvgg_fresh_network_is_trainable():
    """A fresh 64/32 compact net passes signal and gradient through all 33 layers.

    With PyTorch's default conv init the body output and the first layer's gradient vanish
    (~1e-10 and below), and training never leaves nearest-neighbour upsampling.
    """
    from esrcli.archs import SRVGGNetCompact

    torch.manual_seed(0)
    net = SRVGGNetCompact(num_feat=64, num_conv=32, scale=4, act_type="prelu")
    x = torch.rand(2, 3, 24, 24)
    body = x
    for layer in net.body:
        body = layer(body)
    assert 1e-3 < float(body.detach().std()) < 1.0  # the residual is alive but starts small
    loss = (net(x) - torch.rand(2, 3, 96, 96)).abs().mean()
    loss.backward()
    assert float(net.body[0].weight.grad.abs().mean()) > 1e-5
    assert float(net.body[1].weight.grad.abs().mean()) > 1e-7  # first PReLU slopes get a gradient


def test_rrdbnet_dense_blocks_use_esrgan_smaller_initialization():
    """ESRGAN Sec. 3.2 / BasicSR: Kaiming-normal x 0.1 in every dense-block conv, zero bias;
    the other convs keep PyTorch's default (uniform, biases non-zero)."""
    torch.manual_seed(0)
    net = RRDBNet(num_feat=64, num_block=2, num_grow_ch=32)
    for name, conv in net.named_modules():
        if ".rdb" not in name or not isinstance(conv, torch.nn.Conv2d):
            continue
        fan_in = conv.weight[0].numel()
        expected = 0.1 * (2.0 / fan_in) ** 0.5
        assert abs(float(conv.weight.detach().std()) / expected - 1) < 0.05, name
        assert float(conv.bias.detach().abs().max()) == 0.0, name
    # Default init elsewhere: uniform within 1/sqrt(fan_in), so its std is 1/sqrt(3 fan_in).
    fan_in = 64 * 9
    assert abs(float(net.conv_body.weight.detach().std()) * (3 * fan_in) ** 0.5 - 1) < 0.05
    assert float(net.conv_body.bias.detach().abs().max()) > 0
    # Each fresh dense block starts close to the identity (changes its input by about 1%).
    x = torch.randn(1, 64, 16, 16)
    with torch.no_grad():
        y = net.body[0].rdb1(x)
    assert float((y - x).std() / x.std()) < 0.05


@pytest.mark.parametrize("arch", ["RRDBNet", "SRVGGNetCompact"])
def test_generators_build_on_the_meta_device_without_initialising(arch):
    """``check_state_dict`` and ``load_model`` build on ``meta``; the custom inits skip it."""
    params = {"num_block": 1} if arch == "RRDBNet" else {"num_conv": 2}
    with torch.device("meta"):
        net = build_generator(arch, params)
    assert all(p.is_meta for p in net.parameters())
    assert sorted(net.state_dict()) == sorted(build_generator(arch, params).state_dict())


@pytest.mark.parametrize("num_parameters", [1, 8])
@pytest.mark.parametrize("channels_last", [False, True])
def test_srvgg_prelu_backward_matches_aten(num_parameters, channels_last):
    """The compact net's PReLU (own backward, for CPU speed) gives ATen's values and grads."""
    from esrcli.archs.srvgg import _PReLU

    torch.manual_seed(0)
    ours = _PReLU(num_parameters)
    ref = torch.nn.PReLU(num_parameters)
    with torch.no_grad():
        ours.weight.uniform_(-0.5, 0.5)
        ref.weight.copy_(ours.weight)
    x = torch.randn(3, 8, 5, 7)
    x[0, 0, 0, :3] = 0.0  # the kink: both give the slope's side (x > 0 is the identity side)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    g = torch.randn(3, 8, 5, 7)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = ours(x1), ref(x2)
    y1.backward(g)
    y2.backward(g)
    assert torch.equal(y1, y2)
    assert torch.allclose(x1.grad, x2.grad, atol=1e-6)
    assert torch.allclose(ours.weight.grad, ref.weight.grad, rtol=1e-5, atol=1e-5)
    assert ours.weight.grad.dtype == torch.float32
    # Under bf16 autocast (the CPU training path) the parameter grad stays fp32 and close.
    ours.weight.grad = None
    x3 = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y3 = ours(x3.to(torch.bfloat16))
    assert y3.dtype == torch.bfloat16
    y3.float().backward(g)
    assert ours.weight.grad.dtype == torch.float32
    assert torch.allclose(ours.weight.grad, ref.weight.grad, rtol=0.05, atol=0.05)
    assert torch.allclose(x3.grad, x2.grad, atol=0.05)
    # No autograd: plain F.prelu, same values.
    with torch.no_grad():
        assert torch.equal(ours(x), ref(x))


def _prelu_grads(layer, x, g, dtype=None):
    xr = x.clone().requires_grad_()
    layer.weight.grad = None
    if dtype is None:
        y = layer(xr)
    else:
        with torch.autocast("cpu", dtype=dtype):
            y = layer(xr.to(dtype))
    y.float().backward(g)
    return y.detach().float(), xr.grad, layer.weight.grad.clone()


@pytest.mark.parametrize("channels_last", [False, True])
def test_srvgg_compiled_prelu_backward_matches_eager(monkeypatch, channels_last):
    """``use_compiled_prelu_backward``: one compiled kernel for both PReLU gradients, same
    values as the eager backward (fp32 and under bf16 autocast)."""
    from esrcli.archs import srvgg

    if srvgg.compiled_prelu_backward_error() is not None:
        pytest.skip(f"torch.compile unavailable here: {srvgg.compiled_prelu_backward_error()}")
    torch.manual_seed(0)
    net = SRVGGNetCompact(3, 3, num_feat=8, num_conv=1, scale=2)
    layer = net.body[1]
    with torch.no_grad():
        layer.weight.uniform_(-0.5, 0.5)
    x = torch.randn(2, 8, 6, 5)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    g = torch.randn(2, 8, 6, 5)
    calls = []
    real = srvgg._COMPILED_PRELU_GRADS

    def spy(*args):
        out = real(*args)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(srvgg, "_COMPILED_PRELU_GRADS", spy)
    eager = _prelu_grads(layer, x, g), _prelu_grads(layer, x, g, torch.bfloat16)
    assert not calls
    net.use_compiled_prelu_backward()
    fused = _prelu_grads(layer, x, g), _prelu_grads(layer, x, g, torch.bfloat16)
    if real.error is not None:
        pytest.skip(f"torch.compile unavailable here: {real.error}")
    assert calls == [True, True]  # the compiled kernel ran
    for (ye, gxe, gwe), (yf, gxf, gwf), tol in zip(eager, fused, (1e-5, 0.02)):
        assert torch.equal(ye, yf)
        assert torch.allclose(gxe, gxf, atol=tol) and torch.allclose(gwe, gwf, rtol=tol, atol=tol)
        assert gwf.dtype == torch.float32
    net.use_compiled_prelu_backward(False)
    assert not layer.compiled_backward


def test_srvgg_compiled_prelu_backward_falls_back_when_compiling_fails(monkeypatch):
    from esrcli.archs import srvgg

    def broken(fn):
        raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found\nsecond line")

    grads = srvgg._CompiledPReLUGrads()
    monkeypatch.setattr(srvgg, "_COMPILED_PRELU_GRADS", grads)
    monkeypatch.setattr(srvgg.torch, "compile", broken)
    torch.manual_seed(0)
    net = SRVGGNetCompact(3, 3, num_feat=8, num_conv=1, scale=2)
    x, g = torch.randn(2, 8, 6, 5), torch.randn(2, 8, 6, 5)
    eager = _prelu_grads(net.body[1], x, g)
    net.use_compiled_prelu_backward()
    fallback = _prelu_grads(net.body[1], x, g)
    assert srvgg.compiled_prelu_backward_error() == "RuntimeError: InvalidCxxCompiler: no working C++ compiler found"
    for a, b in zip(eager, fallback):
        assert torch.equal(a, b)


needs_fused = pytest.mark.skipif(
    __import__("esrcli.archs._onednn", fromlist=["fused_conv_ops"]).fused_conv_ops() is None,
    reason="this torch build has no oneDNN fused convolutions",
)


@needs_fused
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rrdbnet_fused_inference_equals_concatenating_forward(dtype):
    """CPU inference on channels_last input sums per-input convolutions instead of
    concatenating (oneDNN's in-place sum); it must compute the same function."""
    torch.manual_seed(0)
    net = RRDBNet(3, 3, scale=4, num_feat=16, num_block=2, num_grow_ch=16).eval()
    for p in net.parameters():  # weights large enough for the trunk to matter
        p.data.normal_(0, 0.1)
    x = torch.rand(2, 3, 20, 24)
    with torch.enable_grad():  # autograd on: the concatenating forward, in float32 NCHW
        ref = net(x).detach()
    low = net.to(dtype=dtype, memory_format=torch.channels_last)
    rdb = low.body[0].rdb1
    assert rdb._split_key is None
    with torch.inference_mode():
        out = low(x.to(dtype).contiguous(memory_format=torch.channels_last)).float()
    assert rdb._split_key is not None  # the fused path ran
    assert low._subpixel_key is not None  # and the sub-pixel upsampling convs
    assert [len(p) for p in rdb._split] == [1, 2, 3, 4, 5]
    assert rdb._split[4][0].shape == (16, 16, 3, 3) and rdb._split[4][4].shape == (16, 16, 3, 3)
    err = (out - ref).abs().max().item()
    assert err < (1e-4 if dtype == torch.float32 else 0.05 * ref.abs().max().item())
    if dtype == torch.bfloat16:
        mse = ((out.clamp(0, 1) - ref.clamp(0, 1)) ** 2).mean().item()
        assert 10 * torch.log10(torch.tensor(1 / mse)).item() > 40
    # The cut weights follow the module's weights: load others, get their result.
    other = RRDBNet(3, 3, scale=4, num_feat=16, num_block=2, num_grow_ch=16)
    for p in other.parameters():
        p.data.normal_(0, 0.1)
    with torch.enable_grad():
        ref2 = other(x).detach()
    low = low.float()
    low.load_state_dict(other.state_dict())
    with torch.inference_mode():
        out2 = low(x.contiguous(memory_format=torch.channels_last))
    assert (out2 - ref2).abs().max() < 1e-4
    assert (ref2 - ref).abs().max() > 0.1  # the control: the two networks differ


@needs_fused
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rrdbnet_subpixel_upsampling_conv_equals_upsample_then_conv(dtype):
    """The inference tail's 2x2 phase convolutions compute leaky_relu(conv(nearest_x2(f)))
    on the original pixels: same values on every phase and at every border."""
    import torch.nn.functional as F

    from esrcli.archs.rrdbnet import _conv_lrelu

    torch.manual_seed(1)
    net = RRDBNet(3, 3, scale=4, num_feat=8, num_block=0, num_grow_ch=4).eval()
    for p in net.parameters():
        p.data.normal_(0, 0.3)
    net = net.to(dtype=dtype, memory_format=torch.channels_last)
    feat = torch.randn(2, 8, 7, 5).to(dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        ref = _conv_lrelu(net.conv_up1, F.interpolate(feat, scale_factor=2, mode="nearest")).float()
        out = net._up_conv_lrelu("conv_up1", feat)
    assert out.shape == (2, 8, 14, 10) and out.is_contiguous(memory_format=torch.channels_last)
    tol = 1e-5 if dtype == torch.float32 else 0.02 * ref.abs().max().item()
    assert (out.float() - ref).abs().max().item() < tol
    # Controls: a phase taken from the wrong offset, or the rows of one phase, differ.
    assert (out.float()[:, :, 1::2] - ref[:, :, 0::2]).abs().max().item() > 0.1
    with torch.no_grad():  # new weights: the cached phase weights follow
        net.conv_up1.weight.mul_(-1)
    with torch.inference_mode():
        assert (net._up_conv_lrelu("conv_up1", feat).float() - ref).abs().max().item() > 0.1


@needs_fused
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels,scale", [(3, 4), (1, 2), (3, 3)])
def test_srvgg_fused_residual_equals_plain_forward(dtype, channels, scale):
    """CPU inference on channels_last input adds the global residual inside the last conv
    (before the PixelShuffle); the output must equal the upsample-and-add forward."""
    import esrcli.archs.srvgg as srvgg

    torch.manual_seed(2)
    net = SRVGGNetCompact(channels, channels, num_feat=8, num_conv=2, scale=scale).eval()
    for p in net.body[-1].parameters():
        p.data.normal_(0, 0.2)
    x = torch.rand(2, channels, 9, 7)
    with torch.no_grad():
        ref = net(x)  # NCHW: the plain path
    low = net.to(dtype=dtype, memory_format=torch.channels_last)
    xl = x.to(dtype).contiguous(memory_format=torch.channels_last)
    calls = []
    real = srvgg.SRVGGNetCompact._last_conv_with_residual
    srvgg.SRVGGNetCompact._last_conv_with_residual = lambda self, a, f: calls.append(1) or real(self, a, f)
    try:
        with torch.inference_mode():
            out = low(xl).float()
    finally:
        srvgg.SRVGGNetCompact._last_conv_with_residual = real
    assert calls == [1]
    assert out.shape == ref.shape == (2, channels, 9 * scale, 7 * scale)
    with torch.inference_mode():  # same dtype, NCHW input: the plain path
        plain = low(x.to(dtype)).float()
    assert (out - plain).abs().max().item() < (1e-5 if dtype == torch.float32 else 0.02)  # 2 bf16 steps at 2
    assert (out - ref).abs().max().item() < (1e-5 if dtype == torch.float32 else 0.05)
    assert (ref - torch.nn.functional.interpolate(x, scale_factor=scale)).abs().max() > 0.1  # control


@needs_fused
def test_rrdbnet_fused_path_only_for_cpu_inference_on_channels_last():
    from esrcli.archs._onednn import fused_path as _fused_path

    w = torch.zeros(4, 4, 3, 3)
    cl = torch.rand(1, 4, 5, 5).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert _fused_path(cl, w)
        assert not _fused_path(cl.contiguous(), w)  # NCHW: the plain path
        assert not _fused_path(cl.half(), w.half())
        assert not _fused_path(cl.bfloat16(), w)  # dtype mismatch
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not _fused_path(cl, w)
    assert not _fused_path(cl, w)  # autograd records: the plain path


def test_srvgg_under_torch_compile_matches_eager():
    """train.compile traces the compact net's PReLU backward (the fused formulation when
    compiling): outputs and every gradient match the eager network's."""
    torch.manual_seed(0)
    net = SRVGGNetCompact(3, 3, num_feat=8, num_conv=2, scale=2)
    with torch.no_grad():
        for layer in net.body:
            if isinstance(layer, torch.nn.PReLU):
                layer.weight.uniform_(-0.3, 0.5)
    x = torch.rand(2, 3, 12, 10)

    def grads(fn):
        net.zero_grad()
        out = fn(x)
        out.square().mean().backward()
        return out.detach(), [p.grad.clone() for p in net.parameters()]

    ref_out, ref_grads = grads(net)
    try:
        out, got = grads(torch.compile(net))
    except Exception as exc:  # noqa: BLE001 - no C++ compiler or an unsupported platform
        pytest.skip(f"torch.compile unavailable here: {type(exc).__name__}")
    assert torch.allclose(out, ref_out, atol=1e-5)
    assert len(got) == len(ref_grads)
    for a, b in zip(got, ref_grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_discriminators_return_their_features():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    d = UNetDiscriminatorSN(3, num_feat=4).eval()
    out, feats = d(x, return_features=True)
    assert torch.equal(out, d(x)) and len(feats) == 9
    assert [f.shape[1] for f in feats] == [4, 8, 16, 32, 16, 8, 4, 4, 4] and feats[-1].shape[-2:] == (32, 32)
    v = VGGStyleDiscriminator(3, num_feat=4, input_size=128).eval()
    x = torch.rand(2, 3, 128, 128)
    out, feats = v(x, return_features=True)
    assert torch.equal(out, v(x)) and len(feats) == 2 + 2 * v.num_stages + 1 and feats[-1].shape == (2, 100)
