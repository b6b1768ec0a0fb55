"""CSRGAN-style joint model: degradation parameter vectors, the pooled targets, the head in
train-net / train-gan, its checkpoints, and exports that stay the generator alone."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from esrcli.archs import RRDBNet, SRVGGNetCompact
from esrcli.archs.deghead import DegradationHead, TrunkTap
from esrcli.config import from_dict
from esrcli.config.degrade import DegradeConfig
from esrcli.config.train import TrainGanConfig, TrainNetConfig
from esrcli.degrade import PairPool, sample_params, synthesize_pairs
from esrcli.degrade.vector import PARAM_NAMES, param_vector
from esrcli.errors import ConfigError, TrainingError
from esrcli.train.checkpoint import list_checkpoints, read_checkpoint
from esrcli.train.loop import train
from esrcli.train.pairs import PairMaker
from esrcli.weights.io import load_state_dict

COL = {name: i for i, name in enumerate(PARAM_NAMES)}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("deg_data")
    (root / "hr").mkdir()
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:64, 0:64]
    for i in range(4):
        smooth = 0.5 + 0.4 * np.sin(xx / (3 + i) + yy / 5.0)[..., None] * np.array([1.0, 0.8, 0.6])
        img = np.clip(smooth + 0.05 * rng.standard_normal((64, 64, 3)), 0, 1)
        cv2.imwrite(str(root / "hr" / f"im{i}.png"), (img * 255).astype(np.uint8))
    return root


def _cfg(root: Path, gan: bool = False, **tables):
    d = {
        "model": {"arch": "SRVGGNetCompact", "num_feat": 8, "num_conv": 2, "predict_degradation": True},
        "data": {"folders": [str(root / "hr")], "gt_size": 32, "crop_size": 40, "num_workers": 0},
        "train": {"total_iter": 4, "batch_size": 2, "pool_size": 4, "checkpoint_interval": 2, "log_interval": 1,
                  "precision": "fp32", "keep_checkpoints": 4, "seed": 1, "compile_kernels": False},
    }
    if gan:
        d["loss"] = {"perceptual_weight": 0.0}
        d["net_d"] = {"num_feat": 8}
    for k, v in tables.items():
        d[k] = {**d.get(k, {}), **v}
    return from_dict(TrainGanConfig if gan else TrainNetConfig, d)


def _log(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(x).items() if k != "time"} for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_vector_reads_the_drawn_parameters():
    params = sample_params(DegradeConfig(), 64, torch.Generator().manual_seed(5))
    vec = param_vector(params)
    assert vec.shape == (64, len(PARAM_NAMES)) and vec.dtype == torch.float32
    assert float(vec.min()) >= 0 and float(vec.max()) <= 1.0 + 1e-6
    for p, v in zip(params, vec.tolist()):
        assert v[COL["jpeg1"]] == pytest.approx((100 - p["first"]["jpeg_quality"]) / 100)
        assert v[COL["jpeg2"]] == pytest.approx((100 - p["final"]["jpeg_quality"]) / 100)
        assert v[COL["resize2"]] == pytest.approx(p["second"]["resize"]["factor"] / 1.5)
        n1 = p["first"]["noise"]
        if n1["type"] == "gaussian":
            assert (v[COL["noise1_gauss"]], v[COL["noise1_poisson"]]) == (pytest.approx(n1["sigma"] / 30), 0.0)
        else:
            assert (v[COL["noise1_gauss"]], v[COL["noise1_poisson"]]) == (0.0, pytest.approx(n1["scale"] / 3))
        k2 = p["second"]["blur"]
        if k2 is None:
            assert v[COL["blur2_sigma"]] == v[COL["blur2_sinc"]] == 0.0
        elif k2["type"] != "sinc":
            assert v[COL["blur2_sigma"]] == pytest.approx(math.sqrt(k2["sigma_x"] * k2["sigma_y"]) / 3)
        assert (v[COL["final_sinc"]] > 0) == (p["final"]["sinc"] is not None)
    # every kind of step happens in 64 samples of the default pipeline
    assert (vec[:, COL["blur2_sigma"]] == 0).any() and (vec[:, COL["noise1_poisson"]] > 0).any() and (vec[:, COL["final_sinc"]] > 0).any()
    again = param_vector(sample_params(DegradeConfig(), 64, torch.Generator().manual_seed(5)))
    assert torch.equal(vec, again)
    with pytest.raises(ValueError, match="sample 0 lack"):
        param_vector([{"first": {}}])


def test_noise_free_blur_free_config_gives_zero_entries():
    quiet = {"gaussian_noise_prob": 1.0, "noise_range": [0.0, 0.0], "blur_prob": 0.0}
    cfg = from_dict(DegradeConfig, {"first": quiet, "second": quiet, "final": {"sinc_prob": 0.0}})
    vec = param_vector(sample_params(cfg, 16, torch.Generator().manual_seed(0)))
    zero = ["blur1_sigma", "blur1_sinc", "noise1_gauss", "noise1_poisson", "blur2_sigma", "blur2_sinc",
            "noise2_gauss", "noise2_poisson", "final_sinc"]
    assert torch.all(vec[:, [COL[n] for n in zero]] == 0)
    assert torch.all(vec[:, COL["resize1"]] > 0) and torch.all(vec[:, COL["jpeg1"]] > 0)


def test_pairs_are_the_same_with_and_without_the_parameters(data):
    """The vector draws nothing: lq/gt for a seed are identical, through the pool's shuffles too."""
    crops = [torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(i)) for i in range(5)]
    plain = PairMaker(_cfg(data, model={"predict_degradation": False}), torch.device("cpu"), 7)
    joint = PairMaker(_cfg(data), torch.device("cpu"), 7)
    for c in crops:  # pool of 4 = 2 batches: the last three calls exchange
        a, b = plain.make(c), joint.make(c)
        assert "deg" not in a and b["deg"].shape == (2, len(PARAM_NAMES))
        assert all(torch.equal(a[k], b[k]) for k in ("lq", "gt", "gt_usm"))
    assert torch.equal(plain.generator.get_state(), joint.generator.get_state())
    # and both equal the pairs made the way PairMaker did before the parameters existed
    cfg = _cfg(data, train={"gt_usm": True})
    ref_gen, pool = torch.Generator().manual_seed(7), PairPool(4, 2)
    joint = PairMaker(cfg, torch.device("cpu"), 7)
    for c in crops:
        gt, usm, lq, _ = synthesize_pairs(c, cfg.degrade, ref_gen, gt_usm=True, degrade_usm=True)
        lq, gt, usm = pool.exchange(lq, gt, usm, generator=ref_gen)
        out = joint.make(c)
        assert torch.equal(out["lq"], lq) and torch.equal(out["gt"], gt) and torch.equal(out["gt_usm"], usm)


