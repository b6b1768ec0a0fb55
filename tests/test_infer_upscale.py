"""esrcli.infer.upscale / device: alpha without fringes, gray, 16-bit, output scale, precision."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from esrcli.archs import RRDBNet, SRVGGNetCompact
from esrcli.data.imageio import Image, read_image, to_tensor, write_image
from esrcli.errors import ConfigError, WeightsError
from esrcli.infer import UpscaleOptions, fill_transparent, select_device, select_precision, upscale_image
from esrcli.infer import device as device_mod
from esrcli.infer.upscale import output_size

INFO4 = SimpleNamespace(arch="Test", scale=4, params={"num_in_ch": 3, "num_out_ch": 3})


class BlurUp(nn.Module):
    """5x5 box blur then bilinear xscale: mixes neighbouring colours like a real SR net."""

    def __init__(self, scale: int = 4) -> None:
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv2d(3, 3, 5, padding=2, padding_mode="replicate", groups=3, bias=False)
        self.conv.weight.data.fill_(1 / 25)

    def forward(self, x):
        return F.interpolate(self.conv(x), scale_factor=self.scale, mode="bilinear", align_corners=False)


def identity_srvgg(scale: int) -> SRVGGNetCompact:
    """SRVGGNetCompact with a zero last conv: output = nearest upsampling of the input (exact)."""
    net = SRVGGNetCompact(num_feat=4, num_conv=1, scale=scale)
    nn.init.zeros_(net.body[-1].weight)
    nn.init.zeros_(net.body[-1].bias)
    return net.eval()


def _info(scale: int, arch: str = "SRVGGNetCompact") -> SimpleNamespace:
    return SimpleNamespace(arch=arch, scale=scale, params={"num_in_ch": 3, "num_out_ch": 3, "scale": scale})


def red_disc(size: int = 48, radius: float = 15.0) -> Image:
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    r = np.hypot(yy - size / 2 + 0.5, xx - size / 2 + 0.5)
    alpha = np.clip(radius + 0.5 - r, 0, 1).astype(np.float32)  # anti-aliased edge
    color = np.zeros((size, size, 3), np.float32)
    color[alpha > 0] = (1.0, 0.0, 0.0)  # black under the transparent background
    return Image(color, alpha, 8)


@pytest.mark.parametrize("alpha_mode", ["network", "bicubic"])
def test_transparent_background_does_not_bleed_into_edges(alpha_mode):
    img = red_disc()
    out = upscale_image(img, BlurUp().eval(), INFO4, UpscaleOptions(alpha=alpha_mode))
    assert out.color.shape == (192, 192, 3) and out.alpha.shape == (192, 192)
    visible = out.alpha > 0.02
    assert visible.sum() > 2000
    red, gb = out.color[..., 0][visible], out.color[..., 1:][visible]
    assert red.min() > 0.97 and gb.max() < 0.03  # no dark or coloured fringe
    # Control: the same network on the unfilled colour does darken the edge.
    with torch.inference_mode():
        naive = BlurUp()(to_tensor(img.color))[0].permute(1, 2, 0).numpy()
    assert naive[..., 0][visible].min() < 0.8


def test_fill_transparent_keeps_visible_pixels_and_fills_hidden_from_neighbours():
    color = np.zeros((20, 30, 3), np.float32)
    alpha = np.zeros((20, 30), np.float32)
    color[:, :10] = (0.2, 0.4, 0.6)
    alpha[:, :10] = 1
    color[:, 10:] = (0.9, 0.0, 0.9)  # hidden garbage
    alpha[5, 5] = 0.5
    filled = fill_transparent(color, alpha)
    np.testing.assert_array_equal(filled[:, :10], color[:, :10])
    np.testing.assert_allclose(filled[:, 10:], np.broadcast_to([0.2, 0.4, 0.6], (20, 20, 3)), atol=1e-5)
    assert fill_transparent(color, np.ones((20, 30), np.float32)) is not color  # a copy
    np.testing.assert_array_equal(fill_transparent(color, np.zeros((20, 30), np.float32)), color)


def test_gray_in_gray_out_and_opaque_alpha_kept():
    gray = np.random.default_rng(0).random((10, 12, 1), dtype=np.float32)
    out = upscale_image(Image(gray, None, 8), identity_srvgg(4), _info(4))
    assert out.is_gray and out.color.shape == (40, 48, 1)
    np.testing.assert_allclose(out.color[::4, ::4], gray, atol=1e-5)
    rgba = Image(np.repeat(gray, 3, axis=2), np.ones((10, 12), np.float32), 16)
    out2 = upscale_image(rgba, identity_srvgg(4), _info(4))
    assert out2.alpha is not None and (out2.alpha == 1).all() and out2.bit_depth == 16


def test_16bit_gradient_keeps_more_than_256_levels(tmp_path):
    ramp = np.linspace(0.1, 0.9, 3000, dtype=np.float32)[None, :, None].repeat(4, axis=0)
    img = Image(np.repeat(ramp, 3, axis=2), None, 16)
    out = upscale_image(img, identity_srvgg(1), _info(1), UpscaleOptions(tile=256, tile_overlap=32))
    write_image(tmp_path / "r.png", out)
    back = read_image(tmp_path / "r.png")
    assert back.bit_depth == 16
    assert len(np.unique(back.color[..., 0])) > 2000
    np.testing.assert_allclose(back.color, img.color, atol=1 / 65535)


@pytest.mark.parametrize("outscale,expected", [(3.0, (30, 36)), (2.5, (25, 30)), (0.5, (5, 6)), (4.0, (40, 48)), (None, (40, 48))])
def test_outscale_gives_the_requested_size(outscale, expected):
    img = Image(np.random.default_rng(1).random((10, 12, 3), dtype=np.float32), np.ones((10, 12), np.float32) * 0.5)
    out = upscale_image(img, identity_srvgg(4), _info(4), UpscaleOptions(outscale=outscale))
    assert out.size == expected and out.alpha.shape == expected
    assert out.color.min() >= 0 and out.color.max() <= 1
    assert output_size(10, 12, 4, outscale) == expected


def test_rrdbnet_x2_odd_sizes_are_padded_and_cropped():
    torch.manual_seed(0)
    net = RRDBNet(scale=2, num_feat=8, num_block=1, num_grow_ch=4).eval()
    img = Image(np.random.default_rng(2).random((13, 17, 3), dtype=np.float32))
    out = upscale_image(img, net, _info(2, "RRDBNet"), UpscaleOptions(tile=8, tile_overlap=2))
    assert out.size == (26, 34)


def test_model_with_unusable_channels_is_refused():
    info = SimpleNamespace(arch="RRDBNet", scale=4, params={"num_in_ch": 4, "num_out_ch": 4})
    with pytest.raises(WeightsError, match="4 input"):
        upscale_image(Image(np.zeros((4, 4, 3), np.float32)), BlurUp(), info)


@pytest.mark.parametrize(
    "kwargs,field",
    [({"outscale": 0.0}, "outscale"), ({"tile": -1}, "tile"), ({"tile": 32, "tile_overlap": 20}, "tile_overlap"), ({"alpha": "x"}, "alpha"), ({"batch": 0}, "batch")],
)
def test_options_validation(kwargs, field):
    with pytest.raises(ConfigError, match=f"^{field}:"):
        UpscaleOptions(**kwargs)


# ---------------------------------------------------------------- device and precision


def test_select_device():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ConfigError, match="^device:"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda is not available"):
            select_device("cuda:0")


def test_precision_on_cpu(monkeypatch):
    cpu = torch.device("cpu")
    p = select_precision("fp16", cpu)
    assert p.dtype == torch.float32 and "fp16" in p.note  # never fp16 on the CPU
    assert select_precision("fp32", cpu).dtype == torch.float32
    assert select_precision("bf16", cpu).dtype == torch.bfloat16
    with pytest.raises(ConfigError, match="^precision:"):
        select_precision("int8", cpu)
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: False)
    assert select_precision("auto", cpu, identity_srvgg(2)).dtype == torch.float32
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: True)
    assert select_precision("auto", cpu, None).dtype == torch.float32  # no net to probe
    good = select_precision("auto", cpu, identity_srvgg(2), key="identity")
    assert good.dtype == torch.bfloat16 and "probe" in good.note


def test_precision_probe_rejects_inaccurate_bf16(monkeypatch):
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: True)

    class Fragile(nn.Module):
        """Amplifies the input's rounding error: bf16 output is far from fp32."""

        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def forward(self, x):
            return (x * 300 * self.w).frac()

    p = select_precision("auto", torch.device("cpu"), Fragile(), key="fragile")
    assert p.dtype == torch.float32 and "probe" in p.note
    assert device_mod._probe_cache["fragile"] < device_mod.BF16_MIN_PSNR


