"""Small pieces of the training loop: EMA, schedules, checkpoint files, precision, pretrained loading."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from esrcli.config import from_dict
from esrcli.config.train import TrainOptions
from esrcli.errors import TrainingError
from esrcli.train.build import select_precision
from esrcli.train.checkpoint import latest_checkpoint, list_checkpoints, read_checkpoint, write_checkpoint, checkpoint_path
from esrcli.train.ema import ema_update, make_ema
from esrcli.train.schedule import build_scheduler, lr_factor


def test_ema_update():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = make_ema(net)
    assert all(not p.requires_grad for p in ema.parameters())
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
        net[1].running_mean.fill_(3.0)
    before = [p.clone() for p in ema.parameters()]
    ema_update(ema, net, 0.9)
    for b, e, n in zip(before, ema.parameters(), net.parameters()):
        assert torch.allclose(e, 0.9 * b + 0.1 * n)
    assert torch.equal(ema[1].running_mean, net[1].running_mean)
    ema_update(ema, net, 0.0)
    assert all(torch.equal(e, n) for e, n in zip(ema.parameters(), net.parameters()))


def test_schedules():
    ms = from_dict(TrainOptions, {"milestones": [10, 20], "gamma": 0.5, "total_iter": 30})
    assert [lr_factor(i, ms) for i in (0, 9, 10, 19, 20, 29)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    cos = from_dict(TrainOptions, {"scheduler": "cosine", "total_iter": 100, "warmup_iter": 10, "lr": 1e-3, "eta_min": 0.0})
    assert lr_factor(0, cos) == pytest.approx(0.1) and lr_factor(9, cos) == pytest.approx(1.0)
    assert lr_factor(10, cos) == pytest.approx(1.0) and lr_factor(55, cos) == pytest.approx(0.5)
    assert lr_factor(100, cos) == pytest.approx(0.0, abs=1e-12)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, ms)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[9] == 1.0 and lrs[10] == 0.5  # lr of iteration i (0-based) is lr_factor(i)


def test_checkpoint_rotation_and_errors(tmp_path):
    for it in (1, 2, 3, 10):
        write_checkpoint(checkpoint_path(tmp_path, it), {"iteration": it, "net_g": {"w": torch.ones(2) * it}}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["iter_00000003.pt", "iter_00000010.pt"]
    assert read_checkpoint(latest_checkpoint(tmp_path))["net_g"]["w"].tolist() == [10.0, 10.0]
    bad = tmp_path / "checkpoints" / "iter_00000011.pt"
    bad.write_bytes(b"truncated")
    with pytest.raises(TrainingError, match="not a readable esr checkpoint"):
        read_checkpoint(bad)
    torch.save({"foo": 1}, bad)
    with pytest.raises(TrainingError, match="not an esr training checkpoint"):
        read_checkpoint(bad)


def test_precision_selection():
    cpu = torch.device("cpu")
    assert select_precision("fp32", cpu).dtype is None
    assert select_precision("bf16", cpu).dtype == torch.bfloat16
    fp16 = select_precision("fp16", cpu)
    assert fp16.dtype == torch.float16 and fp16.use_scaler
    assert select_precision("auto", cpu).name in ("bf16", "fp32")
    with torch.no_grad(), select_precision("bf16", cpu).autocast():
        y = nn.Linear(4, 4)(torch.rand(2, 4))
    assert y.dtype == torch.bfloat16
    assert not math.isnan(float(y.float().sum()))


def test_metrics_log_truncates_on_resume_and_feeds_tensorboard(tmp_path, monkeypatch):
    import json
    import sys
    import types

    from esrcli.train.logger import MetricsLog

    scalars = []

    class FakeWriter:
        def __init__(self, log_dir, purge_step=None):
            self.purge_step = purge_step

        def add_scalar(self, tag, value, step):
            scalars.append((tag, value, step))

        def close(self):
            pass

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    log = MetricsLog(tmp_path)
    for it in (1, 2, 3):
        log.write({"iter": it, "l_pix": 0.5 / it, "lr": 1e-4})
    log.write({"iter": 4, "l_pix": float("nan")})
    log.close()
    assert ("l_pix", 0.25, 2) in scalars and ("lr", 1e-4, 3) in scalars
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["l_pix"] == "nan"
    with open(tmp_path / "metrics.jsonl", "a") as fh:
        fh.write('{"iter": 5, "l_p')  # cut by a kill
    MetricsLog(tmp_path, resume_iter=2, tensorboard=False).close()
    assert [json.loads(x)["iter"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_compiled_kernels_switched_on_only_where_they_apply():
    """train.compile_kernels (default on): the compact net's compiled PReLU backward on the
    CPU, not with whole-model train.compile, not for RRDBNet, not on other devices."""
    from esrcli.archs import RRDBNet, SRVGGNetCompact
    from esrcli.train.build import use_compiled_kernels

    cpu = torch.device("cpu")

    def flags(net: nn.Module) -> set[bool]:
        return {m.compiled_backward for m in net.modules() if hasattr(m, "compiled_backward")}

    opts = TrainOptions()
    assert opts.compile_kernels
    net = SRVGGNetCompact(num_feat=4, num_conv=1)
    assert flags(net) == {False}
    assert not use_compiled_kernels(net, from_dict(TrainOptions, {"compile_kernels": False}), cpu)
    assert not use_compiled_kernels(net, from_dict(TrainOptions, {"compile": True}), cpu)
    assert not use_compiled_kernels(net, opts, torch.device("cuda"))
    assert flags(net) == {False}
    assert use_compiled_kernels(net, opts, cpu) and flags(net) == {True}
    assert not use_compiled_kernels(RRDBNet(num_feat=4, num_block=1, num_grow_ch=2), opts, cpu)


def test_pairs_degraded_on_the_cpu_are_the_same_pairs():
    """train.degrade_on_cpu only moves where the degradation runs: same seed, same pairs."""
    from esrcli.config import from_dict
    from esrcli.config.train import TrainNetConfig
    from esrcli.train.pairs import PairMaker

    out = []
    for flag in (False, True):
        cfg = from_dict(TrainNetConfig, {"data": {"gt_size": 32, "crop_size": 40}, "train": {"batch_size": 2, "pool_size": 4, "degrade_on_cpu": flag}})
        maker = PairMaker(cfg, torch.device("cpu"), seed=3)
        torch.manual_seed(0)
        crops = torch.rand(2, 3, 40, 40)
        out.append([maker.make(crops) for _ in range(3)])
    for a, b in zip(*out):
        assert a["lq"].shape == (2, 3, 8, 8) and all(torch.equal(a[k], b[k]) for k in ("lq", "gt", "gt_usm"))
