"""ONNX / ncnn export, ncnn import: round trips, numerical checks against PyTorch, bad files, CLI."""

from __future__ import annotations

import struct
import sys

import numpy as np
import pytest
import torch

from esrcli.archs import RRDBNet, SRVGGNetCompact, build_generator
from esrcli.errors import EsrError, WeightsError
from esrcli.export import check_ncnn, check_onnx, export_ncnn, export_onnx, import_ncnn
from esrcli.export.ncnn import FP16_TAG, _BinReader
from esrcli.weights import ModelInfo, load_model, save_model


def _rrdb(scale: int) -> tuple[RRDBNet, ModelInfo]:
    torch.manual_seed(scale)
    p = dict(num_in_ch=3, num_out_ch=3, scale=scale, num_feat=8, num_block=1, num_grow_ch=4)
    net = RRDBNet(**p).eval()
    with torch.no_grad():  # outputs well inside (0, 1), so the PSNR measures the whole image
        net.conv_last.bias.fill_(0.5)
    return net, ModelInfo("RRDBNet", p, scale)


def _srvgg(scale: int, act: str, upsample: str = "nearest") -> tuple[SRVGGNetCompact, ModelInfo]:
    torch.manual_seed(10 + scale)
    p = dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, scale=scale, act_type=act)
    if upsample != "nearest":
        p["upsample"] = upsample
    net = SRVGGNetCompact(**p).eval()
    if act == "prelu":
        with torch.no_grad():  # distinct slopes, so a mix-up of PReLU weights shows
            for layer in net.body:
                if isinstance(layer, torch.nn.PReLU):
                    layer.weight.uniform_(0.05, 0.4)
    return net, ModelInfo("SRVGGNetCompact", p, scale)