def test_precision_on_gpu_devices_is_fp16():
    assert select_precision("auto", torch.device("cuda")).dtype == torch.float16
    assert select_precision("bf16", torch.device("cuda")).dtype == torch.bfloat16


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here"))])
def test_prepared_model_is_channels_last_and_matches_fp32(device):
    """CPU and CUDA run channels_last (oneDNN's and cuDNN's fast layouts) in the automatic
    precision; the result matches the plain fp32 NCHW forward."""
    from esrcli.infer import prepare_model, tiled_forward

    torch.manual_seed(0)
    net = RRDBNet(num_feat=16, num_block=2, num_grow_ch=8)
    x = torch.rand(1, 3, 40, 36)
    with torch.no_grad():
        ref = net(x)
    dev = torch.device(device)
    prec = select_precision("auto", dev, net)
    fast = prepare_model(net, dev, prec.dtype)
    assert fast.conv_first.weight.is_contiguous(memory_format=torch.channels_last)
    assert fast.conv_first.weight.dtype == prec.dtype and fast.conv_first.weight.device.type == device
    out = tiled_forward(fast, x, 4, 24, 8)
    assert out.device.type == "cpu" and out.dtype == torch.float32 and out.shape == ref.shape
    mse = float(((out.clamp(0, 1) - ref.clamp(0, 1)) ** 2).mean())
    assert mse < 10 ** (-40 / 10)  # PSNR >= 40 dB in the half-precision dtypes


