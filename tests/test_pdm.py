"""PDM (learned degradation): library, safetensors files, train-pdm runs, resume, bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from esrcli.config import from_dict, load_toml
from esrcli.config.pdm import PdmConfig, PdmModelConfig
from esrcli.degrade.pdm import PdmModel, apply_kernels, kernel_moments, load_pdm, save_pdm
from esrcli.errors import ConfigError, DataError, WeightsError
from esrcli.ops.filters import bivariate_gaussian
from esrcli.train.checkpoint import read_checkpoint
from esrcli.train.pdm import kernel_stats, train_pdm

TINY = {"kernel_size": 9, "kernel_feat": 8, "kernel_blocks": 1, "noise_feat": 8, "noise_blocks": 1, "disc_feat": 8, "disc_layers": 2}


def _model(**kw) -> PdmModel:
    torch.manual_seed(0)
    return PdmModel(PdmModelConfig(**{**TINY, **kw}))


@pytest.mark.parametrize("kind", ["gaussian", "free"])
@pytest.mark.parametrize("spatial", [False, True])
def test_kernels_sum_to_one_start_as_delta_and_shapes(kind, spatial):
    m = _model(kernel=kind, spatial=spatial)
    k = m.sample_kernels(5, generator=torch.Generator().manual_seed(0))
    assert k.shape == (5, 9, 9)
    assert torch.allclose(k.sum(dim=(1, 2)), torch.ones(5), atol=1e-5)
    assert (k >= 0).all()
    # a delta-like start: most of the mass on the centre tap, centroid at the centre
    assert float(k[:, 4, 4].min()) > (0.7 if kind == "gaussian" else 0.99)
    mu, _ = kernel_moments(k)
    assert float(mu.abs().max()) < 1e-4
    x = torch.rand(2, 3, 37, 50)
    y = m.degrade(x, generator=torch.Generator().manual_seed(1))
    assert y.shape == (2, 3, 9, 12)


def test_noise_false_is_noise_true_without_noise():
    m = _model()
    x = torch.rand(2, 3, 32, 32)
    with_noise = m.degrade(x, generator=torch.Generator().manual_seed(3))
    clean = m.degrade(x, noise=False, generator=torch.Generator().manual_seed(3))
    zk, zn = m.draw_codes(2, (8, 8), torch.Generator().manual_seed(3))
    _, _, noise = m(x.float(), zk, zn)
    assert torch.allclose(with_noise - clean, noise, atol=1e-6)
    assert float(noise.detach().abs().max()) > 0
    # different seeds draw different noise
    other = m.degrade(x, generator=torch.Generator().manual_seed(4))
    assert not torch.allclose(other, with_noise)


def test_apply_kernels_matches_known_blur_and_delta():
    x = torch.rand(1, 3, 24, 24)
    delta = torch.zeros(1, 25, 1, 1)
    delta[0, 12] = 1
    assert torch.allclose(apply_kernels(x, delta, 2), x[..., ::2, ::2])
    k = bivariate_gaussian(5, 1.5, 0.8, 0.3)
    st = kernel_stats(k[None])
    assert st["sigma_major"] > st["sigma_minor"] > 0.5
    # spatially variant path with the same kernel everywhere = invariant path
    kv = k.reshape(1, 25, 1, 1).expand(1, 25, 12, 12).contiguous()
    assert torch.allclose(apply_kernels(x, kv, 2), apply_kernels(x, k.reshape(1, 25, 1, 1), 2), atol=1e-6)


def test_kernel_stats_recovers_gaussian_parameters():
    k = bivariate_gaussian(21, 2.0, 1.2, math.radians(120))
    st = kernel_stats(k[None])
    assert st["sigma_major"] == pytest.approx(2.0, rel=1e-3)
    assert st["sigma_minor"] == pytest.approx(1.2, rel=1e-3)
    assert st["theta"] == pytest.approx(120.0, abs=0.1)


def test_save_load_round_trip(tmp_path):
    m = _model(kernel="free", noise_channels=1)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = save_pdm(tmp_path / "p.safetensors", m)
    back = load_pdm(path)
    assert back.scale == 4 and back.kernel_size == 9 and back.cfg == m.cfg
    x = torch.rand(1, 3, 16, 16)
    a = m.eval().degrade(x, generator=torch.Generator().manual_seed(0))
    b = back.degrade(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    with pytest.raises(WeightsError, match="scale 4, expected 2"):
        load_pdm(path, scale=2)


def test_load_pdm_rejects_generator_and_other_files(tmp_path):
    from esrcli.archs import build_generator
    from esrcli.weights import ModelInfo, save_model

    g = build_generator("SRVGGNetCompact", {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 4, "num_conv": 1, "scale": 4, "act_type": "prelu"})
    gen = tmp_path / "gen.safetensors"
    save_model(gen, g, ModelInfo("SRVGGNetCompact", {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 4, "num_conv": 1, "act_type": "prelu"}, 4))
    with pytest.raises(WeightsError) as exc:
        load_pdm(gen)
    msg = str(exc.value)
    assert msg.startswith(str(gen)) and "generator" in msg and "\n" not in msg
    txt = tmp_path / "x.safetensors"
    txt.write_text("hello world, not a model")
    with pytest.raises(WeightsError, match="not a PDM file"):
        load_pdm(txt)
    with pytest.raises(WeightsError, match="no such file"):
        load_pdm(tmp_path / "missing.safetensors")
    with pytest.raises(WeightsError, match="is a folder, not a PDM file"):
        load_pdm(tmp_path)


def _write(path: Path, h: int, w: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 0.5 + 0.4 * np.sin(xx / (2 + seed % 3) + yy / 4.0)[..., None] * np.array([1.0, 0.7, 0.5])
    img = np.clip(img + 0.03 * rng.standard_normal((h, w, 3)), 0, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), (img * 255).astype(np.uint8))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("pdm_data")
    for i in range(3):
        _write(root / "hr" / "sub" / f"h{i}.png", 40 + 4 * i, 44, i)
        _write(root / "lr" / f"l{i}.png", 12 + i, 14, 10 + i)
    (root / "hr" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (root / "empty").mkdir()
    _write(root / "small" / "s.png", 6, 6, 1)
    return root


def _cfg(root: Path, **tables) -> PdmConfig:
    d = {
        "model": {**TINY},
        "data": {"hr": [str(root / "hr")], "lr": [str(root / "lr")], "lr_crop": 8},
        "train": {"total_iter": 4, "batch_size": 2, "checkpoint_interval": 2, "log_interval": 1, "seed": 3, "device": "cpu"},
    }
    for k, v in tables.items():
        d[k] = {**d.get(k, {}), **v}
    return from_dict(PdmConfig, d)


def test_train_pdm_runs_exports_and_resumes_exactly(data, tmp_path):
    full = train_pdm(_cfg(data), tmp_path / "full")
    assert full.iteration == 4 and full.stopped == "done"
    assert any(p.name == "broken.png" for p, _ in full.skipped)
    lines = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in lines] == [1, 2, 3, 4]
    assert all(math.isfinite(r["loss_adv"]) and math.isfinite(r["loss_d"]) for r in lines)
    pdm = load_pdm(full.export)
    assert pdm.scale == 4 and pdm.kernel_size == 9
    # training moved the model away from its initial state
    init = _model()
    assert any(not torch.equal(a, b) for a, b in zip(init.state_dict().values(), pdm.state_dict().values()))

    asked = train_pdm(_cfg(data), tmp_path / "asked", stop_requested=lambda: True)  # Ctrl-C in the CLI
    assert (asked.stopped, asked.iteration) == ("interrupted", 1) and asked.export.is_file()
    # stop after 2 iterations, then resume to 4: identical weights and logs
    part = train_pdm(_cfg(data, train={"total_iter": 2}), tmp_path / "part")
    assert part.iteration == 2
    resumed = train_pdm(_cfg(data), tmp_path / "part", resume=True)
    assert resumed.resumed_from is not None and resumed.iteration == 4
    a = read_checkpoint(tmp_path / "full" / "checkpoints" / "iter_00000004.pt")
    b = read_checkpoint(tmp_path / "part" / "checkpoints" / "iter_00000004.pt")
    for key in ("net_g", "net_d"):
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), (key, k)
    la = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    lb = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
    strip = lambda ls: [{k: v for k, v in json.loads(x).items() if k != "time"} for x in ls]  # noqa: E731
    assert strip(la) == strip(lb)


def test_train_pdm_bad_input_one_line_errors(data, tmp_path):
    with pytest.raises(DataError) as exc:
        train_pdm(_cfg(data, data={"lr": [str(data / "empty")]}), tmp_path / "a")
    assert str(exc.value).startswith("data.lr:") and "\n" not in str(exc.value)
    with pytest.raises(DataError) as exc:
        train_pdm(_cfg(data, data={"lr": [str(data / "small")]}), tmp_path / "b")
    assert "s.png" in str(exc.value) and "smaller than" in str(exc.value)
    with pytest.raises(DataError, match="data.hr"):
        train_pdm(_cfg(data, data={"hr": [str(data / "nope")]}), tmp_path / "c")


def test_config_key_path_errors(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[model]\nkernel_sizee = 21\n")
    with pytest.raises(ConfigError, match=r"model\.kernel_sizee: unknown key"):
        load_toml(PdmConfig, f)
    f.write_text("[model]\nkernel_size = 20\n")
    with pytest.raises(ConfigError, match=r"model\.kernel_size: must be a positive odd"):
        load_toml(PdmConfig, f)
    f.write_text('[data]\naugment = "flip"\n')
    with pytest.raises(ConfigError, match=r"data\.augment"):
        load_toml(PdmConfig, f)
    f.write_text("[train]\nlr = \"fast\"\n")
    with pytest.raises(ConfigError, match=r"train\.lr: expected a number"):
        load_toml(PdmConfig, f)


def test_cli_train_pdm(data, tmp_path, esr):
    cfg = tmp_path / "p.toml"
    cfg.write_text(
        f'[data]\nhr = ["{data / "hr"}"]\nlr = ["{data / "lr"}"]\nlr_crop = 8\n'
        "[model]\n" + "".join(f"{k} = {v}\n" for k, v in TINY.items())
        + '[train]\ntotal_iter = 2\nbatch_size = 2\ndevice = "cpu"\n'
    )
    rc, out, err = esr("train-pdm", cfg, "-o", tmp_path / "run")
    assert rc == 0, err
    assert "pdm.safetensors" in out and (tmp_path / "run" / "pdm.safetensors").exists()
    rc, out, err = esr("train-pdm", cfg, "-o", tmp_path / "run", "--no-resume")
    assert rc == 1 and "--no-resume" in err
    rc, out, err = esr("train-pdm", "--print-config")
    assert rc == 0 and "[model]" in out and "kernel_size = 21" in out


def test_cli_degrade_with_pdm_and_model_info(tmp_path, esr):
    m = _model(kernel_size=5)
    path = save_pdm(tmp_path / "p.safetensors", m)
    _write(tmp_path / "in" / "a.png", 32, 40, 0)
    _write(tmp_path / "in" / "b.png", 6, 7, 1)
    rc, out, err = esr("degrade", "--pdm", path, tmp_path / "in", tmp_path / "out")
    assert rc == 0, err
    lq = cv2.imread(str(tmp_path / "out" / "lq" / "a.png"))
    assert lq.shape == (8, 10, 3)
    lines = [json.loads(x) for x in (tmp_path / "out" / "params.jsonl").read_text().splitlines()]
    assert lines[0]["pdm"] == str(path)
    # the line's seed rebuilds the sample: pdm.degrade(gt, generator seeded with it)
    from esrcli.data.imageio import read_image, to_tensor

    gt = to_tensor(read_image(tmp_path / "in" / "a.png").color)
    again = m.degrade(gt, generator=torch.Generator().manual_seed(lines[0]["seed"])).clamp(0, 1)
    assert np.abs(np.rint(again[0].permute(1, 2, 0).numpy() * 255) - lq[:, :, ::-1]).max() <= 1
    rc, out, err = esr("degrade", "--pdm", path, "--show", tmp_path / "in" / "a.png", "-o", tmp_path / "sheet.png", "--n", "3")
    assert rc == 0, err
    rc, out, err = esr("degrade", "--pdm", path, "--show", tmp_path / "in" / "a.png", "-o", tmp_path / "sheet.png", "--n", "12")
    assert rc == 0 and "--n 12: the PDM sheet draws at most 8 samples" in err
    assert cv2.imread(str(tmp_path / "sheet.png")) is not None
    rc, out, err = esr("degrade", "--pdm", path, "--scale", "2", tmp_path / "in", tmp_path / "out2")
    assert rc == 1 and "scale 4, expected 2" in err and str(path) in err
    rc, out, err = esr("model", "info", path)
    assert rc == 0 and "PDM" in out and "x4" in out and "gaussian 5x5" in out
    rc, out, err = esr("model", "info", "--json", path)
    assert rc == 0 and json.loads(out)["scale"] == 4


def test_train_net_with_pdm_pairs(data, tmp_path):
    from esrcli.config.train import TrainNetConfig
    from esrcli.train.loop import train
    from esrcli.train.pairs import PairMaker

    pdm_path = save_pdm(tmp_path / "p.safetensors", _model(kernel_size=5))
    base = {
        "model": {"arch": "SRVGGNetCompact", "num_feat": 4, "num_conv": 1},
        "data": {"folders": [str(data / "hr")], "gt_size": 16, "crop_size": 24, "num_workers": 0},
        "train": {"total_iter": 2, "batch_size": 2, "pool_size": 0, "checkpoint_interval": 2, "log_interval": 1,
                  "precision": "fp32", "seed": 1, "compile_kernels": False, "device": "cpu"},
    }
    with pytest.raises(ConfigError, match=r"degrade\.pdm: a PDM file"):
        from_dict(TrainNetConfig, {**base, "degrade": {"source": "pdm"}})
    with pytest.raises(ConfigError, match=r'degrade\.pdm: given, but source = "second-order" does not use it'):
        from_dict(TrainNetConfig, {**base, "degrade": {"pdm": str(pdm_path)}})  # a forgotten source: not ignored
    with pytest.raises(ConfigError, match=r'degrade\.pdm_prob: only source = "mix" uses it'):
        from_dict(TrainNetConfig, {**base, "degrade": {"source": "pdm", "pdm": str(pdm_path), "pdm_prob": 0.9}})
    cfg = from_dict(TrainNetConfig, {**base, "degrade": {"source": "pdm", "pdm": str(pdm_path)}}, base_dir=tmp_path)
    maker = PairMaker(cfg, torch.device("cpu"), 5)
    crops = torch.rand(2, 3, 24, 24)
    batch = maker.make(crops)
    assert batch["lq"].shape == (2, 3, 4, 4) and batch["gt"].shape == (2, 3, 16, 16)
    # the LQ is the PDM's degradation of the GT crop (8-bit rounded)
    ref = load_pdm(pdm_path).degrade(batch["gt"], noise=False, generator=torch.Generator().manual_seed(0))
    assert (batch["lq"] - ref).abs().mean() < 0.05
    notes: list[str] = []
    res = train(cfg, tmp_path / "run", on_message=notes.append)
    assert res.iteration == 2
    assert "training pairs: PDM p.safetensors" in notes  # said, and recorded in the export
    from esrcli.weights import load_model

    assert load_model(res.export)[1].metadata["degradation"] == "PDM p.safetensors"
    mixed = from_dict(TrainNetConfig, {**base, "degrade": {"source": "mix", "pdm": str(pdm_path), "pdm_prob": 1.0}}, base_dir=tmp_path)
    assert PairMaker(mixed, torch.device("cpu"), 5).make(crops)["lq"].shape == (2, 3, 4, 4)
    wrong = save_pdm(tmp_path / "p2.safetensors", _model(kernel_size=5, scale=2))
    with pytest.raises(WeightsError, match="scale 2, expected 4"):
        PairMaker(from_dict(TrainNetConfig, {**base, "degrade": {"source": "pdm", "pdm": str(wrong)}}), torch.device("cpu"), 5)


def test_pdm_source_refuses_predict_degradation(tmp_path):
    from esrcli.config.train import TrainNetConfig
    from esrcli.train.pairs import PairMaker

    pdm_path = save_pdm(tmp_path / "p.safetensors", _model(kernel_size=5))
    cfg = from_dict(TrainNetConfig, {
        "model": {"arch": "SRVGGNetCompact", "num_feat": 4, "num_conv": 1, "predict_degradation": True},
        "data": {"gt_size": 16, "crop_size": 24},
        "degrade": {"source": "mix", "pdm": str(pdm_path)},
    })
    with pytest.raises(ConfigError, match="degrade.source"):
        PairMaker(cfg, torch.device("cpu"), 0)


def test_config_sr_table_errors(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[sr.model]\nscale = 2\n")
    with pytest.raises(ConfigError, match=r"sr\.model\.scale: must equal model\.scale \(4\), got 2"):
        load_toml(PdmConfig, f)
    f.write_text("[sr.model]\npredict_degradation = true\n")
    with pytest.raises(ConfigError, match=r"sr\.model\.predict_degradation"):
        load_toml(PdmConfig, f)
    f.write_text("[sr]\nlrr = 1e-4\n")
    with pytest.raises(ConfigError, match=r"sr\.lrr: unknown key"):
        load_toml(PdmConfig, f)
    f.write_text("")
    assert load_toml(PdmConfig, f).sr is None


def test_calibrated_export_matches_live_noise_energy(data, tmp_path):
    from esrcli.degrade.pdm import highpass
    from esrcli.train.pdm import build_pdm_nets, calibrated_export

    cfg = _cfg(data)
    nets = build_pdm_nets(cfg, torch.device("cpu"))
    with torch.no_grad():  # a noise module that makes noise of a known size
        nets.ema.noise_net.tail.weight.normal_(0, 0.05)
    hr = torch.rand(4, 3, 32, 32)
    model, gain = calibrated_export(nets, hr, seed=7)
    assert gain is None and torch.equal(model.noise_net.gain, torch.ones(3))  # before any model update
    g = torch.Generator().manual_seed(7)
    zk, zn = nets.ema.draw_codes(4, (8, 8), g)
    with torch.no_grad():
        own = highpass(nets.ema(hr, zk, zn)[2]).pow(2).mean(dim=(0, 2, 3))
    nets.noise_energy = own * torch.tensor([4.0, 1.0, 0.25])
    model, gain = calibrated_export(nets, hr, seed=7)
    assert torch.allclose(gain, torch.tensor([2.0, 1.0, 0.5]), rtol=1e-4)
    with torch.no_grad():
        got = highpass(model(hr, zk, zn)[2]).pow(2).mean(dim=(0, 2, 3))
    assert torch.allclose(got, nets.noise_energy, rtol=1e-4)
    assert torch.equal(nets.ema.noise_net.gain, torch.ones(3))  # the training EMA is untouched
    # the gain travels in the file; files written before it (no gain key) still load
    path = save_pdm(tmp_path / "g.safetensors", model)
    assert torch.allclose(load_pdm(path).noise_net.gain, gain)
    from safetensors.torch import load_file, save_file

    sd = load_file(str(path))
    del sd["noise_net.gain"]
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    save_file(sd, str(tmp_path / "old.safetensors"), metadata=meta)
    assert torch.equal(load_pdm(tmp_path / "old.safetensors").noise_net.gain, torch.ones(3))


def test_train_pdm_joint_sr_exports_and_resumes_exactly(data, tmp_path):
    from esrcli.weights import load_model

    sr = {"model": {"num_feat": 4, "num_conv": 1}, "start_iter": 1}
    train = {"d_warmup": 1}
    full = train_pdm(_cfg(data, sr=sr, train=train), tmp_path / "full")
    assert full.sr_export == tmp_path / "full" / "net_g_ema.safetensors"
    lines = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert ["loss_sr_pix" in r for r in lines] == [False, True, True, True]  # from sr.start_iter
    assert all(math.isfinite(r["loss_sr_pix"]) for r in lines[1:])
    net, info = load_model(full.sr_export, device="cpu")
    assert info.arch == "SRVGGNetCompact" and info.scale == 4
    assert "PDM-SR" in info.metadata.get("provenance", "")
    assert net(torch.rand(1, 3, 6, 7)).shape == (1, 3, 24, 28)

    # a start on another global residual than [sr.model]'s is said, as train-net says it
    bilinear = {"model": {"num_feat": 4, "num_conv": 1, "upsample": "bilinear", "pretrained": str(full.sr_export)}}
    notes: list[str] = []
    train_pdm(_cfg(data, sr=bilinear, train={**train, "total_iter": 1}), tmp_path / "other", on_message=notes.append)
    assert any("was trained on a nearest global residual; this run uses bilinear" in n for n in notes), notes

    part = train_pdm(_cfg(data, sr=sr, train={**train, "total_iter": 2}), tmp_path / "part")
    assert part.iteration == 2
    train_pdm(_cfg(data, sr=sr, train=train), tmp_path / "part", resume=True)
    a = read_checkpoint(tmp_path / "full" / "checkpoints" / "iter_00000004.pt")
    b = read_checkpoint(tmp_path / "part" / "checkpoints" / "iter_00000004.pt")
    for key in ("net_g", "net_g_ema"):
        for k in a["sr"][key]:
            assert torch.equal(a["sr"][key][k], b["sr"][key][k]), (key, k)
    assert torch.equal(a["noise_energy"], b["noise_energy"])
    # the SR network learned something: its export differs from the seeded initial network
    from esrcli.train import build

    init = build.build_net_g(from_dict(PdmConfig, {"sr": sr}).sr.model, 3)
    assert any(not torch.equal(x, y) for x, y in zip(init.state_dict().values(), net.state_dict().values()))


def test_train_pdm_sr_pretrained_errors_name_the_key(data, tmp_path):
    from esrcli.errors import TrainingError

    with pytest.raises(TrainingError, match=r"sr\.model\.pretrained: .*missing\.pth"):
        train_pdm(_cfg(data, sr={"model": {"num_feat": 4, "num_conv": 1, "pretrained": str(tmp_path / "missing.pth")}}), tmp_path / "r")