def test_pool_keeps_each_parameter_row_with_its_pair():
    pool, gen = PairPool(pool_size=6, batch_size=2), torch.Generator().manual_seed(0)
    for step in range(10):
        ids = torch.tensor([2.0 * step, 2.0 * step + 1])
        batch = {"lq": ids.view(2, 1, 1, 1).expand(2, 3, 2, 2), "gt": ids.view(2, 1, 1, 1).expand(2, 3, 8, 8), "deg": ids[:, None].expand(2, 13)}
        out = pool.exchange_batch(batch, gen)
        assert torch.equal(out["deg"][:, 0], out["lq"][:, 0, 0, 0]) and torch.equal(out["gt"][:, 0, 0, 0], out["lq"][:, 0, 0, 0])


def test_trunk_tap_and_head_shapes():
    for net, feat in ((SRVGGNetCompact(num_feat=8, num_conv=2), 8), (RRDBNet(num_feat=8, num_block=1, num_grow_ch=4), 8)):
        keys = set(net.state_dict())
        tap = TrunkTap(net)
        out = net(torch.rand(2, 3, 12, 12))
        f = tap.pop()
        assert out.shape == (2, 3, 48, 48) and f.shape == (2, feat, 12, 12)
        assert DegradationHead(feat, len(PARAM_NAMES))(f).shape == (2, len(PARAM_NAMES))
        with pytest.raises(RuntimeError, match="no forward pass"):
            tap.pop()
        assert set(net.state_dict()) == keys  # the hook adds nothing to the generator
        tap.remove()
        net(torch.rand(1, 3, 8, 8))
        with pytest.raises(RuntimeError):
            tap.pop()


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        ({"model": {"predict_degradation": "yes"}}, "model.predict_degradation: expected true or false"),
        ({"train": {"predict_weight": -0.5}}, "train.predict_weight: must be >= 0"),
        ({"train": {"predict_weight": "0.1"}}, "train.predict_weight"),
        ({"model": {"predict_degradations": True}}, "model.predict_degradations"),
    ],
)
def test_config_keys_are_typed(tables, message):
    d = {"model": {"arch": "SRVGGNetCompact"}, **{k: v for k, v in tables.items() if k != "model"}}
    d["model"].update(tables.get("model", {}))
    with pytest.raises(ConfigError, match=message):
        from_dict(TrainNetConfig, d)
    assert from_dict(TrainNetConfig, {}).model.predict_degradation is False
    assert from_dict(TrainNetConfig, {}).train.predict_weight == 0.1


