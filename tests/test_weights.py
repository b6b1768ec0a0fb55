"""Model files: .pth wrappers and old ESRGAN layouts, safetensors with metadata, detection,
error paths, the catalogue, and the ``esr model`` commands."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from esrcli.archs import RRDBNet, SRVGGNetCompact, build_generator
from esrcli.errors import WeightsError
from esrcli.weights import (
    ModelInfo,
    catalogue,
    default_model_name,
    detect_arch,
    load_model,
    load_state_dict,
    read_model_file,
    read_model_info,
    save_model,
)
from esrcli.weights.io import read_pair


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks run fastest (and steadiest on a loaded 2-core machine) on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


CONFIGS = [
    ("RRDBNet", dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=8, num_block=2, num_grow_ch=4)),
    ("RRDBNet", dict(num_in_ch=3, num_out_ch=3, scale=2, num_feat=12, num_block=1, num_grow_ch=6)),
    ("RRDBNet", dict(num_in_ch=3, num_out_ch=3, scale=1, num_feat=8, num_block=3, num_grow_ch=4)),
    ("RRDBNet", dict(num_in_ch=1, num_out_ch=1, scale=2, num_feat=8, num_block=1, num_grow_ch=4)),
    ("SRVGGNetCompact", dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=3, scale=4, act_type="prelu")),
    ("SRVGGNetCompact", dict(num_in_ch=3, num_out_ch=3, num_feat=6, num_conv=0, scale=2, act_type="prelu")),
    ("SRVGGNetCompact", dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, scale=3, act_type="relu")),
]


def _net(arch, params, seed=0):
    torch.manual_seed(seed)
    net = build_generator(arch, params).eval()
    if arch == "SRVGGNetCompact" and params["act_type"] == "prelu":
        for m in net.modules():  # make PReLU weights distinct from the default 0.25
            if isinstance(m, torch.nn.PReLU):
                m.weight.data.uniform_(0.0, 0.5)
    return net


def _x(params):
    return torch.rand(1, params["num_in_ch"], 8, 8, generator=torch.Generator().manual_seed(1))


def _old_sequential(sd, num_block):
    """Rename BasicSR RRDBNet keys to the original ESRGAN sequential layout (RRDB_ESRGAN_x4.pth)."""
    tail = {"conv_first": "model.0", "conv_body": f"model.1.sub.{num_block}", "conv_up1": "model.3",
            "conv_up2": "model.6", "conv_hr": "model.8", "conv_last": "model.10"}
    out = {}
    for k, v in sd.items():
        m = re.match(r"body\.(\d+)\.rdb(\d)\.(conv\d)\.(weight|bias)", k)
        if m:
            out[f"model.1.sub.{m[1]}.RDB{m[2]}.{m[3]}.0.{m[4]}"] = v
        else:
            head, leaf = k.rsplit(".", 1)
            out[f"{tail[head]}.{leaf}"] = v
    return out


def _old_named(sd):
    """Rename to the ESRGAN repository's later named layout (RRDB_trunk, trunk_conv, HRconv)."""
    names = {"conv_body": "trunk_conv", "conv_up1": "upconv1", "conv_up2": "upconv2", "conv_hr": "HRconv"}
    out = {}
    for k, v in sd.items():
        m = re.match(r"body\.(\d+)\.rdb(\d)\.(.*)", k)
        if m:
            out[f"RRDB_trunk.{m[1]}.RDB{m[2]}.{m[3]}"] = v
        else:
            head, leaf = k.rsplit(".", 1)
            out[f"{names.get(head, head)}.{leaf}"] = v
    return out


