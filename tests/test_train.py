"""esr train-net / train-gan: tiny end-to-end runs, exact resume, failure handling, exports."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from esrcli.archs import VGG19FeatureExtractor
from esrcli.config import from_dict, to_toml
from esrcli.config.train import TrainGanConfig, TrainNetConfig
from esrcli.errors import DataError, TrainingError
from esrcli.train import checkpoint as ckpt_mod
from esrcli.train import loop as loop_mod
from esrcli.train.checkpoint import list_checkpoints, read_checkpoint
from esrcli.train.loop import train
from esrcli.weights import ModelInfo, load_model, save_model

LAYERS = ["conv1_2", "conv2_2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Four small HR training images, two validation images, a truncated VGG19 file."""
    root = tmp_path_factory.mktemp("train_data")
    rng = np.random.default_rng(0)
    (root / "hr").mkdir()
    (root / "val").mkdir()
    yy, xx = np.mgrid[0:64, 0:64]
    for i in range(4):
        smooth = 0.5 + 0.4 * np.sin(xx / (3 + i) + yy / 5.0)[..., None] * np.array([1.0, 0.8, 0.6])
        img = np.clip(smooth + 0.05 * rng.standard_normal((64, 64, 3)), 0, 1)
        cv2.imwrite(str(root / "hr" / f"im{i}.png"), (img[: 48 + 4 * i] * 255).astype(np.uint8))
    for i in range(2):
        cv2.imwrite(str(root / "val" / f"v{i}.png"), (rng.random((100 + 8 * i, 104, 3)) * 255).astype(np.uint8))
    torch.manual_seed(0)
    torch.save(VGG19FeatureExtractor(tuple(LAYERS)).state_dict(), root / "vgg19.pth")
    return root


def _cfg(root: Path, gan: bool = False, **tables) -> TrainNetConfig | TrainGanConfig:
    d = {
        "model": {"arch": "SRVGGNetCompact", "num_feat": 8, "num_conv": 2},
        "data": {"folders": [str(root / "hr")], "gt_size": 32, "crop_size": 40, "num_workers": 0},
        "train": {"total_iter": 4, "batch_size": 2, "pool_size": 4, "checkpoint_interval": 2, "log_interval": 1,
                  "precision": "fp32", "keep_checkpoints": 2, "seed": 1},
    }
    if gan:
        d["loss"] = {"perceptual_layers": LAYERS, "perceptual_layer_weights": [0.1, 1.0], "vgg_weights": str(root / "vgg19.pth")}
        d["net_d"] = {"num_feat": 8}
    for k, v in tables.items():
        d[k] = {**d.get(k, {}), **v}
    return from_dict(TrainGanConfig if gan else TrainNetConfig, d)


def _log(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "time"} for line in (path / "metrics.jsonl").read_text().splitlines()]


def test_train_net_runs_logs_validates_and_exports(data, tmp_path):
    cfg = _cfg(data, val={"folders": [str(data / "val")], "interval": 2, "save_images": 1, "metrics": ["psnr_y", "ssim_y", "niqe"]})
    steps, messages = [], []
    res = train(cfg, tmp_path / "run", on_step=steps.append, on_message=messages.append)
    assert (res.iteration, res.stopped, res.precision) == (4, "done", "fp32")
    assert [s.iteration for s in steps] == [1, 2, 3, 4]
    assert all(np.isfinite(s.losses["l_pix"]) for s in steps)
    log = _log(tmp_path / "run")
    assert [r["iter"] for r in log if "l_pix" in r] == [1, 2, 3, 4]
    val = [r for r in log if "val/psnr_y" in r]
    assert [r["iter"] for r in val] == [2, 4] and all(5 < r["val/psnr_y"] < 60 and "val/niqe" in r for r in val)
    assert sorted(p.name for p in (tmp_path / "run" / "val" / "iter_00000004").iterdir()) == ["v0.png"]
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["iter_00000002.pt", "iter_00000004.pt"]
    net, info = load_model(res.export)
    assert (info.arch, info.params["num_feat"], info.params["num_conv"], info.scale) == ("SRVGGNetCompact", 8, 2, 4)
    assert net(torch.rand(1, 3, 5, 6)).shape == (1, 3, 20, 24)
    ema = read_checkpoint(res.checkpoint)["net_g_ema"]
    assert all(torch.equal(v, ema[k]) for k, v in net.state_dict().items())
    assert load_model(tmp_path / "run" / "exports" / "net_g_ema_iter_00000002.safetensors")[1].arch == "SRVGGNetCompact"
    assert not any("could be scored" in m for m in messages)
    # a crop border that leaves no image NIQE's 96x96: said once, not silently dropped
    cfg = _cfg(data, val={"folders": [str(data / "val")], "interval": 1, "metrics": ["psnr_y", "niqe"], "crop_border": 8})
    messages = []
    train(cfg, tmp_path / "run2", on_message=messages.append)
    said = [m for m in messages if "val.metrics niqe: no validation image could be scored" in m]
    assert len(said) == 1 and "96x96" in said[0]


