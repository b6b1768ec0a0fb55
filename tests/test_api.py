"""esrcli.Upscaler: layouts and dtypes kept, equal to the CLI, thread-safe; docs/api.md runs."""

from __future__ import annotations

import doctest
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from esrcli.archs import SRVGGNetCompact
from esrcli.errors import ImageError
from esrcli.weights import ModelInfo, default_model_name, save_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A small random SRVGGNetCompact x4 (fast; its output is far from trivial)."""
    torch.manual_seed(0)
    q = dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, scale=4, act_type="prelu")
    path = tmp_path_factory.mktemp("m") / "compact.safetensors"
    save_model(path, SRVGGNetCompact(**q), ModelInfo("SRVGGNetCompact", q, 4))
    return path


@pytest.fixture(scope="module")
def up(model):
    from esrcli import Upscaler

    return Upscaler(model, precision="fp32", tile=32, tile_overlap=8)


def _psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def _rng(*shape, dtype=np.uint8, seed=0):
    hi = 65535 if dtype == np.uint16 else 255
    return (np.random.default_rng(seed).random(shape) * hi).astype(dtype)


def test_import_esrcli_is_cheap_and_exports_upscaler():
    code = "import sys, esrcli; assert 'torch' not in sys.modules; from esrcli import Upscaler; print(Upscaler.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""})
    assert out.returncode == 0 and out.stdout.strip() == "Upscaler", out.stderr


@pytest.mark.parametrize(
    "shape, dtype",
    [((20, 24), np.uint8), ((20, 24, 1), np.uint8), ((20, 24, 2), np.uint8), ((20, 24, 3), np.uint8), ((20, 24, 4), np.uint16), ((20, 24, 3), np.float32)],
)
def test_layout_and_dtype_are_kept(up, shape, dtype):
    a = _rng(*shape, dtype=np.uint16 if dtype == np.uint16 else np.uint8)
    if dtype == np.float32:
        a = a.astype(np.float32) / 255
    out = up.upscale(a)
    assert out.dtype == dtype and out.shape == (80, 96, *shape[2:])
    assert up.upscale(a, outscale=0.5).shape == (10, 12, *shape[2:])


def test_rgb_order_and_alpha(up):
    """Colour order is RGB (a red image stays red), an opaque alpha stays opaque."""
    from esrcli import Upscaler

    nearest = Upscaler(_nearest(up), precision="fp32")
    a = np.zeros((8, 8, 4), np.uint8)
    a[..., 0], a[..., 3] = 200, 255
    out = nearest.upscale(a)
    assert (out[..., 0] == 200).all() and (out[..., 1:3] == 0).all() and (out[..., 3] == 255).all()


def _nearest(up) -> Path:
    """A nearest-neighbour x4 model (SRVGG with a zero last conv), beside the fixture model."""
    from torch import nn

    path = Path(up.model.name).with_name("nearest.safetensors")
    if not path.exists():
        q = dict(num_in_ch=3, num_out_ch=3, num_feat=4, num_conv=1, scale=4, act_type="prelu")
        net = SRVGGNetCompact(**q)
        nn.init.zeros_(net.body[-1].weight)
        nn.init.zeros_(net.body[-1].bias)
        save_model(path, net, ModelInfo("SRVGGNetCompact", q, 4))
    return path


def test_api_equals_the_cli(esr, model, up, tmp_path):
    rgb = cv2.GaussianBlur(_rng(40, 52, 3, seed=1), (0, 0), 1.5)
    deep = _rng(24, 20, 4, dtype=np.uint16, seed=2)
    cv2.imwrite(str(tmp_path / "rgb.png"), rgb[:, :, ::-1])
    cv2.imwrite(str(tmp_path / "deep.png"), deep[:, :, [2, 1, 0, 3]])
    rc, _, err = esr("upscale", tmp_path / "rgb.png", tmp_path / "deep.png", tmp_path / "out", "--model", model, "--precision", "fp32", "--tile", "32", "--tile-overlap", "8")
    assert rc == 0, err
    cli_rgb = cv2.imread(str(tmp_path / "out" / "rgb.png"))[:, :, ::-1]
    cli_deep = cv2.imread(str(tmp_path / "out" / "deep.png"), -1)[:, :, [2, 1, 0, 3]]
    assert _psnr(up.upscale(rgb), cli_rgb, 255) >= 60
    assert _psnr(up.upscale(tmp_path / "rgb.png"), cli_rgb, 255) >= 60
    api_deep = up.upscale(deep)
    assert api_deep.dtype == np.uint16 and _psnr(api_deep, cli_deep, 65535) >= 60
    assert _psnr(up.upscale(PILImage.fromarray(rgb)), cli_rgb, 255) >= 60


def test_pil_modes(up):
    assert up.upscale(PILImage.new("L", (6, 5))).shape == (20, 24)
    assert up.upscale(PILImage.new("LA", (6, 5))).shape == (20, 24, 2)
    i16 = PILImage.fromarray(np.full((5, 6), 30000, np.uint16))
    assert up.upscale(i16).dtype == np.uint16
    assert up.upscale(PILImage.new("P", (6, 5))).shape == (20, 24, 3)
    f = up.upscale(PILImage.fromarray(np.full((5, 6), 0.5, np.float32), "F"))  # float in [0, 1]
    assert f.dtype == np.float32 and f.shape == (20, 24) and abs(float(f.mean()) - 0.5) < 0.02
    i32 = up.upscale(PILImage.fromarray(np.full((5, 6), 40000, np.int32), "I"))  # 16-bit data as PIL opens it
    assert i32.dtype == np.uint16 and abs(float(i32.mean()) - 40000) < 800
    with pytest.raises(ImageError, match="mode I with values 0 to 70000"):
        up.upscale(PILImage.fromarray(np.array([[0, 70000]], np.int32), "I"))
    rgba = PILImage.new("RGBA", (6, 5), (200, 100, 50, 128)).convert("RGBa")  # premultiplied
    out = up.upscale(rgba)
    assert out.shape == (20, 24, 4) and np.array_equal(out, up.upscale(rgba.convert("RGBA")))
    for mode in ("CMYK", "RGBX", "YCbCr"):  # as documented: RGB out
        assert up.upscale(PILImage.new("RGB", (6, 5), (200, 100, 50)).convert(mode)).shape == (20, 24, 3)


def test_tile_sizes_must_be_whole_numbers(model):
    from esrcli import Upscaler
    from esrcli.errors import ConfigError

    for kwargs, what in (({"tile": 64.5}, "tile: expected a whole number, got 64.5"), ({"tile_overlap": 8.0}, "tile_overlap: expected a whole number, got 8.0"),
                         ({"tile": "512"}, "tile: expected a whole number, got '512'"), ({"tile": True}, "tile: expected a whole number, got True")):
        with pytest.raises(ConfigError, match=what):
            Upscaler(model, precision="fp32", **kwargs)
    assert Upscaler(model, precision="fp32", tile=np.int64(64), tile_overlap=np.int32(8)).options.tile == 64  # numpy ints are whole


def test_bad_inputs_raise_image_error(up, tmp_path):
    for bad in (np.zeros((4, 4, 5), np.uint8), np.zeros((4, 4), np.int32), np.zeros((2, 2, 2, 2), np.uint8), np.full((3, 3), np.nan, np.float32), "x"):
        with pytest.raises(ImageError):
            up.upscale(bad if not isinstance(bad, str) else tmp_path / "missing.png")
    with pytest.raises(ImageError):
        up.upscale([[1, 2], [3, 4]])
    (tmp_path / "clip.mp4").write_bytes(b"\x00" * 64)
    with pytest.raises(ImageError, match="clip.mp4: a video; Upscaler takes images"):
        up.upscale(tmp_path / "clip.mp4")
    with pytest.raises(ImageError, match=r"must lie in \[0, 1\], got 0 to 255 \(8-bit values\? divide by 255\)"):
        up.upscale(np.array([[0.0, 255.0]]))  # 8-bit values in a float array: not silently white
    with pytest.raises(ImageError, match="got -0.5 to 0.5"):
        up.upscale(np.array([[-0.5, 0.5]], np.float32))
    o = up.upscale(np.array([[-0.05, 1.05]], np.float32))  # overshoot: clipped
    assert o.shape == (4, 8) and 0 <= o.min() and o.max() <= 1
    from esrcli.errors import ConfigError

    with pytest.raises(ConfigError, match="outscale: must be a positive number, got '2'"):
        up.upscale(np.zeros((4, 4), np.uint8), outscale="2")
    calls = []
    hook = up.model.net_for(8).register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(ImageError, match="the output would be 4000000x4000000 pixels, over the limit"):
            up.upscale(np.zeros((4, 4), np.uint8), outscale=1e6)
        assert calls == []  # refused before the network ran
        up.upscale(np.zeros((4, 4), np.uint8))
        assert calls  # control: the hook sees a pass
    finally:
        hook.remove()


def test_sharpness_blends_the_embedded_pair():
    from esrcli import Upscaler
    from esrcli.errors import ConfigError

    x = _rng(20, 24, 3, seed=3)
    ends = [Upscaler(name, precision="fp32", tile=0).upscale(x).astype(np.float64) for name in ("esr-general-x4-net", "esr-general-x4")]
    half = Upscaler("esr-general-x4", precision="fp32", tile=0, sharpness=0.5).upscale(x).astype(np.float64)
    assert np.abs(ends[0] - ends[1]).mean() > 1  # the two stages differ
    assert np.abs(half - ends[0]).mean() < np.abs(ends[1] - ends[0]).mean() > np.abs(half - ends[1]).mean()
    with pytest.raises(ConfigError, match="sharpness: expected a number in"):
        Upscaler("esr-general-x4", sharpness=2)
    with pytest.raises(ConfigError, match="give one of them"):
        Upscaler("esr-general-x4", sharpness=0.5, denoise=0.5)


def test_one_upscaler_from_several_threads(up):
    images = [_rng(30, 30, 3, seed=s) for s in range(4)]
    alone = [up.upscale(a) for a in images]
    got: dict[int, np.ndarray] = {}

    def run(k: int) -> None:
        got[k] = up.upscale(images[k])

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        np.testing.assert_array_equal(got[k], alone[k])


def test_docs_api_examples_run():
    if default_model_name() is None:
        pytest.skip("no embedded default model in this build")
    result = doctest.testfile(str(ROOT / "docs" / "api.md"), module_relative=False, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 10 and result.failed == 0


def test_api_module_docstring_example_runs():
    import esrcli.api

    if default_model_name() is None:
        pytest.skip("no embedded default model in this build")
    result = doctest.testmod(esrcli.api, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 3 and result.failed == 0