@pytest.mark.parametrize("arch,params", CONFIGS, ids=lambda c: str(c) if isinstance(c, str) else "-".join(map(str, c.values())))
def test_detect_and_round_trip(tmp_path, arch, params):
    net = _net(arch, params)
    x = _x(params)
    with torch.no_grad():
        ref = net(x)
    sd = net.state_dict()
    info = detect_arch(sd)
    if arch == "RRDBNet" or params["act_type"] == "prelu":
        assert info.arch == arch and info.params == params and info.scale == params["scale"]

    wrappers = {
        "ema.pth": {"params_ema": sd, "params": {k: torch.zeros_like(v) for k, v in sd.items()}},
        "params.pth": {"params": sd},
        "bare.pth": sd,
        "module.pth": {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
        "compiled.pth": {"params": {f"_orig_mod.{k}": v for k, v in sd.items()}, "iter": 3},
    }
    if arch == "RRDBNet" and params["scale"] == 4 and params["num_in_ch"] == 3:
        wrappers["old_seq.pth"] = _old_sequential(sd, params["num_block"])
        wrappers["old_named.pth"] = _old_named(sd)
    for name, obj in wrappers.items():
        path = tmp_path / name
        torch.save(obj, path)
        if name == "bare.pth":  # also the legacy (pre-1.6, non-zip) serialisation
            torch.save(obj, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
            with torch.no_grad():
                assert torch.equal(load_model(tmp_path / "legacy.pth")[0](x), ref)
        loaded, info = load_model(path)
        if arch == "SRVGGNetCompact" and params["act_type"] == "relu":
            assert info.params["act_type"] == "relu"
        assert info.arch == arch and info.params == params, name
        assert not loaded.training and all(not p.requires_grad for p in loaded.parameters())
        with torch.no_grad():
            assert torch.equal(loaded(x), ref), name
    assert load_model(tmp_path / "ema.pth")[1].metadata["source_key"] == "params_ema"
    if "old_seq.pth" in wrappers:
        assert load_model(tmp_path / "old_seq.pth")[1].metadata["layout"] == "esrgan-sequential"
        assert load_model(tmp_path / "old_named.pth")[1].metadata["layout"] == "esrgan-named"
        assert "model.1.sub.2.weight" in wrappers["old_seq.pth"]  # trunk conv after num_block blocks

    st = tmp_path / "m.safetensors"
    save_model(st, net, ModelInfo(arch, params, params["scale"]), extra_metadata={"iterations": "1000"})
    loaded, info = load_model(st)
    assert info.params == params and info.metadata["iterations"] == "1000"
    with torch.no_grad():
        assert torch.equal(loaded(x), ref)


def test_safetensors_metadata_and_half(tmp_path):
    arch, params = CONFIGS[4]
    net = _net(arch, params)
    full, half = tmp_path / "f.safetensors", tmp_path / "h.safetensors"
    info = ModelInfo(arch, params, 4, metadata={"provenance": "unit test"})
    save_model(full, net, info)
    save_model(half, net.state_dict(), info, half=True)
    with safe_open(str(half), framework="pt") as fh:
        meta = fh.metadata()
        assert fh.get_tensor("body.0.weight").dtype == torch.float16
    assert meta["format"] == "esr-model" and meta["arch"] == arch and meta["scale"] == "4"
    assert json.loads(meta["params"]) == params
    assert meta["provenance"] == "unit test" and meta["dtype"] == "float16" and meta["esr_version"]
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded, _ = load_model(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = _x(params)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), rtol=1e-2, atol=1e-2)
    assert not list(tmp_path.glob(".*.part"))  # atomic write left no temporary file


def test_leakyrelu_from_metadata(tmp_path):
    params = dict(num_in_ch=3, num_out_ch=3, num_feat=4, num_conv=1, scale=2, act_type="leakyrelu")
    net = _net("SRVGGNetCompact", params)
    path = tmp_path / "l.safetensors"
    save_model(path, net, ModelInfo("SRVGGNetCompact", params, 2))
    assert load_model(path)[1].params["act_type"] == "leakyrelu"
    # Without metadata the shapes cannot tell relu from leakyrelu: relu is assumed.
    assert detect_arch(net.state_dict()).params["act_type"] == "relu"


def test_bilinear_residual_from_metadata(tmp_path):
    params = dict(num_in_ch=3, num_out_ch=3, num_feat=4, num_conv=1, scale=4, act_type="prelu", upsample="bilinear")
    net = _net("SRVGGNetCompact", params)
    path = tmp_path / "b.safetensors"
    save_model(path, net, ModelInfo("SRVGGNetCompact", params, 4))
    loaded, info = load_model(path)
    assert info.params == params and loaded.upsample == "bilinear"
    x = torch.rand(1, 3, 7, 6)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    # The weights alone look like Real-ESRGAN's nearest-residual layout.
    assert "upsample" not in detect_arch(net.state_dict()).params
    nearest = tmp_path / "n.safetensors"
    save_model(nearest, net.state_dict(), ModelInfo("SRVGGNetCompact", {k: v for k, v in params.items() if k != "upsample"}, 4))
    with pytest.raises(WeightsError, match="upsample bilinear vs nearest"):  # a blend of the two would be neither
        read_pair(path, nearest)


def test_official_realesrgan_layouts_detected():
    with torch.device("meta"):
        x4 = RRDBNet(3, 3, scale=4).state_dict()
        x2 = RRDBNet(3, 3, scale=2).state_dict()
        anime = RRDBNet(3, 3, scale=4, num_block=6).state_dict()
        general = SRVGGNetCompact(num_feat=64, num_conv=32, scale=4).state_dict()
        video = SRVGGNetCompact(num_feat=64, num_conv=16, scale=4).state_dict()
    assert detect_arch(x4).params == dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=64, num_block=23, num_grow_ch=32)
    assert detect_arch(x2).params["scale"] == 2 and x2["conv_first.weight"].shape[1] == 12
    assert detect_arch(anime).params["num_block"] == 6
    assert detect_arch(general).params == dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=32, scale=4, act_type="prelu")
    assert detect_arch(video).params["num_conv"] == 16