def _teacher_file(root: Path, zero: bool = False) -> Path:
    """A tiny SRVGGNetCompact x4 teacher; ``zero``: all weights 0, so its output is the
    nearest-neighbour x4 upsampling of its input (the network adds that base to its residual)."""
    from esrcli.archs import build_generator

    params = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 4, "num_conv": 1, "scale": 4, "act_type": "prelu"}
    torch.manual_seed(5)
    net = build_generator("SRVGGNetCompact", params)
    if zero:
        net = net.requires_grad_(False)
        for p in net.parameters():
            p.zero_()
    path = root / ("teacher_zero.safetensors" if zero else "teacher.safetensors")
    save_model(path, net, ModelInfo("SRVGGNetCompact", params, 4))
    return path


@pytest.mark.parametrize("variant", ["net", "gan", "gan-fm-teacher"])
def test_resume_after_kill_is_exact(data, tmp_path, variant):
    """N iterations in one go == k iterations, a kill right after the checkpoint at k, resume to N."""
    gan = variant != "net"
    tables = {}
    if variant == "gan-fm-teacher":
        tables = {"loss": {"feature_matching_weight": 0.5, "phase_weight": 0.5, "texture_weight": 2.0}, "teacher": {"model": str(_teacher_file(tmp_path)), "weight": 0.3, "precision": "fp32"}}
    cfg = _cfg(data, gan, train={"total_iter": 6, "checkpoint_interval": 3}, **tables)

    class Killed(Exception):
        pass

    def kill_at_3(step):
        if step.iteration == 3:
            raise Killed  # the process dies: nothing after the checkpoint of iteration 3 is written

    train(cfg, tmp_path / "a")
    with pytest.raises(Killed):
        train(cfg, tmp_path / "b", on_step=kill_at_3)
    assert [p.name for p in list_checkpoints(tmp_path / "b")] == ["iter_00000003.pt"]
    res = train(cfg, tmp_path / "b")
    assert res.resumed_from.name == "iter_00000003.pt" and res.iteration == 6
    a, b = _log(tmp_path / "a"), _log(tmp_path / "b")
    assert len(a) == 6 and a == b  # every loss of every iteration, bit for bit
    sa, sb = read_checkpoint(tmp_path / "a" / "checkpoints" / "iter_00000006.pt"), read_checkpoint(res.checkpoint)
    assert all(torch.equal(v, sb["net_g_ema"][k]) for k, v in sa["net_g_ema"].items())
    if variant == "gan-fm-teacher":
        assert all(r["l_g_fm"] > 0 and r["l_g_teacher"] > 0 and r["l_g_phase"] > 0 and r["l_g_texture"] > 0 for r in a)
        assert not any("teacher" in k for k in sb) and set(sb["net_g"]) == set(sb["net_g_ema"])  # no teacher stored


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch):
    real = loop_mod.pixel_loss
    calls = []

    def poisoned(sr, gt, criterion="l1"):
        calls.append(1)
        value = real(sr, gt, criterion)
        return value * float("nan") if len(calls) == 3 else value

    monkeypatch.setattr(loop_mod, "pixel_loss", poisoned)
    with pytest.raises(TrainingError) as exc:
        train(_cfg(data), tmp_path / "run")
    msg = str(exc.value)
    assert "iteration 3: l_pix is nan" in msg and "iter_00000002.pt" in msg
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["iter_00000002.pt"]
    assert read_checkpoint(tmp_path / "run" / "checkpoints" / "iter_00000002.pt")["iteration"] == 2