def test_head_learns_on_a_short_run(data, tmp_path):
    cfg = _cfg(data, train={"total_iter": 40, "pool_size": 0, "lr": 2e-3, "checkpoint_interval": 40, "predict_weight": 1.0})
    res = train(cfg, tmp_path / "run")
    log = [r for r in _log(tmp_path / "run") if "l_pred" in r]
    assert len(log) == 40 and all(np.isfinite(r["l_pred"]) and r["pred_mae"] > 0 for r in log)
    first, last = np.mean([r["l_pred"] for r in log[:8]]), np.mean([r["l_pred"] for r in log[-8:]])
    assert last < 0.5 * first, (first, last)
    state = read_checkpoint(res.checkpoint)
    assert set(state["net_p"]) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}


@pytest.mark.parametrize("gan", [False, True])
def test_resume_is_exact_and_exports_are_the_generator_alone(data, tmp_path, gan):
    cfg = _cfg(data, gan, train={"total_iter": 4, "checkpoint_interval": 2})

    class Killed(Exception):
        pass

    def kill_at_2(step):
        if step.iteration == 2:
            raise Killed

    train(cfg, tmp_path / "a")
    with pytest.raises(Killed):
        train(cfg, tmp_path / "b", on_step=kill_at_2)
    res = train(cfg, tmp_path / "b")
    assert res.resumed_from.name == "iter_00000002.pt"
    a, b = _log(tmp_path / "a"), _log(tmp_path / "b")
    key = "l_g_pred" if gan else "l_pred"
    assert len(a) == 4 and a == b and all(r[key] > 0 and "pred_mae" in r for r in a)
    sa, sb = read_checkpoint(tmp_path / "a" / "checkpoints" / "iter_00000004.pt"), read_checkpoint(res.checkpoint)
    assert all(torch.equal(v, sb["net_p"][k]) for k, v in sa["net_p"].items())
    assert all(torch.equal(v, sb["net_g"][k]) for k, v in sa["net_g"].items())
    # the export holds the generator's BasicSR keys only, as a run without the head
    plain = train(_cfg(data, gan, model={"predict_degradation": False}, train={"total_iter": 1}), tmp_path / "plain")
    exported = load_state_dict(res.export)
    assert set(exported) == set(load_state_dict(plain.export)) == set(SRVGGNetCompact(num_feat=8, num_conv=2).state_dict())
    # a checkpoint with a head does not resume into a run without one, nor the other way
    with pytest.raises(TrainingError, match="has a degradation head"):
        train(_cfg(data, gan, model={"predict_degradation": False}, train={"total_iter": 6}), tmp_path / "b")
    with pytest.raises(TrainingError, match="has no degradation head"):
        train(_cfg(data, gan, train={"total_iter": 6}), tmp_path / "plain")
    assert [p.name for p in list_checkpoints(tmp_path / "b")] == ["iter_00000002.pt", "iter_00000004.pt"]