def test_unsupported_rrdbnet_variants(tmp_path):
    sd = _net(*CONFIGS[0]).state_dict()
    one_up = {k: v for k, v in sd.items() if not k.startswith("conv_up2.")}
    with pytest.raises(WeightsError, match="other than two upsampling convs"):
        detect_arch(one_up)
    odd = dict(sd, **{"conv_first.weight": torch.zeros(8, 5, 3, 3)})
    with pytest.raises(WeightsError, match="5 input channels"):
        detect_arch(odd)
    old = _old_sequential(sd, 2)
    old["model.12.weight"] = torch.zeros(3, 8, 3, 3)
    path = tmp_path / "x8.pth"
    torch.save(old, path)
    with pytest.raises(WeightsError, match="x8.pth: old ESRGAN layout with an unsupported layer 'model.12.weight'"):
        load_model(path)


def test_save_model_rejects_mismatch(tmp_path):
    net = _net(*CONFIGS[0])
    wrong = ModelInfo("RRDBNet", dict(CONFIGS[0][1], num_block=3), 4)
    with pytest.raises(WeightsError, match=r"bad.safetensors: weights do not match RRDBNet .*missing: body\.2\."):
        save_model(tmp_path / "bad.safetensors", net, wrong)
    assert not (tmp_path / "bad.safetensors").exists()
    with pytest.raises(WeightsError, match="output folder does not exist"):
        save_model(tmp_path / "nope" / "m.safetensors", net, ModelInfo("RRDBNet", CONFIGS[0][1], 4))


@pytest.fixture
def good_pth(tmp_path):
    path = tmp_path / "good.pth"
    torch.save({"params_ema": _net(*CONFIGS[0]).state_dict()}, path)
    return path