def test_full_disk_keeps_the_previous_checkpoint(data, tmp_path, monkeypatch):
    real = ckpt_mod._save_bytes
    calls = []

    def fill_disk(obj, fh):
        calls.append(1)
        if len(calls) == 2:
            fh.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(obj, fh)

    monkeypatch.setattr(ckpt_mod, "_save_bytes", fill_disk)
    with pytest.raises(TrainingError) as exc:
        train(_cfg(data), tmp_path / "run")
    assert "No space left on device" in str(exc.value) and "iter_00000002.pt kept" in str(exc.value)
    folder = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["iter_00000002.pt"]  # no temporary left
    assert read_checkpoint(folder / "iter_00000002.pt")["iteration"] == 2


def test_resume_flags_and_time_limit(data, tmp_path):
    with pytest.raises(TrainingError, match="no checkpoint here"):
        train(_cfg(data), tmp_path / "run", resume=True)
    res = train(_cfg(data, train={"total_iter": 50}), tmp_path / "run", time_limit=1e-3)
    assert (res.stopped, res.iteration) == ("time-limit", 1)
    assert res.checkpoint.name == "iter_00000001.pt" and res.export.is_file()
    with pytest.raises(TrainingError, match="--no-resume"):
        train(_cfg(data), tmp_path / "run", resume=False)


def test_bad_inputs(data, tmp_path):
    with pytest.raises(DataError, match="folder empty"):
        (tmp_path / "empty").mkdir()
        train(_cfg(data, data={"folders": [str(tmp_path / "empty")]}), tmp_path / "r1")
    other = tmp_path / "rrdb.safetensors"
    info = ModelInfo("RRDBNet", {"num_in_ch": 3, "num_out_ch": 3, "scale": 4, "num_feat": 8, "num_block": 1, "num_grow_ch": 4}, 4)
    from esrcli.archs import build_generator

    save_model(other, build_generator("RRDBNet", info.params), info)
    with pytest.raises(TrainingError) as exc:
        train(_cfg(data, model={"pretrained": str(other)}), tmp_path / "r2")
    assert "pretrained weights are RRDBNet(" in str(exc.value) and "asks for SRVGGNetCompact(" in str(exc.value)
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()  # failed starts leave no empty run folder
    (tmp_path / "mine").mkdir()
    with pytest.raises(TrainingError):
        train(_cfg(data, model={"pretrained": str(other)}), tmp_path / "mine")
    assert (tmp_path / "mine").is_dir()  # a folder the user made stays


def test_train_gan_from_train_net(data, tmp_path):
    net = train(_cfg(data, train={"total_iter": 2}), tmp_path / "net")
    cfg = _cfg(data, gan=True, model={"pretrained": str(tmp_path / "net")}, loss={"gan_type": "ragan"}, train={"total_iter": 2})
    messages = []
    res = train(cfg, tmp_path / "gan", on_message=messages.append)
    assert any(str(net.export) in m for m in messages)
    assert set(res.losses) >= {"l_g_pix", "l_g_percep", "l_g_gan", "l_d_real", "l_d_fake"}
    assert all(np.isfinite(v) for v in res.losses.values())
    state = read_checkpoint(res.checkpoint)
    assert state["stage"] == "gan" and "net_d" in state and "opt_d" in state
    assert load_model(res.export)[1].arch == "SRVGGNetCompact"
    with pytest.raises(TrainingError, match="checkpoint is from train-gan"):
        train(_cfg(data, train={"total_iter": 3}), tmp_path / "gan")
    no_skip = _cfg(data, gan=True, model={"pretrained": str(tmp_path / "net")}, loss={"gan_type": "ragan"},
                   train={"total_iter": 3}, net_d={"skip_connection": False})  # same weights, other network
    with pytest.raises(TrainingError, match="net_d.skip_connection is False, but the checkpoint's run was built with True"):
        train(no_skip, tmp_path / "gan")


