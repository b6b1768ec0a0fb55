"""Network interpolation: the library function and ``esr interp``."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from esrcli.archs import RRDBNet, SRVGGNetCompact, VGGStyleDiscriminator
from esrcli.errors import WeightsError
from esrcli.weights import ModelInfo, interpolate, interpolate_files, load_model, load_state_dict, save_model


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks run fastest (and steadiest on a loaded 2-core machine) on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SMALL = dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=8, num_block=1, num_grow_ch=4)


def _rrdb(seed):
    torch.manual_seed(seed)
    return RRDBNet(**SMALL)


def test_interpolate_midpoint_and_ends():
    a, b = _rrdb(0).state_dict(), _rrdb(1).state_dict()
    mid = interpolate(a, b, 0.5)
    for k in a:
        torch.testing.assert_close(mid[k], (a[k] + b[k]) / 2)
    assert all(torch.equal(interpolate(a, b, 0.0)[k], a[k]) for k in a)
    assert all(torch.equal(interpolate(a, b, 1.0)[k], b[k]) for k in a)
    q = interpolate(a, b, 0.25)
    torch.testing.assert_close(q["conv_last.bias"], 0.75 * a["conv_last.bias"] + 0.25 * b["conv_last.bias"])


def test_interpolate_copies_non_float_buffers():
    a = VGGStyleDiscriminator(num_feat=2).state_dict()
    b = VGGStyleDiscriminator(num_feat=2).state_dict()
    b["bn0_1.num_batches_tracked"] = torch.tensor(7)
    out = interpolate(a, b, 0.5)
    assert out["bn0_1.num_batches_tracked"].item() == a["bn0_1.num_batches_tracked"].item()
    assert out["bn0_1.num_batches_tracked"].dtype == torch.int64


def test_interpolate_errors():
    a, b = _rrdb(0).state_dict(), _rrdb(1).state_dict()
    with pytest.raises(ValueError, match="alpha"):
        interpolate(a, b, 1.5)
    with pytest.raises(ValueError, match="alpha"):
        interpolate(a, b, -0.1)
    c = dict(b)
    del c["conv_hr.bias"]
    with pytest.raises(WeightsError, match="only in A: conv_hr.bias"):
        interpolate(a, c, 0.5)
    c = dict(b)
    c["conv_hr.bias"] = torch.zeros(9)
    with pytest.raises(WeightsError, match=r"conv_hr.bias: shape \(8,\) in A vs \(9,\) in B"):
        interpolate(a, c, 0.5)


def test_interpolate_files_across_formats(tmp_path):
    net_a, net_b = _rrdb(0), _rrdb(1)
    pa = tmp_path / "psnr.pth"
    torch.save({"params": net_a.state_dict()}, pa)
    pb = tmp_path / "gan.safetensors"
    save_model(pb, net_b, ModelInfo("RRDBNet", SMALL, 4))
    out = tmp_path / "mix.safetensors"
    info = interpolate_files(pa, pb, 0.5, out)
    assert info.params == SMALL
    sd = load_state_dict(out)
    for k, v in net_a.state_dict().items():
        torch.testing.assert_close(sd[k], (v + net_b.state_dict()[k]) / 2)
    with safe_open(str(out), framework="pt") as fh:
        meta = fh.metadata()
    assert meta["parents"] == f"{pa},{pb}" and float(meta["alpha"]) == 0.5  # as given: runs all export net_g_ema
    net, info2 = load_model(out)
    assert info2.metadata["alpha"] == "0.5"


def test_interpolate_files_mismatch(tmp_path):
    pa, pb, pc = tmp_path / "a.pth", tmp_path / "b.pth", tmp_path / "c.pth"
    torch.save(_rrdb(0).state_dict(), pa)
    torch.save(RRDBNet(**dict(SMALL, num_block=2)).state_dict(), pb)
    torch.save(SRVGGNetCompact(num_feat=4, num_conv=1).state_dict(), pc)
    with pytest.raises(WeightsError, match=r"a.pth and .*b.pth: different RRDBNet hyper-parameters \(num_block 1 vs 2\)"):
        interpolate_files(pa, pb, 0.5, tmp_path / "o.safetensors")
    with pytest.raises(WeightsError, match=r"a.pth and .*c.pth: different architectures \(RRDBNet vs SRVGGNetCompact\)"):
        interpolate_files(pa, pc, 0.5, tmp_path / "o.safetensors")
    assert not (tmp_path / "o.safetensors").exists()


def test_cli_interp(esr, tmp_path):
    pa, pb = tmp_path / "a.pth", tmp_path / "b.pth"
    torch.save({"params_ema": _rrdb(0).state_dict()}, pa)
    torch.save({"params_ema": _rrdb(1).state_dict()}, pb)
    out = tmp_path / "m.safetensors"
    rc, stdout, err = esr("interp", pa, pb, "--alpha", "0.2", "-o", out)
    assert rc == 0, err
    assert str(out) in stdout and "alpha=0.2" in stdout
    sd, a, b = load_state_dict(out), load_state_dict(pa), load_state_dict(pb)
    torch.testing.assert_close(sd["conv_first.weight"], 0.8 * a["conv_first.weight"] + 0.2 * b["conv_first.weight"])

    for bad in ("1.5", "-0.1", "nan"):
        rc, _, err = esr("interp", pa, pb, "--alpha", bad, "-o", tmp_path / "bad.safetensors")
        assert rc == 2 and "--alpha: must be between 0 and 1, got" in err, (bad, err)
        assert not (tmp_path / "bad.safetensors").exists()
    other = tmp_path / "other.pth"
    torch.save(RRDBNet(**dict(SMALL, num_feat=4)).state_dict(), other)
    rc, _, err = esr("interp", pa, other, "-o", tmp_path / "x.safetensors")
    assert rc == 1 and "different RRDBNet hyper-parameters (num_feat 8 vs 4)" in err
    assert err.startswith("esr: error: ")
    rc, _, err = esr("interp", pa, tmp_path / "missing.pth", "-o", tmp_path / "x.safetensors")
    assert rc == 1 and "missing.pth: no such file" in err
    # training run folders stand for their export; the output's new folder is created
    for run, pth in (("net", pa), ("gan", pb)):
        (tmp_path / "runs" / run).mkdir(parents=True)
        save_model(tmp_path / "runs" / run / "net_g_ema.safetensors", load_state_dict(pth), ModelInfo("RRDBNet", SMALL, 4))
    rc, _, err = esr("interp", tmp_path / "runs" / "net", tmp_path / "runs" / "gan", "-o", tmp_path / "new" / "half.safetensors")
    assert rc == 0, err
    torch.testing.assert_close(load_state_dict(tmp_path / "new" / "half.safetensors")["conv_first.weight"],
                               0.5 * a["conv_first.weight"] + 0.5 * b["conv_first.weight"])
    rc, _, err = esr("interp", tmp_path / "runs", pb, "-o", tmp_path / "y.safetensors")
    assert rc == 1 and "is a folder, not a model file (nor a training run with net_g_ema.safetensors)" in err
    export = tmp_path / "runs" / "net" / "net_g_ema.safetensors"
    before_export = export.read_bytes()
    rc, _, err = esr("interp", tmp_path / "runs" / "net", tmp_path / "runs" / "gan", "-o", export)
    assert rc == 2 and "would overwrite the input model" in err  # the run folder stands for this very file
    rc, _, err = esr("model", "convert", tmp_path / "runs" / "net", export, "--half")
    assert rc == 2 and "would overwrite the input" in err and export.read_bytes() == before_export
    rc, _, err = esr("interp", tmp_path / "nothere.pth", pb, "-o", tmp_path / "fresh" / "x.safetensors")
    assert rc == 1 and not (tmp_path / "fresh").exists()  # a failed run leaves no new empty folder
    # a bare name is the embedded model, even beside a run folder of that name
    import os

    (tmp_path / "esr-general-x4-net").mkdir()
    save_model(tmp_path / "esr-general-x4-net" / "net_g_ema.safetensors", load_state_dict(pa), ModelInfo("RRDBNet", SMALL, 4))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert load_model("esr-general-x4-net")[1].arch == "SRVGGNetCompact"
        assert load_model("./esr-general-x4-net")[1].arch == "RRDBNet"  # as a path: the run
        for arg in ("./esr-general-x4-net", "esr-general-x4-net/"):  # the CLI keeps what was typed
            rc, shown, err = esr("model", "info", arg)
            assert rc == 0 and "arch:       RRDBNet" in shown, (arg, shown, err)
        rc, shown, err = esr("model", "info", "esr-general-x4-net")
        assert rc == 0 and "arch:       SRVGGNetCompact" in shown
        rc, _, err = esr("interp", "./esr-general-x4-net", pb, "-o", "mixed.safetensors")
        assert rc == 0 and load_model("mixed.safetensors")[1].arch == "RRDBNet", err
        rc, _, err = esr("model", "convert", "./esr-general-x4-net", "conv.safetensors")
        assert rc == 0 and load_model("conv.safetensors")[1].arch == "RRDBNet", err
        # an output inside a folder named like the embedded model it blends is no overwrite
        rc, _, err = esr("interp", "esr-general-x4", "esr-general-x4-net", "-o", "esr-general-x4-net/net_g_ema.safetensors")
        assert rc == 0, err  # the inputs are the embedded models, not that run
    finally:
        os.chdir(cwd)
    before = out.read_bytes()
    for args in ((out, pb), (pa, tmp_path / "." / "m.safetensors")):
        rc, _, err = esr("interp", *args, "-o", out)
        assert rc == 2 and "the output would overwrite the input model" in err
    assert out.read_bytes() == before


def test_cli_interp_takes_embedded_names(esr, tmp_path):
    """`esr interp esr-general-x4-net esr-general-x4`: the embedded pair by name, as --sharpness blends it."""
    from esrcli.weights import load_model
    from esrcli.weights.embedded import find_entry

    if find_entry("esr-general-x4") is None:
        pytest.skip("esr-general-x4 is not embedded in this build")
    out = tmp_path / "half.safetensors"
    rc, stdout, err = esr("interp", "esr-general-x4-net", "esr-general-x4", "--alpha", "0.5", "-o", out)
    assert rc == 0, err
    mine = load_state_dict(out)
    blended = load_model("esr-general-x4", sharpness=0.5)[0].state_dict()
    assert all(torch.allclose(mine[k], blended[k]) for k in blended)
    assert load_model(out)[1].metadata["parents"] == "esr-general-x4-net,esr-general-x4"


def test_read_pair_returns_both_and_names_every_differing_parameter(tmp_path):
    from esrcli.weights.io import read_pair

    pa, pb, pc = tmp_path / "a.pth", tmp_path / "b.pth", tmp_path / "c.pth"
    torch.save(_rrdb(0).state_dict(), pa)
    torch.save(_rrdb(1).state_dict(), pb)
    torch.save(RRDBNet(**dict(SMALL, num_feat=4, num_block=2)).state_dict(), pc)
    sd_a, info_a, sd_b, info_b = read_pair(pa, pb)
    assert info_a.params == info_b.params
    assert not torch.equal(sd_a["conv_first.weight"], sd_b["conv_first.weight"])
    with pytest.raises(WeightsError, match=r"c.pth: different RRDBNet hyper-parameters \(num_block 1 vs 2, num_feat 8 vs 4\)$"):
        read_pair(pa, pc)