def test_working_memory_counts_the_full_size_buffers():
    from esrcli.infer.upscale import working_memory

    info = SimpleNamespace(arch="SRVGGNetCompact", scale=4)
    rgb = Image(np.zeros((100, 150, 3), np.float32))
    px = 100 * 150 * 16
    base = working_memory(rgb, info)
    # At least the float32 RGB accumulator of the x4 output and its 8-bit samples.
    assert base >= px * (12 + 3)
    assert base == 21 * px  # and 1.32x the RSS measured for a 3000x2000 photo (see the docstring)
    deep = Image(rgb.color, bit_depth=16)
    assert working_memory(deep, info) == base + 3 * 3 * px  # 16-bit samples: twice the bytes
    rgba = Image(rgb.color, np.full((100, 150), 0.5, np.float32))
    with_alpha_net = working_memory(rgba, info)
    assert with_alpha_net == 40 * px  # a second network pass (12 + 4 gray) and a fourth channel
    assert working_memory(rgba, info, UpscaleOptions(alpha="bicubic")) == with_alpha_net - 16 * px
    # Another output scale adds the resized float32 image: x2 -> a quarter of the pixels.
    assert working_memory(rgb, info, UpscaleOptions(outscale=2)) == 12 * px + (12 + 9) * px // 4