def test_train_gan_vgg_discriminator(data, tmp_path):
    """ESRGAN's VGG-style discriminator (128x128 patches) with the hinge loss."""
    cfg = _cfg(data, gan=True, data={"gt_size": 128, "crop_size": 128}, net_d={"type": "vgg"},
               loss={"gan_type": "hinge"}, train={"total_iter": 1, "pool_size": 0})
    res = train(cfg, tmp_path / "gan")
    assert res.iteration == 1 and all(np.isfinite(v) for v in res.losses.values())
    assert any(k.startswith("conv0_0") for k in read_checkpoint(res.checkpoint)["net_d"])


def test_train_gan_teacher_and_feature_matching_values(data, tmp_path, monkeypatch):
    """l_g_teacher = weight * mean|sr - teacher(lq)|, with a teacher whose output is known
    (nearest x4 of lq); l_g_fm = weight * feature_matching_loss; the export records both;
    without VGG19 weights and perceptual_optional the perceptual term is skipped."""
    from esrcli.train import build as build_mod

    recorded = []
    real_call = build_mod.Teacher.__call__

    def spy(self, lq):
        out = real_call(self, lq)
        recorded.append((lq.clone(), out))
        return out

    seen = []
    real_pixel = loop_mod.pixel_loss

    def pixel_spy(sr, target, criterion="l1"):
        value = real_pixel(sr, target, criterion)
        if recorded and target is recorded[-1][1]:
            seen.append((sr.detach().clone(), float(value.detach())))
        return value

    monkeypatch.setattr(build_mod.Teacher, "__call__", spy)
    monkeypatch.setattr(loop_mod, "pixel_loss", pixel_spy)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))  # no VGG19 file there
    cfg = _cfg(data, gan=True, train={"total_iter": 2},
               loss={"vgg_weights": None, "perceptual_optional": True, "feature_matching_weight": 2.0},
               teacher={"model": str(_teacher_file(tmp_path, zero=True)), "weight": 0.5})
    messages = []
    res = train(cfg, tmp_path / "gan", on_message=messages.append)
    assert any("no VGG19 perceptual loss" in m for m in messages) and any("teacher:" in m for m in messages)
    assert len(recorded) == len(seen) == 2
    for (lq, out), (sr, l1) in zip(recorded, seen):
        want = torch.nn.functional.interpolate(lq, scale_factor=4, mode="nearest").clamp(0, 1)
        assert torch.allclose(out, want, atol=1e-2)  # bf16/fp32 teacher by the CPU's support
        assert l1 == pytest.approx(float((sr - out).abs().mean()), rel=1e-5)
    log = _log(tmp_path / "gan")
    assert log[-1]["l_g_teacher"] == pytest.approx(0.5 * seen[-1][1], rel=1e-5)
    assert log[-1]["l_g_percep"] == 0.0 and log[-1]["l_g_fm"] > 0
    meta = load_model(res.export)[1].metadata
    assert meta["teacher"].startswith(str(tmp_path / "teacher_zero.safetensors"))
    assert "feature_matching 2" in meta["losses"] and "teacher 0.5" in meta["losses"] and "perceptual 0," in meta["losses"]
    with pytest.raises(TrainingError, match="teacher.model: .*no such model file or embedded model"):
        train(_cfg(data, gan=True, teacher={"model": str(tmp_path / "nope")}), tmp_path / "g2")


