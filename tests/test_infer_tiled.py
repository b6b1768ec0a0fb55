"""esrcli.infer.tiled: feathered tiling equals the whole-image pass (no seams)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from esrcli.archs import RRDBNet
from esrcli.errors import EsrError
from esrcli.infer import tiled_forward
from esrcli.infer.tiled import pad_to_multiple, ramp_window, tile_starts


class BlurNet(nn.Module):
    """Eight 5x5 averaging convs with tanh (receptive field 33 px, zero padding), then bilinear xscale.

    Zero padding at a tile's cut edge darkens up to 16 px into the tile, so any seam shows.
    """

    def __init__(self, scale: int = 4, layers: int = 8, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.scale = scale
        self.convs = nn.ModuleList()
        for _ in range(layers):
            conv = nn.Conv2d(3, 3, 5, padding=2)
            w = torch.rand(3, 3, 5, 5, generator=g)
            conv.weight.data.copy_(w / w.sum(dim=(1, 2, 3), keepdim=True))
            conv.bias.data.zero_()
            self.convs.append(conv)

    def forward(self, x):
        for conv in self.convs:
            x = torch.tanh(2 * conv(x)) / math.tanh(2)
        return F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)


class Residual(nn.Module):
    """``bilinear_up(x) + net(x)``: keeps a random RRDBNet's output in the image range."""

    def __init__(self, net: nn.Module, scale: int) -> None:
        super().__init__()
        self.net, self.scale = net, scale

    def forward(self, x):
        return F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False) + self.net(x)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def _input(h: int, w: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("tile,overlap", [(48, 16), (64, 16), (64, 32), (50, 20)])
def test_tiled_equals_whole_with_large_receptive_field(tile, overlap):
    net = BlurNet().eval()
    x = _input(100, 130)
    with torch.inference_mode():
        whole = net(x)
    tiled = tiled_forward(net, x, 4, tile, overlap)
    assert tiled.shape == whole.shape
    assert psnr(tiled, whole) >= 60


def test_tiled_small_rrdbnet_is_seam_free():
    torch.manual_seed(0)
    net = Residual(RRDBNet(num_feat=8, num_block=1, num_grow_ch=4), 4).eval()
    x = _input(56, 72)
    with torch.inference_mode():
        whole = net(x)
    assert psnr(tiled_forward(net, x, 4, 32, 8), whole) >= 50
    assert psnr(tiled_forward(net, x, 4, 48, 16, batch=3), whole) >= 70


def test_batching_tiles_gives_the_same_result():
    net = BlurNet(scale=2).eval()
    x = _input(60, 65)
    a = tiled_forward(net, x, 2, 32, 8, batch=1)
    b = tiled_forward(net, x, 2, 32, 8, batch=4)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_batch_of_images_and_image_smaller_than_tile():
    net = BlurNet(scale=2).eval()
    x = torch.cat([_input(20, 30, 1), _input(20, 30, 2)])
    with torch.inference_mode():
        whole = net(x)
    torch.testing.assert_close(tiled_forward(net, x, 2, 64, 16), whole)  # one tile = whole image
    out = tiled_forward(net, x, 2, 16, 4)  # batched images, tiled
    assert out.shape == (2, 3, 40, 60)
    assert psnr(out[1:], whole[1:]) > 30  # tiles of 16 px are smaller than the receptive field


def test_tile_zero_is_whole_image_and_mod_padding_crops_back():
    torch.manual_seed(0)
    net = RRDBNet(scale=1, num_feat=8, num_block=1, num_grow_ch=4).eval()  # pixel-unshuffle by 4
    x = _input(29, 41)
    out = tiled_forward(net, x, 1, 0, 0, mod=4)
    assert out.shape == (1, 3, 29, 41)
    tiled = tiled_forward(net, x, 1, 24, 8, mod=4)
    assert tiled.shape == (1, 3, 29, 41)
    with pytest.raises(RuntimeError):
        tiled_forward(net, x, 1, 0, 0, mod=1)  # 29 is not divisible by 4: the net itself fails


def test_tile_starts_cover_with_overlap():
    for length in (1, 31, 64, 100, 257, 1000):
        for tile, overlap in ((32, 8), (64, 32), (100, 10)):
            starts = tile_starts(length, tile, overlap)
            t = min(tile, length)
            assert starts[0] == 0 and starts[-1] + t == length
            assert all(b - a <= t - overlap for a, b in zip(starts, starts[1:])) or len(starts) == 1
            assert starts == sorted(set(starts))
    assert tile_starts(300, 128, 32) == [0, 86, 172]


def test_ramp_window():
    w = ramp_window(10, 4, 0)
    torch.testing.assert_close(w[:4], torch.tensor([0.125, 0.375, 0.625, 0.875]))
    assert (w[4:] == 1).all()
    w2 = ramp_window(10, 4, 4)
    torch.testing.assert_close(w2, w2.flip(0))
    assert w2.min() > 0
    w3 = ramp_window(12, 2, 2, margin=2)
    torch.testing.assert_close(w3[:5], torch.tensor([0.0, 0.0, 0.25, 0.75, 1.0]))
    torch.testing.assert_close(w3, w3.flip(0))


def test_overlapping_windows_always_sum_to_a_positive_weight():
    # Two tiles of 40 overlapping by 16 (x4 -> 64 output px): margin 24, ramp 16 on each side.
    a = ramp_window(160, 0, 16, 24)
    b = ramp_window(160, 16, 0, 24)
    total = torch.zeros(256)
    total[:160] += a
    total[96:] += b
    assert total.min() > 0.9 and total.max() <= 1.0 + 1e-6


def test_pad_to_multiple_reflects_or_replicates():
    x = torch.arange(6.0).reshape(1, 1, 2, 3)
    p = pad_to_multiple(x, 4)
    assert p.shape == (1, 1, 4, 4)
    torch.testing.assert_close(p[..., :2, :3], x)
    tiny = torch.ones(1, 1, 1, 1)
    assert pad_to_multiple(tiny, 4).shape == (1, 1, 4, 4)  # too small to reflect: replicate


class _OOMNet(nn.Module):
    """Raises torch.OutOfMemoryError for inputs larger than ``limit`` pixels a side."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.conv = nn.Conv2d(3, 3, 1)
        nn.init.dirac_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x):
        if max(x.shape[-2:]) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")
        return F.interpolate(self.conv(x), scale_factor=2, mode="nearest")


def test_out_of_memory_halves_the_tile_and_says_so():
    x = _input(200, 150)
    notes: list[str] = []
    out = tiled_forward(_OOMNet(60), x, 2, 0, 8, notify=notes.append)
    torch.testing.assert_close(out, F.interpolate(x, scale_factor=2, mode="nearest"))
    assert len(notes) == 2 and "out of memory" in notes[0] and "-> 100" in notes[0] and "-> 50" in notes[1]
    notes.clear()
    tiled_forward(_OOMNet(60), x, 2, 4096, 8, notify=notes.append)  # tile larger than the image
    assert "-> 100" in notes[0] and len(notes) == 2
    with pytest.raises(EsrError, match="out of memory"):
        tiled_forward(_OOMNet(10), x, 2, 0, 8)


def test_argument_checks():
    net = BlurNet()
    with pytest.raises(ValueError, match="B, C, H, W"):
        tiled_forward(net, torch.rand(3, 8, 8), 4)
    with pytest.raises(ValueError):
        tiled_forward(net, torch.rand(1, 3, 8, 8), 4, tile=-1)


def test_progress_callback_counts_tiles():
    calls: list[tuple[int, int]] = []
    tiled_forward(BlurNet(), _input(40, 40), 4, 24, 8, batch=2, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (4, 4) and [d for d, _ in calls] == [2, 4]


def test_accumulate_option():
    """``accumulate`` picks where tiles are blended; on the CPU every choice is the CPU."""
    net = torch.nn.Upsample(scale_factor=2, mode="nearest")
    x = torch.rand(1, 3, 40, 50)
    ref = tiled_forward(net, x, 2, 16, 4)
    for acc in ("cpu", "device", "auto"):
        out = tiled_forward(net, x, 2, 16, 4, accumulate=acc)
        assert out.device.type == "cpu" and torch.allclose(out, ref)
    with pytest.raises(ValueError, match="accumulate"):
        tiled_forward(net, x, 2, 16, 4, accumulate="gpu")