@pytest.mark.parametrize("name", ["realesrgan-x4plus", "esr-general-x4-net"])
def test_auto_precision_holds_on_real_photo_crops(monkeypatch, shared, name):
    """--precision auto keeps each embedded model within BF16_MIN_PSNR dB of fp32 on real photos
    (crops of Real-ESRGAN's demo inputs; the x4plus crop of 00003.png is 43 dB in bf16)."""
    import numpy as np

    from esrcli.data.imageio import read_image
    from esrcli.weights import load_model

    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: True)
    net, _ = load_model(name)
    prec = select_precision("auto", torch.device("cpu"), net, key=f"test-{name}")
    low_params = {k: v.to(prec.dtype) if v.is_floating_point() else v for k, v in net.state_dict().items()}
    for file in ("00003.png", "OST_009.png"):
        img = read_image(shared / "data" / "real" / file).color
        h, w = img.shape[:2]
        crop = np.ascontiguousarray(img[h // 2 - 24 : h // 2 + 24, w // 2 - 24 : w // 2 + 24, :3], dtype=np.float32)
        x = torch.from_numpy(crop).permute(2, 0, 1)[None]
        with torch.inference_mode():
            ref = net(x)
            out = torch.func.functional_call(net, low_params, (x.to(prec.dtype),)).float()
        mse = float(((out.clamp(0, 1) - ref.clamp(0, 1)) ** 2).mean())
        assert mse == 0 or 10 * np.log10(1 / mse) >= device_mod.BF16_MIN_PSNR, (name, file, prec.name)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("ext", "gif", "ext: expected one of"),
        ("quality", 0, "quality: expected an integer 1..100, got 0"),
        ("quality", 95.5, "quality: expected an integer"),
        ("jobs", -1, "jobs: expected an integer >= 0"),
        ("jobs", "2", "jobs: expected an integer"),
        ("memory_share", 0.0, "memory_share: expected a number in (0, 1]"),
        ("memory_share", 1.5, "memory_share"),
        ("overwrite", "yes", "overwrite: expected true or false"),
        ("upscale", {"tile": 0}, "upscale: expected UpscaleOptions, got dict"),
    ],
)
def test_batch_options_name_the_bad_field(field, value, message):
    from esrcli.infer import BatchOptions

    with pytest.raises(ConfigError) as exc:
        BatchOptions(**{field: value})
    assert message in str(exc.value)
    BatchOptions(quality=1, jobs=3, memory_share=1, overwrite=True)  # the edges are fine


def test_memory_warnings_come_with_their_image_in_input_order(tmp_path, monkeypatch):
    import cv2

    import esrcli.infer.batch as batch
    from esrcli.infer import BatchOptions, Warned, Written, collect_inputs, load_upscale_model, run_batch
    from esrcli.infer.model import ModelSpec
    from esrcli.weights import ModelInfo, save_model

    q = dict(num_in_ch=3, num_out_ch=3, num_feat=4, num_conv=1, scale=2, act_type="prelu")
    save_model(tmp_path / "m.safetensors", SRVGGNetCompact(**q), ModelInfo("SRVGGNetCompact", q, 2))
    (tmp_path / "in").mkdir()
    names = [f"{i}.png" for i in range(4)]
    for n in names:
        cv2.imwrite(str(tmp_path / "in" / n), np.full((8, 8, 3), 90, np.uint8))
    monkeypatch.setattr(batch, "available_memory", lambda: 10**9)
    monkeypatch.setattr(batch, "working_memory", lambda *a, **k: 2 * 10**9)  # each "too big"
    model = load_upscale_model(ModelSpec(str(tmp_path / "m.safetensors"), "cpu", "fp32"))
    items = collect_inputs([tmp_path / "in"], tmp_path / "out", None)
    events = [e for e in run_batch(items, model, BatchOptions(upscale=UpscaleOptions(tile=0), jobs=2)) if isinstance(e, (Warned, Written))]
    assert [(type(e).__name__, e.src.name) for e in events] == [(k, n) for n in names for k in ("Warned", "Written")]
