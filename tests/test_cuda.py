"""CUDA paths: upscaling, training (net and GAN, resume), degradation on the GPU.

Marked ``cuda``: the default CPU run skips them with a reason; ``benchmarks/gpu_check.sh``
runs them on a GPU (``pytest -m cuda``).
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from esrcli.archs import RRDBNet, SRVGGNetCompact

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_check.sh runs these)"),
]

ROOT = Path(__file__).resolve().parents[1]


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def _photo(h: int, w: int) -> torch.Tensor:
    from esrcli.data.imageio import read_image, to_tensor

    x = to_tensor(read_image(ROOT / "examples" / "budgie_lq.png").color)
    return torch.nn.functional.interpolate(x, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_embedded_model_on_cuda_matches_the_cpu(dtype):
    """The same tiles through the embedded compact model on the GPU and the CPU (fp32)."""
    from esrcli.infer import prepare_model, tiled_forward
    from esrcli.weights import load_model
    from esrcli.weights.embedded import catalogue

    name = next(e.name for e in catalogue() if e.arch == "SRVGGNetCompact")
    net, _ = load_model(name)
    x = _photo(96, 120)
    ref = tiled_forward(prepare_model(net, torch.device("cpu"), torch.float32), x, 4, 64, 16)
    gpu = prepare_model(load_model(name)[0], torch.device("cuda"), dtype)
    out = tiled_forward(gpu, x, 4, 64, 16)
    assert out.device.type == "cpu" and out.dtype == torch.float32 and out.shape == ref.shape
    floor = 60.0 if dtype == torch.float32 else 45.0
    assert _psnr(out, ref) >= floor


def test_rrdbnet_fp16_tiles_on_cuda_match_fp32():
    from esrcli.infer import prepare_model, tiled_forward

    torch.manual_seed(0)
    net = RRDBNet(num_feat=32, num_block=3, num_grow_ch=16)
    x = _photo(80, 72)
    ref = tiled_forward(prepare_model(net, torch.device("cpu"), torch.float32), x, 4, 48, 12)
    out = tiled_forward(prepare_model(net, torch.device("cuda"), torch.float16), x, 4, 48, 12)
    assert _psnr(out, ref) >= 45.0


def test_oom_on_cuda_halves_the_tile(monkeypatch):
    """A real CUDA out-of-memory error (a tile too large for a capped allocator) halves the tile."""
    from esrcli.infer import tiled_forward

    net = SRVGGNetCompact(num_feat=8, num_conv=2).cuda().eval()
    real_forward = net.forward

    def forward(x):
        if x.shape[-1] > 64:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 TiB")
        return real_forward(x)

    monkeypatch.setattr(net, "forward", forward)
    notes: list[str] = []
    out = tiled_forward(net, torch.rand(1, 3, 100, 100), 4, 128, 16, notify=notes.append)
    assert out.shape == (1, 3, 400, 400)
    assert notes and "tile" in notes[0]


def test_upscale_cli_on_cuda(tmp_path, esr):
    rc, out, err = esr("upscale", ROOT / "examples" / "budgie_lq.png", tmp_path, "--device", "cuda")
    assert rc == 0, err
    img = cv2.imread(str(tmp_path / "budgie_lq.png"))
    assert img.shape[:2] == (768, 1152)


def test_degrade_on_cuda_is_deterministic_and_in_range():
    from esrcli.config.degrade import DegradeConfig
    from esrcli.degrade import synthesize_pairs

    cfg = DegradeConfig()
    x = _photo(400, 400).repeat(3, 1, 1, 1).cuda()
    outs = []
    for _ in range(2):
        gen = torch.Generator().manual_seed(5)
        gt, gt_usm, lq, params = synthesize_pairs(x, cfg, gen, gt_usm=True)
        outs.append(lq)
    assert lq.device.type == "cuda" and lq.shape == (3, 3, 64, 64) and gt.shape == (3, 3, 256, 256)
    assert torch.equal(outs[0], outs[1])
    assert float(lq.min()) >= 0 and float(lq.max()) <= 1


def test_torch_jpeg_on_cuda_matches_the_cpu():
    """The torch JPEG codec on the GPU gives the CPU's result (float rounding may move a rare
    coefficient); a degradation with it never leaves the device."""
    from esrcli.ops.jpeg import jpeg_compress_torch

    x = _photo(200, 264).repeat(3, 1, 1, 1)
    cpu = jpeg_compress_torch(x, [20, 60, 95])
    gpu = jpeg_compress_torch(x.cuda(), [20, 60, 95])
    assert gpu.device.type == "cuda"
    diff = (gpu.cpu() - cpu).abs() * 255
    assert float((diff < 0.5).float().mean()) > 0.99 and float(diff.mean()) < 0.05


def test_degrade_on_cuda_with_the_torch_codec():
    from esrcli.config import from_dict
    from esrcli.config.degrade import DegradeConfig
    from esrcli.degrade import synthesize_pairs

    cfg = from_dict(DegradeConfig, {"jpeg_codec": "torch"})
    x = _photo(400, 400).repeat(3, 1, 1, 1).cuda()
    a = synthesize_pairs(x, cfg, torch.Generator().manual_seed(5), gt_usm=True)[2]
    b = synthesize_pairs(x, cfg, torch.Generator().manual_seed(5), gt_usm=True)[2]
    # the same draws (noise from CUDA generators) with libjpeg's round trips through the host
    ref = synthesize_pairs(x, DegradeConfig(), torch.Generator().manual_seed(5), gt_usm=True)[2]
    assert a.device.type == "cuda" and torch.equal(a, b)
    assert 0 < float((a - ref).abs().mean()) * 255 < 1.0


def test_per_batch_resize_degrades_the_batch_at_once_on_cuda():
    """per_batch_resize on the GPU: one group through every step, deterministic, close to the
    same draws sample by sample on the GPU (grouped convolutions may round otherwise)."""
    from esrcli.config import from_dict
    from esrcli.config.degrade import DegradeConfig
    from esrcli.degrade import degrade_with_params, sample_params

    cfg = from_dict(DegradeConfig, {"per_batch_resize": True, "jpeg_codec": "torch", "first": {"gaussian_noise_prob": 1.0}, "second": {"gaussian_noise_prob": 1.0}})
    x = torch.cat([_photo(256, 256), _photo(256, 256).flip(-1)] * 4).cuda()
    params = sample_params(cfg, 8, torch.Generator().manual_seed(3))
    a = degrade_with_params(x, params)  # batched: the default on a GPU
    b = degrade_with_params(x, params)
    one = degrade_with_params(x, params, batched=False)
    assert a.device.type == "cuda" and a.shape == (8, 3, 64, 64) and torch.equal(a, b)
    diff = (a - one).abs() * 255
    assert float((diff < 0.5).float().mean()) > 0.99 and float(diff.mean()) < 0.05


@pytest.fixture(scope="module")
def hr(tmp_path_factory):
    root = tmp_path_factory.mktemp("cuda_hr")
    x = (_photo(160, 200)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    for i in range(4):
        cv2.imwrite(str(root / f"im{i}.png"), np.ascontiguousarray(np.roll(x, 17 * i, axis=1)[:, :, ::-1]))
    return root


def _cfg(hr: Path, gan: bool, arch: str = "SRVGGNetCompact"):
    from esrcli.config import from_dict
    from esrcli.config.train import TrainGanConfig, TrainNetConfig

    model = {"arch": arch, "num_feat": 16}
    model.update({"num_conv": 4} if arch == "SRVGGNetCompact" else {"num_block": 2, "num_grow_ch": 8})
    d = {
        "model": model,
        "data": {"folders": [str(hr)], "gt_size": 64, "crop_size": 96, "num_workers": 0},
        "train": {"total_iter": 4, "batch_size": 4, "pool_size": 8, "checkpoint_interval": 2, "log_interval": 1,
                  "device": "cuda", "seed": 3},
    }
    if gan:
        d["loss"] = {"perceptual_weight": 0.0}
        d["net_d"] = {"num_feat": 16}
    return from_dict(TrainGanConfig if gan else TrainNetConfig, d)


@pytest.mark.parametrize("arch", ["SRVGGNetCompact", "RRDBNet"])
def test_train_net_on_cuda_runs_and_resumes(hr, tmp_path, arch):
    from esrcli.train.loop import train
    from esrcli.weights import load_model

    cfg = _cfg(hr, gan=False, arch=arch)
    res = train(cfg, tmp_path / "run", time_limit=None)
    assert res.iteration == 4 and res.precision == "bf16" and math.isfinite(res.losses["l_pix"])
    net, info = load_model(res.export)
    assert info.arch == arch
    # resume from the iteration-2 checkpoint reproduces the same final weights
    import shutil

    shutil.copytree(tmp_path / "run", tmp_path / "again")
    (tmp_path / "again" / "checkpoints" / "iter_00000004.pt").unlink()
    res2 = train(cfg, tmp_path / "again")
    assert res2.resumed_from is not None and res2.resumed_from.name == "iter_00000002.pt" and res2.iteration == 4
    assert math.isfinite(res2.losses["l_pix"])


def test_train_gan_on_cuda(hr, tmp_path):
    from esrcli.train.loop import train

    res = train(_cfg(hr, gan=True), tmp_path / "gan")
    assert res.iteration == 4
    assert all(math.isfinite(v) for v in res.losses.values())


def test_blending_on_the_gpu_equals_blending_on_the_cpu():
    from esrcli.infer import prepare_model, tiled_forward

    torch.manual_seed(0)
    net = prepare_model(SRVGGNetCompact(num_feat=16, num_conv=4), torch.device("cuda"), torch.float32)
    x = _photo(100, 140)
    on_gpu = tiled_forward(net, x, 4, 48, 12, accumulate="device")
    on_cpu = tiled_forward(net, x, 4, 48, 12, accumulate="cpu")
    assert on_gpu.device.type == "cpu"
    assert torch.allclose(on_gpu, on_cpu, atol=1e-5)