CASES = {
    "rrdb-x4": lambda: _rrdb(4),
    "rrdb-x2": lambda: _rrdb(2),
    "rrdb-x1": lambda: _rrdb(1),
    "srvgg-x4-prelu": lambda: _srvgg(4, "prelu"),
    "srvgg-x3-leakyrelu": lambda: _srvgg(3, "leakyrelu"),
    "srvgg-x2-relu": lambda: _srvgg(2, "relu"),
    "srvgg-x4-prelu-bilinear": lambda: _srvgg(4, "prelu", "bilinear"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_ncnn_round_trip_keeps_weights_within_fp16_rounding(case, tmp_path):
    net, info = CASES[case]()
    param, bin_ = export_ncnn(net, info, tmp_path, "m")
    assert param.read_text().startswith("7767517\n")
    assert " data" in param.read_text().splitlines()[2] and " output" in param.read_text()
    back = import_ncnn(param, bin_)  # strict: every .bin byte consumed, shapes checked
    assert (back.info.arch, back.info.params, back.storage) == (info.arch, info.params, "float16")
    sd = net.state_dict()
    assert set(back.state_dict) == set(sd)
    for k, v in sd.items():
        if v.dim() == 4:  # conv weights: float16 storage
            assert torch.equal(back.state_dict[k], v.half().float()), k
        else:  # biases and PReLU slopes: float32
            assert torch.equal(back.state_dict[k], v), k


def test_onnx_export_matches_pytorch_at_two_sizes_fp32_and_fp16(tmp_path):
    pytest.importorskip("onnx", reason="the export extra (onnx) is not installed")
    pytest.importorskip("onnxruntime", reason="the export extra (onnxruntime) is not installed")
    for case in ("rrdb-x2", "srvgg-x4-prelu-bilinear", "srvgg-x4-prelu"):
        net, info = CASES[case]()
        path = export_onnx(net, info, tmp_path / f"{case}.onnx")
        checks = check_onnx(path, net)
        assert [c.size for c in checks] == [(48, 64), (72, 40)]  # one file, two input sizes
        assert min(c.psnr for c in checks) > 50, checks
        half = check_onnx(export_onnx(net, info, tmp_path / f"{case}-fp16.onnx", fp16=True), net)
        assert 40 < min(c.psnr for c in half) < 120, half  # float16 arithmetic: close, not exact
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["arch"] == "SRVGGNetCompact" and meta["scale"] == "4"


def test_ncnn_export_runs_in_ncnn_like_pytorch(tmp_path):
    pytest.importorskip("ncnn", reason="the export extra (ncnn) is not installed")
    for case in ("rrdb-x4", "rrdb-x1", "srvgg-x3-leakyrelu", "srvgg-x4-prelu-bilinear"):
        net, info = CASES[case]()
        param, bin_ = export_ncnn(net, info, tmp_path, case)
        checks = check_ncnn(param, bin_, net, sizes=((48, 64),) if case != "rrdb-x1" else ((48, 64), (72, 40)))
        assert min(c.psnr for c in checks) > 42, (case, checks)


def test_checks_fail_on_a_different_network(tmp_path):
    pytest.importorskip("ncnn", reason="the export extra (ncnn) is not installed")
    net, info = CASES["srvgg-x4-prelu"]()
    param, bin_ = export_ncnn(net, info, tmp_path, "m")
    other, _ = _srvgg(4, "prelu")
    with torch.no_grad():
        other.body[0].weight.mul_(-1)
    assert max(c.psnr for c in check_ncnn(param, bin_, other)) < 40


def test_import_refuses_bad_files(tmp_path):
    net, info = CASES["srvgg-x2-relu"]()
    param, bin_ = export_ncnn(net, info, tmp_path, "m")
    data = bin_.read_bytes()
    (tmp_path / "short.bin").write_bytes(data[:-10])
    with pytest.raises(WeightsError, match=r"short\.bin: ends at byte .* inside body\.6 bias"):
        import_ncnn(param, tmp_path / "short.bin")
    (tmp_path / "long.bin").write_bytes(data + b"\0" * 8)
    with pytest.raises(WeightsError, match=r"long\.bin: 8 bytes left over"):
        import_ncnn(param, tmp_path / "long.bin")
    (tmp_path / "bad.param").write_text("7767518\n1 1\n")
    with pytest.raises(WeightsError, match=r"bad\.param: not an ncnn \.param file"):
        import_ncnn(tmp_path / "bad.param", bin_)
    text = param.read_text().replace("PixelShuffle", "Deconvolution")
    (tmp_path / "deconv.param").write_text(text)
    with pytest.raises(WeightsError, match="unsupported layer type Deconvolution"):
        import_ncnn(tmp_path / "deconv.param", bin_)
    with pytest.raises(WeightsError, match="no such file"):
        import_ncnn(tmp_path / "absent.param", bin_)


def test_bin_reader_storage_kinds(tmp_path):
    values = np.array([0.5, -1.25, 3.0], np.float32)
    table = np.linspace(-1, 1, 256, dtype=np.float32)
    blob = (
        struct.pack("<I", FP16_TAG) + values.astype(np.float16).tobytes() + b"\0\0"  # 3 halves padded to 8 bytes
        + struct.pack("<I", 0) + values.tobytes()  # raw float32
        + bytes([1, 2, 3, 4]) + table.tobytes() + bytes([0, 255, 128]) + b"\0"  # 256-entry table + uint8 indices
    )
    (tmp_path / "w.bin").write_bytes(blob)
    r = _BinReader(tmp_path / "w.bin")
    assert r.tagged(3, "a")[1] == "float16" and np.array_equal(r.data[4:10], values.astype(np.float16).tobytes())
    out, kind = r.tagged(3, "b")
    assert kind == "float32" and np.array_equal(out, values)
    out, kind = r.tagged(3, "c")
    assert kind == "quantised" and np.array_equal(out, table[[0, 255, 128]])
    assert r.pos == len(blob)


def test_import_maps_a_phase_first_reorg_to_pytorch_channel_order(tmp_path):
    net, info = CASES["rrdb-x2"]()
    param, bin_ = export_ncnn(net, info, tmp_path, "m")
    (tmp_path / "dcr.param").write_text(param.read_text().replace("0=2 1=0", "0=2 1=1"))
    w = import_ncnn(tmp_path / "dcr.param", bin_).state_dict["conv_first.weight"]
    ref = net.conv_first.weight.detach().half().float()  # columns c*4 + k <- file column k*3 + c
    assert torch.equal(w[:, 0 * 4 + 1], ref[:, 1 * 3 + 0]) and torch.equal(w[:, 2 * 4 + 3], ref[:, 3 * 3 + 2])


def test_missing_extra_gives_one_line_with_the_install_hint(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    net, info = CASES["srvgg-x2-relu"]()
    with pytest.raises(EsrError, match="needs the Python package 'onnxruntime'") as exc:
        check_onnx(tmp_path / "x.onnx", net)
    assert "esrcli[export]" in exc.value.hint


def test_official_models_export_within_targets(shared, tmp_path):
    """realesr-animevideov3 (official weights): ONNX >= 50 dB at two sizes from one file, ncnn >= 42 dB."""
    pytest.importorskip("onnxruntime", reason="the export extra (onnxruntime) is not installed")
    pytest.importorskip("ncnn", reason="the export extra (ncnn) is not installed")
    net, info = load_model(shared / "models" / "realesr-animevideov3.pth")
    onnx_checks = check_onnx(export_onnx(net, info, tmp_path / "av3.onnx"), net)
    assert len(onnx_checks) == 2 and min(c.psnr for c in onnx_checks) >= 50, onnx_checks
    param, bin_ = export_ncnn(net, info, tmp_path, "realesr-animevideov3")
    assert min(c.psnr for c in check_ncnn(param, bin_, net, sizes=((48, 64),))) >= 42
    back = import_ncnn(param, bin_)
    assert all(torch.equal(back.state_dict[k], v.half().float() if v.dim() == 4 else v) for k, v in net.state_dict().items())


def test_cli_export_and_import(esr, tmp_path):
    net, info = CASES["srvgg-x4-prelu"]()
    src = tmp_path / "tiny.safetensors"
    save_model(src, net, info)
    rc, out, err = esr("model", "export", src, "--format", "ncnn", "-o", tmp_path / "models", "--no-check")
    assert rc == 0, err
    assert (tmp_path / "models" / "tiny.param").exists() and (tmp_path / "models" / "tiny.bin").exists()
    rc, out, err = esr("model", "import", tmp_path / "models" / "tiny.param", tmp_path / "models" / "tiny.bin",
                       "-o", tmp_path / "back.safetensors", "--no-check")
    assert rc == 0, err
    assert "SRVGGNetCompact x4" in out and "float16 ncnn weights" in out
    back, back_info = load_model(tmp_path / "back.safetensors")
    assert back_info.params == info.params
    assert back_info.metadata["provenance"] == "imported from ncnn tiny.param"
    rc, out, err = esr("model", "export", src, "--format", "tflite", "-o", tmp_path / "x")
    assert rc == 2 and "expected onnx or ncnn" in err
    rc, out, err = esr("model", "export", src, "--format", "onnx", "-o", tmp_path / "x.txt", "--no-check")
    assert rc == 2 and "must end in .onnx" in err
    if pytest.importorskip("onnx", reason="the export extra (onnx) is not installed"):
        rc, out, err = esr("model", "export", src, "-f", "onnx", "-o", tmp_path)
        if rc == 0:
            assert (tmp_path / "tiny.onnx").exists() and "dB" in out
        else:
            assert "esrcli[export]" in err


def test_run_ncnn_keeps_a_temporary_input_alive(tmp_path):
    """ncnn.Mat wraps numpy memory: a non-contiguous input (copied inside) must give the same output."""
    pytest.importorskip("ncnn", reason="the export extra (ncnn) is not installed")
    from esrcli.export.check import run_ncnn

    net, info = CASES["srvgg-x2-relu"]()
    param, bin_ = export_ncnn(net, info, tmp_path, "m")
    hwc = np.random.default_rng(0).random((40, 56, 3), dtype=np.float32)
    ref = run_ncnn(param, bin_, np.ascontiguousarray(hwc.transpose(2, 0, 1)))
    for _ in range(3):
        out = run_ncnn(param, bin_, hwc.transpose(2, 0, 1))  # a view: copied to a temporary inside
        np.testing.assert_array_equal(out, ref)


def test_cli_export_without_the_runtime_writes_and_warns(esr, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ncnn", None)  # as if the export extra were not installed
    net, info = CASES["srvgg-x2-relu"]()
    src = tmp_path / "tiny.safetensors"
    save_model(src, net, info)
    rc, out, err = esr("model", "export", src, "-f", "ncnn", "-o", tmp_path / "models")
    assert rc == 0, err
    assert (tmp_path / "models" / "tiny.bin").exists()
    assert "written, not checked" in err and "esrcli[export]" in err and "dB" not in out


def test_weights_beyond_float16_are_refused_not_exported_as_inf(esr, tmp_path):
    net, info = CASES["srvgg-x4-prelu"]()
    with torch.no_grad():
        net.body[2].weight[0, 0, 0, 0] = 1e6  # fine in float32
    src = tmp_path / "big.safetensors"
    save_model(src, net, info)
    rc, _, err = esr("model", "export", src, "-f", "ncnn", "-o", tmp_path / "n", "--no-check")
    assert rc == 1 and "body.2.weight holds 1e+06, beyond float16's range" in err and "export to ONNX in float32" in err
    assert not (tmp_path / "n" / "big.bin").exists()
    rc, _, err = esr("model", "convert", src, tmp_path / "half.safetensors", "--half")
    assert rc == 1 and "beyond float16's range" in err and not (tmp_path / "half.safetensors").exists()
    pytest.importorskip("onnx", reason="the export extra (onnx) is not installed")
    rc, _, err = esr("model", "export", src, "-f", "onnx", "--fp16", "-o", tmp_path / "h.onnx", "--no-check")
    assert rc == 1 and "beyond float16's range" in err and not (tmp_path / "h.onnx").exists()
    from esrcli.export.onnx import max_opset

    rc, out, err = esr("model", "export", src, "-f", "onnx", "-o", tmp_path / "o.onnx", "--opset", str(max_opset() + 1))
    assert rc == 2 and f"expected 11 to {max_opset()}" in err and "--opset" in err and out == ""
    rc, out, err = esr("model", "export", src, "-f", "onnx", "-o", tmp_path / "o.onnx", "--opset", "10")
    assert rc == 2 and f"expected 11 to {max_opset()}" in err and out == ""
    rc, out, err = esr("model", "export", src, "-f", "ncnn", "-o", tmp_path / "n2", "--opset", "13")
    assert rc == 2 and "--opset is for onnx exports" in err and not (tmp_path / "n2").exists()


def test_an_export_or_import_that_fails_its_check_leaves_nothing(esr, tmp_path, monkeypatch):
    pytest.importorskip("ncnn", reason="the export extra (ncnn) is not installed")
    import esrcli.cli.model as cli_model

    net, info = CASES["srvgg-x4-prelu"]()
    src = tmp_path / "tiny.safetensors"
    save_model(src, net, info)
    assert esr("model", "export", src, "-f", "ncnn", "-o", tmp_path / "n")[0] == 0
    bad = lambda *a, **k: [type("R", (), {"size": (48, 64), "psnr": float("nan")})()]  # noqa: E731
    monkeypatch.setattr(cli_model, "check_ncnn", bad, raising=False)
    monkeypatch.setattr("esrcli.export.check_ncnn", bad)
    rc, _, err = esr("model", "import", tmp_path / "n" / "tiny.param", tmp_path / "n" / "tiny.bin", "-o", tmp_path / "back.safetensors")
    assert rc == 1 and "disagree" in err and "nothing written" in err and not (tmp_path / "back.safetensors").exists()
    rc, _, err = esr("model", "export", src, "-f", "ncnn", "-o", tmp_path / "m")
    assert rc == 1 and "does not reproduce the model" in err
    assert not (tmp_path / "m" / "tiny.param").exists() and not (tmp_path / "m" / "tiny.bin").exists()
    rc, _, err = esr("model", "export", src, "-f", "ncnn", "-o", tmp_path / "m" / "x.param")
    assert rc == 2 and "give their folder" in err


def test_a_training_runs_export_is_named_after_its_run(esr, tmp_path):
    pytest.importorskip("onnx", reason="the export extra (onnx) is not installed")
    net, info = CASES["srvgg-x4-prelu"]()
    for run in ("net", "gan"):
        (tmp_path / "runs" / run).mkdir(parents=True)
        save_model(tmp_path / "runs" / run / "net_g_ema.safetensors", net, info)
    # ONNX into a folder that does not exist yet: created; the run folder names the model
    rc, out, err = esr("model", "export", tmp_path / "runs" / "gan", "-f", "onnx", "-o", tmp_path / "new", "--no-check")
    assert rc == 0 and (tmp_path / "new" / "gan.onnx").is_file(), err
    rc, out, err = esr("model", "export", tmp_path / "runs" / "net" / "net_g_ema.safetensors", "-f", "onnx", "-o", tmp_path / "new", "--no-check")
    assert rc == 0 and (tmp_path / "new" / "net.onnx").is_file(), err  # not net_g_ema.onnx twice
    rc, out, err = esr("model", "export", tmp_path / "runs" / "net", "-f", "onnx", "-o", tmp_path / "deep" / "er" / "x.onnx", "--no-check")
    assert rc == 0 and (tmp_path / "deep" / "er" / "x.onnx").is_file(), err