def test_feature_matching_in_the_step_matches_the_loss(data, tmp_path, monkeypatch):
    """The logged l_g_fm is weight * feature_matching_loss of net_d's features on sr and gt."""
    from esrcli.losses import feature_matching_loss as fm

    values = []

    def spy(fake, real):
        v = fm(fake, real)
        values.append(float(v.detach()))
        return v

    monkeypatch.setattr(loop_mod, "feature_matching_loss", spy)
    res = train(_cfg(data, gan=True, train={"total_iter": 1}, loss={"feature_matching_weight": 3.0, "gan_weight": 0.0}), tmp_path / "g")
    assert len(values) == 1 and res.losses["l_g_fm"] == pytest.approx(3.0 * values[0], rel=1e-6) and values[0] > 0
    assert res.losses["l_g_gan"] == 0.0


def test_phase_term_in_the_step_matches_the_loss(data, tmp_path, monkeypatch):
    """The logged l_g_phase is weight * phase_loss(sr, USM GT, scale); the export records it."""
    from esrcli.losses import phase_loss

    calls = []

    def spy(sr, target, period):
        v = phase_loss(sr, target, period)
        calls.append((period, float(v.detach())))
        return v

    monkeypatch.setattr(loop_mod, "phase_loss", spy)
    res = train(_cfg(data, gan=True, train={"total_iter": 1}, loss={"phase_weight": 4.0}), tmp_path / "g")
    assert len(calls) == 1 and calls[0][0] == 4 and calls[0][1] > 0
    assert res.losses["l_g_phase"] == pytest.approx(4.0 * calls[0][1], rel=1e-6)
    assert "phase 4" in load_model(res.export)[1].metadata["losses"]
    res = train(_cfg(data, gan=True, train={"total_iter": 1}), tmp_path / "g0")
    assert len(calls) == 1 and "l_g_phase" not in res.losses and "phase" not in load_model(res.export)[1].metadata["losses"]


def test_texture_term_in_the_step_matches_the_loss(data, tmp_path, monkeypatch):
    """The logged l_g_texture is weight * texture_loss(sr, USM GT); the export records it."""
    from esrcli.losses import texture_loss

    calls = []

    def spy(sr, target):
        v = texture_loss(sr, target)
        calls.append((tuple(sr.shape), float(v.detach())))
        return v

    monkeypatch.setattr(loop_mod, "texture_loss", spy)
    res = train(_cfg(data, gan=True, train={"total_iter": 1}, loss={"texture_weight": 20.0}), tmp_path / "g")
    assert len(calls) == 1 and calls[0][1] > 0
    assert res.losses["l_g_texture"] == pytest.approx(20.0 * calls[0][1], rel=1e-6)
    assert "texture 20" in load_model(res.export)[1].metadata["losses"]
    res = train(_cfg(data, gan=True, train={"total_iter": 1}), tmp_path / "g0")
    assert len(calls) == 1 and "l_g_texture" not in res.losses and "texture" not in load_model(res.export)[1].metadata["losses"]