def test_bad_files_raise_weights_error_naming_the_file(tmp_path, good_pth):
    data = good_pth.read_bytes()
    cases = {
        "zero.pth": (b"", "empty file"),
        "trunc.pth": (data[: len(data) // 2], "corrupt or truncated .pth"),
        "text.pth": (b"hello, I am not a model\n", "not a model file"),
        "image.png": (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "not a model file"),
    }
    st = tmp_path / "ok.safetensors"
    save_file({"body.0.weight": torch.zeros(4, 3, 3, 3)}, str(st))
    cases["trunc.safetensors"] = (st.read_bytes()[:-40], "corrupt or truncated safetensors")
    for name, (content, msg) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(WeightsError) as info:
            load_model(path)
        text = str(info.value)
        assert text.startswith(f"{path}: ") and msg in text and "\n" not in text, text
    with pytest.raises(WeightsError, match="missing.pth: no such file"):
        load_state_dict(tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match="is a folder"):
        load_state_dict(tmp_path)


def test_non_model_contents(tmp_path):
    cases = {
        "dict.pth": ({"iter": 5, "name": "x"}, "no tensors found"),
        "unknown.pth": ({"fc.weight": torch.zeros(2, 2)}, "unknown architecture"),
        "list.pth": ([torch.zeros(1)], "no tensors found"),
    }
    for name, (obj, msg) in cases.items():
        path = tmp_path / name
        torch.save(obj, path)
        with pytest.raises(WeightsError, match=rf"{re.escape(str(path))}: .*{msg}"):
            load_model(path)
    # A pickled object that is not plain tensors/containers is refused by weights_only.
    evil = tmp_path / "evil.pth"
    torch.save({"params": torch.nn.Linear(2, 2)}, evil)
    with pytest.raises(WeightsError, match="evil.pth: refused"):
        load_model(evil)
    # Truncated body: a valid-looking file missing blocks is reported, not half-loaded.
    sd = _net(*CONFIGS[0]).state_dict()
    del sd["body.1.rdb3.conv5.weight"]
    partial = tmp_path / "partial.pth"
    torch.save(sd, partial)
    with pytest.raises(WeightsError, match="partial.pth: weights do not match RRDBNet.*missing: body.1.rdb3.conv5.weight"):
        load_model(partial)


def test_read_model_file_keeps_dtype(tmp_path):
    sd = {k: v.half() for k, v in _net(*CONFIGS[0]).state_dict().items()}
    path = tmp_path / "h.pth"
    torch.save(sd, path)
    got, notes = read_model_file(path)
    assert got["conv_first.weight"].dtype == torch.float16 and notes["source_format"] == "pth"
    net, _ = load_model(path)
    assert net.conv_first.weight.dtype == torch.float32


def test_catalogue_without_a_model_says_so(esr, tmp_path, monkeypatch):
    import esrcli.weights.embedded as cat

    empty = tmp_path / "models"
    empty.mkdir()
    (empty / "catalogue.json").write_text("[]")
    monkeypatch.setattr(cat, "_models_dir", lambda: empty)  # a build that ships no model
    assert catalogue() == [] and default_model_name() is None
    rc, out, _ = esr("model", "list")
    assert rc == 0 and out.strip() == "no embedded models yet"
    with pytest.raises(WeightsError, match="no such model file or embedded model"):
        load_model("realesrgan-x4")


def test_shipped_catalogue_default_model(esr):
    """The embedded default is the official x4plus (metadata, licence beside it); the compact
    esr-general-x4-net loads by name too."""
    from importlib import resources

    entries = catalogue()
    if not entries:
        pytest.skip("no embedded model ships in this build yet")
    assert default_model_name() == "realesrgan-x4plus"
    x4plus = next(e for e in entries if e.name == "realesrgan-x4plus")
    assert x4plus.default and x4plus.official == "RealESRGAN_x4plus" and "BSD-3-Clause" in x4plus.license
    _, info = read_model_info(resources.files("esrcli.models").joinpath(x4plus.file))
    assert info.arch == "RRDBNet" and info.scale == 4 and info.params["num_block"] == 23
    assert info.metadata["dtype"] == "float16" and info.metadata["license"].startswith("BSD-3-Clause")
    assert "Xintao Wang" in info.metadata["authors"] and "convert_x4plus.py" in info.metadata["provenance"]
    licence = resources.files("esrcli.models").joinpath("realesrgan-x4plus.LICENSE").read_text()
    assert licence.startswith("BSD 3-Clause License") and "Xintao Wang" in licence

    entry = next(e for e in entries if e.name == "esr-general-x4-net")
    assert not entry.default and entry.arch == "SRVGGNetCompact" and entry.scale == 4 and entry.iterations > 0
    net, info = load_model("esr-general-x4-net")
    assert info.arch == "SRVGGNetCompact" and info.scale == 4
    assert (info.params["num_feat"], info.params["num_conv"], info.params["act_type"]) == (64, 32, "prelu")
    assert info.metadata["dtype"] == "float16" and next(net.parameters()).dtype == torch.float32
    with torch.no_grad():
        out = net(torch.full((1, 3, 16, 16), 0.5))
    assert out.shape == (1, 3, 64, 64) and abs(float(out.mean()) - 0.5) < 0.05  # keeps a flat grey grey
    with pytest.raises(WeightsError, match="no such model file or embedded model"):
        load_model("realesrgan-x4")
    rc, out, _ = esr("model", "list")
    assert rc == 0 and out.startswith("realesrgan-x4plus (default): RRDBNet x4")
    assert "official name: RealESRGAN_x4plus" in out and "licence:       BSD-3-Clause" in out
    assert "esr-general-x4-net: SRVGGNetCompact x4" in out and "origin:" in out
    assert "training data:" in out and "iterations:" in out


def test_shipped_gan_stage_pair_for_sharpness(esr):
    """esr-general-x4 (GAN stage) pairs with esr-general-x4-net for --sharpness: the blend is
    ESRGAN's interpolation of the two embedded files, 0 and 1 give the files themselves."""
    from esrcli.weights import sharpness_pair
    from esrcli.weights.embedded import find_entry

    entry = find_entry("esr-general-x4")
    if entry is None:
        pytest.skip("esr-general-x4 is not embedded in this build")
    assert entry.partner == "esr-general-x4-net" and not entry.default and entry.iterations > 0
    assert sharpness_pair("esr-general-x4") == ("esr-general-x4-net", "esr-general-x4") == sharpness_pair("esr-general-x4-net")
    gan, info = load_model("esr-general-x4")
    assert info.metadata["provenance"] == "esr train-gan" and info.metadata["dtype"] == "float16"
    assert "teacher 1" in info.metadata["losses"] and "phase 10" in info.metadata["losses"]
    assert "phase_weight 1 for iterations 1-1,000, then 10" in info.metadata["history"]
    net, _ = load_model("esr-general-x4-net")
    half, half_info = load_model("esr-general-x4", sharpness=0.5)
    a, b, m = net.state_dict(), gan.state_dict(), half.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)  # really two networks
    assert all(torch.allclose(m[k], 0.5 * a[k] + 0.5 * b[k]) for k in a)
    assert half_info.metadata["parents"] == "esr-general-x4-net,esr-general-x4"
    assert all(torch.equal(load_model("esr-general-x4-net", sharpness=1.0)[0].state_dict()[k], b[k]) for k in b)
    x = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ys = [n(x) for n in (net, half, gan)]
    assert all(y.shape == (1, 3, 96, 96) for y in ys) and float((ys[0] - ys[2]).abs().mean()) > 1e-3
    rc, out, _ = esr("model", "list")
    assert rc == 0 and "esr-general-x4: SRVGGNetCompact x4" in out and "partner:       esr-general-x4-net (--sharpness" in out


@pytest.fixture
def fake_catalogue(tmp_path, monkeypatch):
    """A models folder with one embedded model, in place of the package's."""
    import esrcli.weights.embedded as cat

    folder = tmp_path / "models"
    folder.mkdir()
    arch, params = CONFIGS[4]
    save_model(folder / "tiny.safetensors", _net(arch, params), ModelInfo(arch, params, 4))
    entries = [
        {"name": "tiny-x4", "file": "tiny.safetensors", "arch": arch, "scale": 4, "description": "unit-test model",
         "training_data": "none", "iterations": 1200, "figures": {"set5_psnr_y": 12.5}},
    ]
    (folder / "catalogue.json").write_text(json.dumps(entries))
    monkeypatch.setattr(cat, "_models_dir", lambda: folder)
    return folder


def test_catalogue_with_a_model(fake_catalogue, esr):
    import esrcli.weights.embedded as cat

    [entry] = catalogue()
    assert entry.name == "tiny-x4" and entry.iterations == 1200 and entry.figures == {"set5_psnr_y": 12.5}
    assert default_model_name() == "tiny-x4"  # the first entry when none is marked default
    net, info = load_model("tiny-x4")
    assert info.arch == "SRVGGNetCompact" and net(torch.rand(1, 3, 4, 4)).shape == (1, 3, 16, 16)
    rc, out, _ = esr("model", "list")
    assert rc == 0 and "tiny-x4 (default): SRVGGNetCompact x4  unit-test model" in out and "1,200" in out
    assert "set5_psnr_y: 12.5" in out
    rc, out, _ = esr("model", "info", "tiny-x4")
    assert rc == 0 and "arch:       SRVGGNetCompact" in out
    with pytest.raises(WeightsError, match="embedded models: tiny-x4"):
        load_model("other")
    (fake_catalogue / "catalogue.json").write_text('[{"name": "x", "file": "x", "colour": 1}]')
    with pytest.raises(WeightsError, match="unknown key.*colour"):
        cat.catalogue()
    (fake_catalogue / "catalogue.json").write_text("{not json")
    rc, _, err = esr("model", "list")
    assert rc == 1 and "catalogue.json: invalid JSON" in err


# --------------------------------------------------------------------------- CLI


def test_cli_model_info_convert_list(esr, tmp_path, good_pth):
    rc, out, err = esr("model", "info", good_pth)
    assert rc == 0, err
    assert "arch:       RRDBNet" in out and "scale:      x4" in out and "num_block=2" in out
    assert "parameters: 25,387" in out and "source_key: params_ema" in out

    dst = tmp_path / "out.safetensors"
    rc, out, err = esr("model", "convert", good_pth, dst, "--half")
    assert rc == 0, err
    assert str(dst) in out and "float16" in out
    rc, out, _ = esr("model", "info", dst, "--json")
    record = json.loads(out)
    assert record["arch"] == "RRDBNet" and record["params"]["num_grow_ch"] == 4
    assert record["metadata"]["provenance"] == "converted from good.pth (params_ema)"
    assert record["metadata"]["dtype"] == "float16"

    rc, out, err = esr("model", "convert", good_pth, tmp_path / "out.pth")
    assert rc == 2 and "safetensors" in err
    before = dst.read_bytes()
    (tmp_path / "sub").mkdir()
    rc, out, err = esr("model", "convert", dst, tmp_path / "sub" / ".." / "out.safetensors")
    assert rc == 2 and "the output would overwrite the input" in err and dst.read_bytes() == before


def test_cli_model_info_batch_goes_on(esr, tmp_path, good_pth):
    bad = tmp_path / "zero.pth"
    bad.write_bytes(b"")
    rc, out, err = esr("model", "info", bad, good_pth)
    assert rc == 1
    assert f"esr: error: {bad}: empty file (0 bytes)" in err
    assert "arch:       RRDBNet" in out and "1 of 2 files failed" in err
    rc, out, err = esr("model", "convert", bad, tmp_path / "x.safetensors")
    assert rc == 1 and err.count("\n") == 1 and "zero.pth: empty file" in err


@pytest.fixture
def paired_catalogue(tmp_path, monkeypatch):
    """A models folder with a PSNR-stage model, its GAN-stage partner and a lone model."""
    import esrcli.weights.embedded as cat

    folder = tmp_path / "models"
    folder.mkdir()
    arch, params = CONFIGS[4]
    nets = {n: _net(arch, params, seed=i) for i, n in enumerate(("net", "gan", "lone"))}
    for n, net in nets.items():
        save_model(folder / f"{n}.safetensors", net, ModelInfo(arch, params, 4))
    entries = [
        {"name": "m-net", "file": "net.safetensors"},
        {"name": "m-gan", "file": "gan.safetensors", "partner": "m-net", "default": True},
        {"name": "lone", "file": "lone.safetensors"},
    ]
    (folder / "catalogue.json").write_text(json.dumps(entries))
    monkeypatch.setattr(cat, "_models_dir", lambda: folder)
    return {n: net.state_dict() for n, net in nets.items()}


def test_sharpness_interpolates_a_model_with_its_partner(paired_catalogue, esr):
    from esrcli.errors import ConfigError
    from esrcli.weights import sharpness_pair

    sd = paired_catalogue
    key = next(k for k, v in sd["gan"].items() if v.is_floating_point())
    assert not torch.equal(sd["net"][key], sd["gan"][key])  # two different networks
    assert sharpness_pair("m-gan") == ("m-net", "m-gan") == sharpness_pair("m-net")  # either end
    for s in (0.0, 0.25, 1.0):
        net, info = load_model("m-gan", sharpness=s)
        want = (1 - s) * sd["net"][key] + s * sd["gan"][key]
        assert torch.allclose(net.state_dict()[key], want, atol=1e-6)
        assert info.metadata["parents"] == "m-net,m-gan" and float(info.metadata["alpha"]) == s
    same, _ = load_model("m-net", sharpness=0.25)  # the PSNR end names the same pair
    assert torch.allclose(same.state_dict()[key], 0.75 * sd["net"][key] + 0.25 * sd["gan"][key], atol=1e-6)
    plain, _ = load_model("m-gan")
    assert torch.equal(plain.state_dict()[key], sd["gan"][key])
    with pytest.raises(WeightsError, match=r"^lone: no PSNR-stage partner.*m-gan, m-net"):
        load_model("lone", sharpness=0.5)
    with pytest.raises(WeightsError, match="needs an embedded model with a PSNR-stage partner"):
        load_model("some/file.safetensors", sharpness=0.5)
    with pytest.raises(ConfigError, match=r"^sharpness: must be in \[0, 1\]"):
        load_model("m-gan", sharpness=1.5)
    rc, out, _ = esr("model", "list")
    assert rc == 0 and out.count("partner:       m-net") == 1 and "partner:       m-gan" in out


def test_cli_upscale_with_sharpness(paired_catalogue, esr, tmp_path):
    """--sharpness 0 gives the PSNR-stage model's image, 1 the GAN model's, 0.5 neither."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    outs = {}
    for label, args in {"net": ("-m", "m-net"), "gan": ("-m", "m-gan"), "s0": ("-m", "m-gan", "--sharpness", "0"),
                        "s1": ("-m", "m-net", "--sharpness", "1"), "s05": ("-m", "m-gan", "--sharpness", "0.5")}.items():
        rc, _, err = esr("upscale", tmp_path / "in.png", tmp_path / label, *args, "--precision", "fp32")
        assert rc == 0, err
        outs[label] = np.asarray(Image.open(tmp_path / label / "in.png"), dtype=np.int16)
    assert "at sharpness 0.5" in err
    assert np.array_equal(outs["s0"], outs["net"]) and np.array_equal(outs["s1"], outs["gan"])
    assert not np.array_equal(outs["s05"], outs["net"]) and not np.array_equal(outs["s05"], outs["gan"])
    rc, _, err = esr("upscale", tmp_path / "in.png", tmp_path / "x", "-m", "lone", "--sharpness", "0.5")
    assert rc == 1 and err.startswith("esr: error: lone: no PSNR-stage partner") and err.count("\n") == 1


def test_a_pth_named_safetensors_and_a_model_named_folder(tmp_path, monkeypatch):
    """The format is read from the content, whatever the name; a folder named like a model
    does not hide that model."""
    from esrcli.weights.embedded import resolve_model

    net = SRVGGNetCompact(num_feat=4, num_conv=1, scale=2)
    path = tmp_path / "really_a_pth.safetensors"
    torch.save({"params": net.state_dict()}, path)
    sd, meta = read_model_file(path)
    assert meta["source_format"] == "pth" and sd.keys() == net.state_dict().keys()
    # pickle protocol 4 (torch's safe loader reads up to 2): refused with the reason
    p4 = tmp_path / "p4.pth"
    torch.save({"params": net.state_dict()}, p4, pickle_protocol=4)
    with pytest.raises(WeightsError, match="pickle protocol 4") as exc:
        read_model_file(p4)
    assert "torch.save" in exc.value.hint
    monkeypatch.chdir(tmp_path)
    (tmp_path / "esr-general-x4-net").mkdir()
    with resolve_model("esr-general-x4-net") as found:
        assert found.is_file() and found.name == "esr-general-x4-net.safetensors"


def test_export_formats_given_as_a_model_say_what_they_are(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07\x12\x07pytorch")
    with pytest.raises(WeightsError, match="an ONNX model, which esr writes"):
        read_model_file(tmp_path / "m.onnx")
    (tmp_path / "m.param").write_text("7767517\n3 3\n")
    with pytest.raises(WeightsError, match="an ncnn file") as exc:
        read_model_file(tmp_path / "m.param")
    assert "esr model import" in exc.value.hint


def _benchmark(name: str):
    """``benchmarks/NAME.py`` as a module (the folder is not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_embedded_compact_models_draw_no_4x4_blocks():
    """On Real-ESRGAN's nearest-neighbour residual the first compact models drew a mosaic of
    4x4 blocks in texture (steps across block edges 1.7-1.8x those inside the blocks on this
    input); on the bilinear residual they are gone (about 1)."""
    from esrcli.weights.embedded import find_entry

    compare_models = _benchmark("compare_models")  # its `blocks` figure, as the shipped models were judged

    names = [n for n in ("esr-general-x4-net", "esr-general-x4-net-wdn", "esr-general-x4") if find_entry(n) is not None]
    if not names:
        pytest.skip("no compact model is embedded in this build")
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    x = torch.nn.functional.interpolate(x, size=(48, 48), mode="bicubic", align_corners=False).clamp(0, 1)  # smooth texture
    for name in names:
        net, info = load_model(name)
        assert info.params.get("upsample") == "bilinear", name
        with torch.no_grad():
            g = net(x)[0].permute(1, 2, 0).numpy().astype(np.float64) * 255
        ratio = compare_models.block_edges(g)
        assert 0.7 < ratio < 1.2, (name, ratio)