def test_discriminator_warmup_warns_nothing(data, tmp_path):
    """While only net_d learns (net_d.d_init_iters) the generator's schedule still counts the
    iterations, without torch's "lr_scheduler.step() before optimizer.step()" warning."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = train(_cfg(data, gan=True, train={"total_iter": 3}, net_d={"d_init_iters": 2}), tmp_path / "g")
    assert res.iteration == 3 and not [w for w in caught if "lr_scheduler" in str(w.message)]
    assert [r.get("l_g_gan") is not None for r in _log(tmp_path / "g")] == [False, False, True]


def _write_cfg(path: Path, cfg) -> Path:
    path.write_text(to_toml(cfg) + "\n")
    return path


def test_cli_train_net_and_missing_vgg(data, tmp_path, esr, monkeypatch):
    (data / "hr_plus").mkdir(exist_ok=True)
    for f in (data / "hr").iterdir():
        (data / "hr_plus" / f.name).write_bytes(f.read_bytes())
    (data / "hr_plus" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    cfg = _write_cfg(tmp_path / "net.toml", _cfg(data, data={"folders": [str(data / "hr_plus")]}, train={"total_iter": 2}))
    rc, out, err = esr("train-net", cfg, "-o", tmp_path / "out")
    assert rc == 0, err
    assert "1 training file(s) skipped" in err and "broken.jpg" in err
    assert "stopped: done at iteration 2/2" in out and "net_g_ema.safetensors" in out
    rc, _, err = esr("train-net", cfg, "-o", tmp_path / "out", "--time-limit", "soon")
    assert rc == 2 and "not a duration" in err
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    gan = _cfg(data, gan=True, loss={"vgg_weights": None}, train={"total_iter": 1})
    rc, _, err = esr("train-gan", _write_cfg(tmp_path / "gan.toml", gan), "-o", tmp_path / "gan")
    assert rc == 1 and "VGG19 weights for the perceptual loss not found" in err and "hint:" in err
    assert "or train without it: loss.perceptual_weight = 0" in err  # the way on a machine without internet


def test_parse_duration():
    from esrcli.cli.train import parse_duration

    assert parse_duration("2h30m") == 9000 and parse_duration("90") == 90 and parse_duration("1.5h") == 5400


@pytest.mark.slow
def test_distributed_two_cpu_processes(data, tmp_path):
    """torchrun with 2 gloo processes: sharded data, files written by rank 0 only."""
    cfg = _write_cfg(tmp_path / "ddp.toml", _cfg(data, train={"total_iter": 3, "checkpoint_interval": 3, "threads": 1}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "esrcli", "train-net", str(cfg), "-o", str(tmp_path / "out")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("stopped: done at iteration 3/3") == 1  # one summary: rank 0
    assert [r["iter"] for r in _log(tmp_path / "out")] == [1, 2, 3]
    assert [p.name for p in list_checkpoints(tmp_path / "out")] == ["iter_00000003.pt"]
    assert load_model(tmp_path / "out" / "net_g_ema.safetensors")[1].params["num_feat"] == 8


def test_accumulation_clipping_and_cosine(data, tmp_path):
    cfg = _cfg(data, train={"total_iter": 2, "accum_steps": 2, "grad_clip": 0.1, "scheduler": "cosine",
                            "warmup_iter": 2, "pool_size": 0, "checkpoint_interval": 2})
    res = train(cfg, tmp_path / "run")
    log = _log(tmp_path / "run")
    assert [r["lr"] for r in log] == pytest.approx([1e-4, 2e-4])  # linear warm-up over 2 iterations
    assert res.iteration == 2 and np.isfinite(res.losses["l_pix"])


def test_resume_takes_the_configs_learning_rate_and_refuses_another_gt_size(data, tmp_path):
    cfg = _cfg(data, train={"total_iter": 4, "checkpoint_interval": 2})
    train(cfg, tmp_path / "run")
    notes: list[str] = []
    more = _cfg(data, train={"total_iter": 6, "checkpoint_interval": 2, "lr": 1e-3})
    train(more, tmp_path / "run", on_message=notes.append)
    lrs = [r["lr"] for r in _log(tmp_path / "run") if "lr" in r]
    assert lrs[:4] == [2e-4] * 4 and lrs[4:] == [1e-3, 1e-3]  # the checkpoint's rate before, the config's after
    assert any("train.lr is 0.001 (the checkpoint's run had 0.0002)" in n for n in notes)
    # another GT size with the pair pool: refused before anything is written
    before = (tmp_path / "run" / "config.toml").read_text()
    other = _cfg(data, train={"total_iter": 8, "checkpoint_interval": 2}, data={"gt_size": 24, "crop_size": 40})
    with pytest.raises(TrainingError, match="32 px GT crops, data.gt_size is 24") as exc:
        train(other, tmp_path / "run")
    assert "data.gt_size" in exc.value.hint and (tmp_path / "run" / "config.toml").read_text() == before
    # another generator: the message names the setting that changed, shapes or not
    wider = _cfg(data, train={"total_iter": 8}, model={"num_feat": 16})
    with pytest.raises(TrainingError, match=r"model\.num_feat is 16, but the checkpoint's run was built with 8"):
        train(wider, tmp_path / "run")
    bilinear = _cfg(data, train={"total_iter": 8}, model={"upsample": "bilinear"})  # same shapes, other network
    with pytest.raises(TrainingError, match=r"model\.upsample is 'bilinear', but the checkpoint's run was built with 'nearest'") as exc:
        train(bilinear, tmp_path / "run")
    assert "keep [model] as it was" in exc.value.hint and (tmp_path / "run" / "config.toml").read_text() == before


def test_run_folder_rules(data, tmp_path):
    from esrcli.atomic import folder_lock

    cfg = _cfg(data, train={"total_iter": 2, "checkpoint_interval": 2})
    # -o names a file
    (tmp_path / "file").write_text("x")
    with pytest.raises(TrainingError, match="file: exists and is not a folder"):
        train(cfg, tmp_path / "file")
    # another run holds the folder
    (tmp_path / "busy").mkdir()
    with folder_lock(tmp_path / "busy") as mine:
        assert mine
        with pytest.raises(TrainingError, match="another esr training run is writing to this folder"):
            train(cfg, tmp_path / "busy")
    # a finished run whose checkpoints were deleted: not overwritten unless asked
    train(cfg, tmp_path / "done")
    for p in list_checkpoints(tmp_path / "done"):
        p.unlink()
    with pytest.raises(TrainingError, match="earlier run's net_g_ema.safetensors and exports but no checkpoint") as exc:
        train(cfg, tmp_path / "done")
    assert "--no-resume" in exc.value.hint
    assert train(cfg, tmp_path / "done", resume=False).iteration == 2
    # a checkpoint write cut by a kill leaves its temporary file; the next run removes it
    stale = tmp_path / "done" / "checkpoints" / ".iter_00000004.pt.abc123.part"
    stale.write_bytes(b"half")
    train(_cfg(data, train={"total_iter": 4, "checkpoint_interval": 2}), tmp_path / "done")
    assert not stale.exists()


def test_config_and_device_problems_are_named(data, tmp_path):
    from esrcli.errors import ConfigError

    with pytest.raises(ConfigError, match=r"perceptual_layers\[1\]: 'conv9_9' is no VGG19 layer"):
        _cfg(data, True, loss={"perceptual_layers": ["conv1_2", "conv9_9"], "perceptual_layer_weights": [1.0, 1.0]})
    if not torch.cuda.is_available():
        with pytest.raises(TrainingError, match="train.device: 'cuda' requested but CUDA is not available"):
            train(_cfg(data, train={"device": "cuda"}), tmp_path / "r")


def test_pretrained_checkpoint_gives_its_ema_weights(data, tmp_path):
    cfg = _cfg(data, train={"total_iter": 2, "checkpoint_interval": 2})
    res = train(cfg, tmp_path / "run")
    state = read_checkpoint(res.checkpoint)
    net, _ = load_model(res.checkpoint)
    got = net.state_dict()
    assert all(torch.equal(got[k], v.float()) for k, v in state["net_g_ema"].items())
    assert any(not torch.equal(state["net_g"][k], v) for k, v in state["net_g_ema"].items())


def test_bilinear_fine_tune_of_nearest_weights(data, tmp_path):
    """A nearest-residual model is a valid start for a bilinear-residual run (same keys): it
    loads, the run says so, and the export records the bilinear residual."""
    first = train(_cfg(data, train={"total_iter": 2, "checkpoint_interval": 2}), tmp_path / "near")
    notes: list[str] = []
    cfg = _cfg(data, model={"upsample": "bilinear", "pretrained": str(first.export)}, train={"total_iter": 2, "checkpoint_interval": 2})
    res = train(cfg, tmp_path / "bil", on_message=notes.append)
    assert any("trained on a nearest global residual; this run uses bilinear" in n for n in notes), notes
    net, info = load_model(res.export)
    assert info.params["upsample"] == "bilinear" and net.upsample == "bilinear"
    # The checkpoint's stored config says what its weights cannot (also a LeakyReLU).
    assert load_model(res.checkpoint)[1].params["upsample"] == "bilinear"
    assert "upsample" not in load_model(first.checkpoint)[1].params
    leaky = train(_cfg(data, model={"act_type": "leakyrelu"}, train={"total_iter": 2, "checkpoint_interval": 2}), tmp_path / "leaky")
    assert load_model(leaky.checkpoint)[1].params["act_type"] == "leakyrelu"
    other = _cfg(data, model={"num_feat": 4, "upsample": "bilinear", "pretrained": str(first.export)})
    with pytest.raises(TrainingError, match="pretrained weights are SRVGGNetCompact"):  # other shapes still refused
        train(other, tmp_path / "bad")


def test_a_bad_validation_file_is_reported(data, tmp_path):
    import shutil

    val = tmp_path / "val"
    val.mkdir()
    shutil.copy(data / "val" / "v0.png", val / "v0.png")
    (val / "broken.png").write_bytes(b"not an image")
    notes: list[str] = []
    cfg = _cfg(data, train={"total_iter": 2, "checkpoint_interval": 2}, val={"folders": [str(val)], "interval": 2})
    res = train(cfg, tmp_path / "run", on_message=notes.append)
    assert res.val and any("1 validation file(s) skipped" in n and "broken.png" in n for n in notes)


def test_ctrl_c_stops_at_the_next_iteration_with_a_checkpoint(data, tmp_path):
    """Ctrl-C in a terminal (SIGINT to the whole process group, loader workers included): the
    run stops after its iteration with a checkpoint and an export, exits 130, and resumes."""
    import signal
    import time

    cfg = _cfg(data, data={"num_workers": 1}, train={"total_iter": 100000, "checkpoint_interval": 100000, "threads": 1})
    path = _write_cfg(tmp_path / "long.toml", cfg)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "esrcli", "train-net", str(path), "-o", str(tmp_path / "run")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        log = tmp_path / "run" / "metrics.jsonl"
        while time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 3):
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    reached = int(out.split("stopped: interrupted at iteration ")[1].split("/")[0])
    assert reached >= 3 and "stopping training at the next iteration" in err and "Traceback" not in err
    assert "resume from iteration" in err and "error" not in err  # a clean stop is not reported as an error
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == [f"iter_{reached:08d}.pt"]
    assert load_model(tmp_path / "run" / "net_g_ema.safetensors")[1].metadata.get("iterations") == str(reached)
    # the same command, with an end in sight, carries on from there
    _write_cfg(path, _cfg(data, data={"num_workers": 1}, train={"total_iter": reached + 2, "checkpoint_interval": 100000, "threads": 1}))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"resumed from" in proc.stderr and f"stopped: done at iteration {reached + 2}/{reached + 2}" in proc.stdout


def test_stop_requested_stops_like_the_time_limit(data, tmp_path):
    calls = []
    res = train(_cfg(data, train={"total_iter": 10, "checkpoint_interval": 10}), tmp_path / "run", stop_requested=lambda: calls.append(1) or len(calls) >= 2)
    assert res.stopped == "interrupted" and res.iteration == 2
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["iter_00000002.pt"]
    last = train(_cfg(data, train={"total_iter": 3, "checkpoint_interval": 10}), tmp_path / "run", stop_requested=lambda: True)
    assert (last.stopped, last.iteration) == ("done", 3)  # asked during the last iteration: nothing is left to resume
