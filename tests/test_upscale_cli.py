"""`esr upscale`: formats kept, tiling, skip/overwrite, --scale, bad inputs, exit codes."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from torch import nn

import esrcli.weights
from esrcli.errors import ConfigError
from esrcli.archs import RRDBNet, SRVGGNetCompact, UNetDiscriminatorSN
from esrcli.weights import ModelInfo, save_model


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Tiny model files: a random RRDBNet x4, an exact nearest x4 and an identity x1 (SRVGG, last conv 0)."""
    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    p = dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=8, num_block=1, num_grow_ch=4)
    save_model(d / "rrdb.safetensors", RRDBNet(**p), ModelInfo("RRDBNet", p, 4))
    out = {"rrdb": d / "rrdb.safetensors"}
    for scale, name in ((4, "nearest4"), (1, "identity1")):
        q = dict(num_in_ch=3, num_out_ch=3, num_feat=4, num_conv=1, scale=scale, act_type="prelu")
        net = SRVGGNetCompact(**q)
        nn.init.zeros_(net.body[-1].weight)
        nn.init.zeros_(net.body[-1].bias)
        save_model(d / f"{name}.safetensors", net, ModelInfo("SRVGGNetCompact", q, scale))
        out[name] = d / f"{name}.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in UNetDiscriminatorSN(num_feat=4).state_dict().items()}, str(d / "disc.safetensors"))
    out["disc"] = d / "disc.safetensors"
    return out


def _rng(h, w, c, seed=0):
    return (np.random.default_rng(seed).random((h, w, c)) * 255).astype(np.uint8)


@pytest.fixture
def inputs(tmp_path) -> Path:
    """A folder with RGB jpg, gray png, RGBA png, 16-bit RGBA png and gray+alpha png."""
    d = tmp_path / "in"
    d.mkdir()
    cv2.imwrite(str(d / "rgb.jpg"), _rng(20, 24, 3))
    cv2.imwrite(str(d / "gray.png"), _rng(18, 16, 1)[:, :, 0])
    rgba = _rng(16, 20, 4, 1)
    rgba[:8, :, 3] = 0
    cv2.imwrite(str(d / "rgba.png"), rgba)
    cv2.imwrite(str(d / "deep.png"), (np.random.default_rng(2).random((16, 12, 4)) * 65535).astype(np.uint16))
    PILImage.fromarray(_rng(12, 14, 2, 3), "LA").save(d / "la.png")
    return d


def _mode(path: Path) -> tuple[str, tuple[int, int], str]:
    with PILImage.open(path) as im:
        mode, size = im.mode, im.size
    return mode, size, str(cv2.imread(str(path), cv2.IMREAD_UNCHANGED).dtype)


def test_folder_keeps_gray_alpha_and_depth(esr, models, inputs, tmp_path):
    out = tmp_path / "out"
    rc, stdout, err = esr("upscale", inputs, out, "--model", models["rrdb"])
    assert rc == 0, err
    assert sorted(Path(line).name for line in stdout.split()) == ["deep.png", "gray.png", "la.png", "rgb.jpg", "rgba.png"]
    assert _mode(out / "rgb.jpg") == ("RGB", (96, 80), "uint8")
    assert _mode(out / "gray.png") == ("L", (64, 72), "uint8")
    assert _mode(out / "rgba.png") == ("RGBA", (80, 64), "uint8")
    assert _mode(out / "deep.png")[1:] == ((48, 64), "uint16") and cv2.imread(str(out / "deep.png"), -1).shape[2] == 4
    assert _mode(out / "la.png") == ("LA", (56, 48), "uint8")
    assert "5 written, 0 skipped, 0 failed" in err
    assert "tile 512, overlap 32" in err  # the default bounds memory
    assert not list(out.glob(".*"))  # no temporary files left


def test_tiled_output_matches_whole_and_precision_keeps_16bit(esr, models, inputs, tmp_path):
    cv2.imwrite(str(inputs / "rgb.jpg"), _rng(70, 76, 3))  # larger than the smallest tile, 32
    cv2.imwrite(str(inputs / "deep.png"), (np.random.default_rng(2).random((66, 40, 4)) * 65535).astype(np.uint16))
    rgba = _rng(40, 72, 4, 1)
    rgba[:8, :, 3] = 0
    cv2.imwrite(str(inputs / "rgba.png"), rgba)
    rc, _, err = esr("upscale", inputs, tmp_path / "a", "--model", models["nearest4"], "--precision", "fp32")
    assert rc == 0, err
    rc, _, err = esr("upscale", inputs, tmp_path / "b", "--model", models["nearest4"], "--tile", "32", "--tile-overlap", "8", "--batch", "3")
    assert rc == 0, err
    for name in ("rgb.jpg", "deep.png", "rgba.png"):
        a = cv2.imread(str(tmp_path / "a" / name), -1).astype(np.float64)
        b = cv2.imread(str(tmp_path / "b" / name), -1).astype(np.float64)
        maxv = 65535 if name == "deep.png" else 255
        assert np.abs(a - b).max() <= maxv / 255 + 1e-9 if name != "rgb.jpg" else np.abs(a - b).mean() < 1
    # nearest x4 of a 16-bit image is exact even under --precision auto (16-bit runs in fp32)
    src = cv2.imread(str(inputs / "deep.png"), -1)
    got = cv2.imread(str(tmp_path / "b" / "deep.png"), -1)
    np.testing.assert_array_equal(got[::4, ::4, :3], src[:, :, :3])


def test_skip_existing_then_overwrite(esr, models, inputs, tmp_path):
    out = tmp_path / "out"
    assert esr("upscale", inputs / "rgb.jpg", out, "--model", models["nearest4"])[0] == 0
    target = out / "rgb.jpg"
    before = target.stat().st_mtime_ns
    rc, stdout, err = esr("upscale", inputs / "rgb.jpg", out, "--model", models["nearest4"])
    assert rc == 0 and stdout == "" and "skip" in err and "--overwrite" in err and "1 skipped" in err
    assert target.stat().st_mtime_ns == before
    rc, stdout, err = esr("upscale", inputs / "rgb.jpg", out, "--model", models["nearest4"], "--overwrite")
    assert rc == 0 and stdout.strip() == str(target)


def test_scale_suffix_ext_and_single_output_file(esr, models, inputs, tmp_path):
    out = tmp_path / "out"
    rc, stdout, err = esr("upscale", inputs / "rgb.jpg", inputs / "rgba.png", out, "--model", models["rrdb"], "--scale", "3", "--suffix", "_x3", "--ext", "jpg")
    assert rc == 0, err
    assert _mode(out / "rgb_x3.jpg")[:2] == ("RGB", (72, 60))
    assert _mode(out / "rgba_x3.jpg")[:2] == ("RGB", (60, 48))  # explicit jpg: alpha dropped, with a warning
    assert "alpha dropped" in err
    rc, _, err = esr("upscale", inputs / "gray.png", tmp_path / "one.webp", "--model", models["rrdb"], "--scale", "0.5")
    assert rc == 0, err
    assert _mode(tmp_path / "one.webp")[1] == (8, 9)
    # Several inputs (or a folder) cannot go to one image file name: a usage error, nothing written.
    for args in ((inputs / "rgb.jpg", inputs / "gray.png", tmp_path / "two.png"), (inputs, tmp_path / "all.png")):
        rc, _, err = esr("upscale", *args, "--model", models["rrdb"])
        assert rc == 2 and "name an output folder" in err, err
        assert not args[-1].exists()
    rc, _, err = esr("upscale", inputs / "missing.png", tmp_path / "one.png", "--model", models["rrdb"])
    assert rc == 1 and "missing.png: no such file" in err, err  # one missing input: named as such
    (tmp_path / "dir.png").mkdir()  # an existing folder with such a name is still a folder
    rc, _, err = esr("upscale", inputs / "gray.png", inputs / "rgb.jpg", tmp_path / "dir.png", "--model", models["rrdb"])
    assert rc == 0 and (tmp_path / "dir.png" / "gray.png").is_file(), err


def test_multi_frame_input_is_upscaled_from_its_first_frame_with_a_warning(esr, models, tmp_path):
    frames = [PILImage.fromarray(_rng(6, 5, 3, seed=k)[:, :, ::-1]) for k in range(2)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    rc, _, err = esr("upscale", tmp_path / "anim.gif", tmp_path / "out", "--model", models["nearest4"])
    assert rc == 0, err
    assert "anim.gif: 2 frames or pages; only the first is upscaled" in err
    assert _mode(tmp_path / "out" / "anim.png")[:2] == ("RGB", (20, 24))  # no alpha the GIF does not have


def test_auto_ext_sends_alpha_and_16bit_from_jpg_to_png(esr, models, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    cv2.imwrite(str(d / "a.bmp"), _rng(8, 8, 4))  # 32-bit BMP with alpha
    rc, stdout, err = esr("upscale", d, tmp_path / "out", "--model", models["nearest4"])
    assert rc == 0, err
    name = Path(stdout.strip()).name
    assert name in ("a.png", "a.bmp")
    if name == "a.png":
        assert _mode(tmp_path / "out" / "a.png")[0] == "RGBA"


def test_exif_orientation_applied_and_icc_kept(esr, models, tmp_path):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    im = PILImage.fromarray(_rng(8, 12, 3))  # stored 12 wide, 8 high
    exif = im.getexif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise: 8 wide, 12 high
    im.save(tmp_path / "cam.jpg", exif=exif.tobytes(), icc_profile=icc, quality=95)
    rc, _, err = esr("upscale", tmp_path / "cam.jpg", tmp_path / "out", "--model", models["nearest4"])
    assert rc == 0, err
    with PILImage.open(tmp_path / "out" / "cam.jpg") as out:
        assert out.size == (32, 48)
        assert out.info.get("icc_profile") == icc
        assert out.getexif().get(0x0112, 1) == 1


def test_recursive_keeps_folder_layout(esr, models, inputs, tmp_path):
    (inputs / "sub").mkdir()
    cv2.imwrite(str(inputs / "sub" / "deep1.png"), _rng(8, 8, 3))
    (inputs / ".cache").mkdir()  # a hidden folder: skipped like hidden files
    cv2.imwrite(str(inputs / ".cache" / "thumb.png"), _rng(8, 8, 3))
    out = tmp_path / "out"
    assert esr("upscale", inputs, out, "--model", models["nearest4"])[0] == 0
    assert not (out / "sub").exists()
    rc, _, _ = esr("upscale", inputs, out, "--model", models["nearest4"], "--recursive")
    assert rc == 0 and (out / "sub" / "deep1.png").exists() and not (out / ".cache").exists()
    only_nested = tmp_path / "nested"
    (only_nested / "a").mkdir(parents=True)
    cv2.imwrite(str(only_nested / "a" / "x.png"), _rng(8, 8, 3))
    rc, _, err = esr("upscale", only_nested, tmp_path / "o3", "--model", models["nearest4"])
    assert rc == 1 and "no images found" in err and "pass --recursive (-r)" in err


def test_output_paths_blocked_by_folders_or_files_fail_before_the_network(esr, models, inputs, tmp_path, monkeypatch):
    import esrcli.infer.batch

    ran = []
    real = esrcli.infer.batch.upscale_image
    monkeypatch.setattr(esrcli.infer.batch, "upscale_image", lambda image, *a, **k: ran.append(1) or real(image, *a, **k))
    out = tmp_path / "out"
    (out / "gray.png").mkdir(parents=True)  # a folder where an output goes
    (inputs / "sub").mkdir()
    cv2.imwrite(str(inputs / "sub" / "x.png"), _rng(8, 8, 3))
    (out / "sub").write_text("a file where a folder goes")
    for extra in ((), ("--overwrite",)):
        ran.clear()
        rc, stdout, err = esr("upscale", inputs, out, "--model", models["nearest4"], "-r", *extra)
        assert rc == 1, err
        assert f"output {out / 'gray.png'} is a folder" in err
        assert f"cannot write into {out / 'sub'}: {out / 'sub'} exists and is not a folder" in err
        assert "FileExistsError" not in err and "Traceback" not in err
        assert "esr: skip" not in err and "0 skipped, 2 failed" in err
        assert len(ran) == len(stdout.split()) == 4  # only the images that could be written ran


def test_a_file_named_and_found_in_a_folder_is_kept_whatever_the_order(tmp_path):
    from esrcli.infer.plan import collect_inputs

    d = tmp_path / "dd"
    d.mkdir()
    for name in ("photo.jpg", "photo_out.png"):
        cv2.imwrite(str(d / name), _rng(8, 8, 3))
    for order in ([d, d / "photo_out.png"], [d / "photo_out.png", d]):
        items = collect_inputs(order, d, suffix="_out")
        assert sorted(it.src.name for it in items) == ["photo.jpg", "photo_out.png"], order


def test_an_input_named_twice_runs_once(esr, models, inputs, tmp_path):
    out = tmp_path / "out"
    rc, stdout, err = esr("upscale", inputs / "rgb.jpg", inputs / "rgb.jpg", out, "--model", models["nearest4"])
    assert rc == 0 and stdout.split() == [str(out / "rgb.jpg")], err
    rc, stdout, err = esr("upscale", inputs, inputs / "gray.png", tmp_path / "o2", "--model", models["nearest4"])
    assert rc == 0 and len(stdout.split()) == 5 and "0 failed" in err, err


def test_a_png_named_jpg_keeps_its_alpha(esr, models, tmp_path):
    rgba = _rng(8, 10, 4)
    rgba[:4, :, 3] = 0
    ok, data = cv2.imencode(".png", rgba)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "icon.jpg").write_bytes(data.tobytes())
    rc, stdout, err = esr("upscale", tmp_path / "in", tmp_path / "out", "--model", models["nearest4"])
    assert rc == 0 and stdout.split() == [str(tmp_path / "out" / "icon.png")], err
    assert _mode(tmp_path / "out" / "icon.png")[0] == "RGBA" and "alpha dropped" not in err


def test_a_folder_given_as_the_model_says_so(esr, inputs, tmp_path):
    (tmp_path / "models").mkdir()
    rc, _, err = esr("upscale", inputs / "rgb.jpg", tmp_path / "out", "--model", tmp_path / "models")
    assert rc == 1 and f"{tmp_path / 'models'}: is a folder, not a model file" in err


def test_stdout_closed_by_its_reader_does_not_stop_the_batch(models, inputs, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "out"
    code = "import sys; from esrcli.cli.app import main; sys.exit(main(sys.argv[1:]))"
    args = [sys.executable, "-c", code, "upscale", str(inputs), str(out), "--model", str(models["nearest4"]), "-j", "1"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()  # like `| head -1`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert first.strip() and len(list(out.iterdir())) == 5 and "5 written" in err and "Traceback" not in err


def _bomb_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 200_000, 200_000, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def test_batch_goes_past_bad_files_and_exits_1(esr, models, inputs, tmp_path):
    good = cv2.imencode(".png", _rng(32, 32, 3))[1].tobytes()
    (inputs / "zero.png").write_bytes(b"")
    (inputs / "trunc.png").write_bytes(good[: len(good) // 2])
    (inputs / "text.jpg").write_text("not an image at all")
    (inputs / "bomb.png").write_bytes(_bomb_png())
    out = tmp_path / "out"
    rc, stdout, err = esr("upscale", inputs, out, "--model", models["nearest4"])
    assert rc == 1
    assert len(stdout.split()) == 5  # the good ones were all written
    lines = [line for line in err.splitlines() if line.startswith("esr: error:")]
    assert len(lines) == 4
    for name, needle in (("zero.png", "empty"), ("trunc.png", "truncated PNG"), ("text.jpg", "not a readable"), ("bomb.png", "too large")):
        assert any(name in line and needle in line for line in lines), (name, err)
    assert "5 written, 0 skipped, 4 failed" in err
    assert "Traceback" not in err


def test_output_folder_equal_to_input_folder_needs_a_suffix(esr, models, inputs):
    before = {p.name: p.read_bytes() for p in inputs.iterdir()}
    rc, stdout, err = esr("upscale", inputs, inputs, "--model", models["nearest4"])
    assert rc == 1 and "output folder is the input folder" in err and "--suffix" in err
    rc, stdout, err = esr("upscale", inputs / "rgb.jpg", inputs, "--model", models["nearest4"])
    assert rc == 1 and "input folder" in err
    assert {p.name: p.read_bytes() for p in inputs.iterdir()} == before
    rc, stdout, err = esr("upscale", inputs, inputs, "--model", models["nearest4"], "--suffix", "_up")
    assert rc == 0 and len(stdout.split()) == 5
    assert {p.name: p.read_bytes() for p in inputs.iterdir() if p.name in before} == before


def test_unwritable_output_folder_is_named(esr, models, inputs, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, stdout, err = esr("upscale", inputs, blocker / "out", "--model", models["nearest4"])
    assert rc == 1 and str(blocker / "out") in err and len(err.strip().splitlines()) <= 2


def test_model_problems_are_one_line_errors(esr, models, inputs, tmp_path, monkeypatch):
    rc, _, err = esr("upscale", inputs, tmp_path / "o", "--model", models["disc"])
    assert rc == 1 and err.startswith("esr: error:") and "Traceback" not in err
    rc, _, err = esr("upscale", inputs, tmp_path / "o", "--model", tmp_path / "missing.safetensors")
    assert rc == 1 and "missing.safetensors" in err
    monkeypatch.setattr(esrcli.weights, "default_model_name", lambda: None)
    rc, _, err = esr("upscale", inputs, tmp_path / "o")
    assert rc == 1 and "no default model" in err and "--model" in err


@pytest.mark.parametrize(
    "args",
    [("--tile", "32", "--tile-overlap", "20"), ("--ext", "gif"), ("--scale", "0"), ("--scale", "inf"), ("--scale", "nan"), ("--alpha", "magic"), ("--quality", "0"), ("--tile", "-5")],
)
def test_usage_errors_exit_2(esr, models, inputs, tmp_path, args):
    rc, _, err = esr("upscale", inputs, tmp_path / "o", "--model", models["nearest4"], *args)
    assert rc == 2, err


def test_bad_device_and_precision(esr, models, inputs, tmp_path):
    # a value that is no device or precision at all: a usage error
    rc, _, err = esr("upscale", inputs, tmp_path / "o", "--model", models["nearest4"], "--device", "tpu")
    assert rc == 2 and "--device" in err and "'tpu'" in err
    rc, _, err = esr("upscale", inputs, tmp_path / "o", "--model", models["nearest4"], "--precision", "int4")
    assert rc == 2 and "--precision" in err and "'int4'" in err
    # a device this machine does not have: exit 1 with why
    if not torch.cuda.is_available():
        rc, _, err = esr("upscale", inputs, tmp_path / "o", "--model", models["nearest4"], "--device", "cuda:0")
        assert rc == 1 and "cuda is not available" in err


def test_fp16_on_cpu_runs_with_a_notice(esr, models, inputs, tmp_path):
    rc, _, err = esr("upscale", inputs / "rgb.jpg", tmp_path / "o", "--model", models["nearest4"], "--precision", "fp16", "--device", "cpu")
    assert rc == 0 and "esr: warning: fp16 is not supported on the CPU; using fp32" in err


@pytest.mark.slow
def test_real_images_all_processed(esr, models, shared, tmp_path):
    """The main job: all nine real inputs (gray, RGBA, 16-bit RGBA) with a tiny model, tiled."""
    real = shared / "data" / "real"
    out = tmp_path / "out"
    rc, stdout, err = esr("upscale", real, out, "--model", models["nearest4"], "--tile", "128", "--scale", "2")
    assert rc == 0, err
    assert len(stdout.split()) == 9
    assert _mode(out / "00017_gray.png")[0] == "L"
    assert _mode(out / "wolf_gray.jpg")[0] == "L"
    assert _mode(out / "children-alpha.png")[0] == "RGBA"
    mode, size, dtype = _mode(out / "tree_alpha_16bit.png")
    assert dtype == "uint16" and cv2.imread(str(out / "tree_alpha_16bit.png"), -1).shape == (512, 684, 4)
    with PILImage.open(out / "tree_alpha_16bit.png") as im:
        assert im.info.get("icc_profile")  # ICC kept on 16-bit RGBA PNG


def test_embedded_default_model_is_used_without_model_option(esr, tmp_path):
    """The README's main job: no --model, the embedded default upscales x4 and keeps colour."""
    if esrcli.weights.default_model_name() is None:
        pytest.skip("no embedded default model ships in this build yet")
    yy, xx = np.mgrid[0:40, 0:48]
    img = np.stack([xx * 5, yy * 6, np.full_like(xx, 128)], axis=2).astype(np.uint8)  # smooth RGB ramp
    cv2.imwrite(str(tmp_path / "in.png"), img[:, :, ::-1])
    rc, out, err = esr("upscale", tmp_path / "in.png", tmp_path / "out")
    assert rc == 0, err
    assert "realesrgan-x4plus" in err
    sr = cv2.imread(str(tmp_path / "out" / "in.png"))[:, :, ::-1].astype(np.float32)
    assert sr.shape == (160, 192, 3)
    ref = cv2.resize(img, (192, 160), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    assert np.abs(sr - ref)[8:-8, 8:-8].mean() < 6  # a smooth ramp stays the same ramp: no colour shift
    rc, _, err = esr("upscale", tmp_path / "in.png", tmp_path / "o2", "--sharpness", "0.5")  # x4plus has no partner
    assert rc == 1 and err.count("\n") == 1 and "realesrgan-x4plus: no PSNR-stage partner" in err
    assert "models with a partner: esr-general-x4, esr-general-x4-net" in err
    rc, _, err = esr("upscale", tmp_path / "in.png", tmp_path / "o2", "--sharpness", "2")
    assert rc == 2 and "--sharpness" in err


def test_jobs_give_the_same_images_reported_in_input_order(esr, models, inputs, tmp_path):
    (inputs / "m_bad.png").write_bytes(b"")  # a failure amid the batch
    runs = {}
    for jobs in ("1", "2"):
        rc, stdout, err = esr("upscale", inputs, tmp_path / jobs, "--model", models["rrdb"], "--jobs", jobs)
        assert rc == 1 and "5 written, 0 skipped, 1 failed" in err, err
        assert ("2 at a time" in err) == (jobs == "2")
        assert [line for line in err.splitlines() if "error" in line] == [f"esr: error: {inputs / 'm_bad.png'}: empty file (0 bytes)"]
        runs[jobs] = [Path(line).name for line in stdout.split()]
    assert runs["1"] == runs["2"] == ["deep.png", "gray.png", "la.png", "rgb.jpg", "rgba.png"]  # input order
    for name in runs["1"]:
        a, b = (cv2.imread(str(tmp_path / jobs / name), -1) for jobs in ("1", "2"))
        assert a.dtype == b.dtype and a.shape == b.shape, name
        step = 257 if a.dtype == np.uint16 else 1  # one 8-bit level
        assert np.abs(a.astype(np.int64) - b).max() <= step, name


def test_ctrl_c_amid_a_batch_with_workers_leaves_only_whole_images(esr, models, inputs, tmp_path, monkeypatch):
    import esrcli.infer.batch as engine  # the batch engine reads the inputs (was: esrcli.cli.upscale)

    real_read = engine.read_image
    calls = []

    def read_then_interrupt(path):
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt  # Ctrl-C while two images are in flight
        return real_read(path)

    monkeypatch.setattr(engine, "read_image", read_then_interrupt)
    before = torch.get_num_threads()
    out = tmp_path / "out"
    rc, stdout, err = esr("upscale", inputs, out, "--model", models["rrdb"], "--jobs", "2")
    assert rc == 130 and "interrupted" in err and "Traceback" not in err
    assert torch.get_num_threads() == before
    written = sorted(p.name for p in out.iterdir())
    assert not [n for n in written if n.startswith(".")]  # no temporary files left
    assert len(written) <= 3
    for name in written:  # whatever was written is whole
        assert cv2.imread(str(out / name), -1) is not None, name


@pytest.mark.parametrize("free_bytes", [None, 10**12, 1])
def test_images_in_flight_stay_within_the_memory_budget(esr, models, inputs, tmp_path, monkeypatch, free_bytes):
    import threading
    import time

    import esrcli.infer.batch as engine  # the batch engine runs the workers (was: esrcli.cli.upscale)

    real_upscale = engine.upscale_image
    lock = threading.Lock()
    now = peak = 0

    def counting_upscale(*args, **kwargs):
        nonlocal now, peak
        with lock:
            now += 1
            peak = max(peak, now)
        try:
            time.sleep(0.2)  # long enough for a second image to start if it may
            return real_upscale(*args, **kwargs)
        finally:
            with lock:
                now -= 1

    monkeypatch.setattr(engine, "upscale_image", counting_upscale)
    monkeypatch.setattr(engine, "available_memory", lambda: free_bytes)
    rc, stdout, err = esr("upscale", inputs, tmp_path / "out", "--model", models["nearest4"], "--jobs", "2")
    assert rc == 0, err
    assert [Path(line).name for line in stdout.split()] == ["deep.png", "gray.png", "la.png", "rgb.jpg", "rgba.png"]
    waits = [line for line in err.splitlines() if "waits until it fits" in line]
    too_big = [line for line in err.splitlines() if "available: it may fail" in line]
    if free_bytes == 1:  # no room for two: one image at a time, said once; each warned
        assert peak == 1 and len(waits) == 1 and "gray.png needs about 0 MB" in waits[0], err
        assert len(too_big) == 5 and too_big[0].startswith(f"esr: warning: {inputs / 'deep.png'}: needs about"), err
    else:  # memory unknown, or plenty: two at a time
        assert peak == 2 and not waits and not too_big, err


def test_running_again_skips_its_own_outputs(esr, models, inputs, tmp_path):
    """Outputs written into the input folder (with --suffix) or below it (-r) are not taken as
    inputs the next time: the same command skips them instead of upscaling them in turn."""
    (inputs / "photo_up.png").write_bytes((inputs / "gray.png").read_bytes())  # no photo.*: an input
    for _ in range(3):
        rc, _, err = esr("upscale", inputs, inputs, "--model", models["nearest4"], "--suffix", "_up")
        assert rc == 0, err
    names = sorted(p.name for p in inputs.iterdir())
    assert not [n for n in names if "_up_up_up" in n] and "photo_up_up.png" in names
    assert len([n for n in names if "_up" in n]) == 7  # 5 outputs, photo_up.png and its output
    assert "0 written, 6 skipped" in err
    out = inputs / "out"
    for _ in range(3):
        rc, _, err = esr("upscale", "-r", inputs, out, "--model", models["nearest4"])
        assert rc == 0, err
    assert not (out / "out").exists() and "0 written, 12 skipped" in err
    # a file named explicitly is always an input
    rc, _, err = esr("upscale", inputs / "gray_up.png", tmp_path / "o", "--model", models["nearest4"])
    assert rc == 0 and (tmp_path / "o" / "gray_up.png").is_file(), err


def test_output_kinds_esr_cannot_write_are_usage_errors(esr, models, inputs, tmp_path):
    for name in ("out.gif", "out.avif", "clip.avi"):
        rc, _, err = esr("upscale", inputs / "rgb.jpg", tmp_path / name, "--model", models["nearest4"])
        assert rc == 2 and f"does not write {Path(name).suffix} files" in err, err
        assert not (tmp_path / name).exists()
    rc, _, err = esr("upscale", inputs / "rgb.jpg", tmp_path / "run.v2", "--model", models["nearest4"])
    assert rc == 0 and (tmp_path / "run.v2" / "rgb.jpg").is_file(), err  # other dotted names: folders


def test_gif_in_a_folder_is_an_input(esr, models, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    PILImage.fromarray(_rng(6, 5, 3)).save(d / "still.gif")
    rc, _, err = esr("upscale", d, tmp_path / "out", "--model", models["nearest4"])
    assert rc == 0 and _mode(tmp_path / "out" / "still.png")[1] == (20, 24), err


def test_small_tile_takes_a_fitting_default_overlap(esr, models, inputs, tmp_path):
    rc, _, err = esr("--verbose", "upscale", inputs / "rgb.jpg", tmp_path / "o", "--model", models["nearest4"], "--tile", "40")
    assert rc == 0 and "tile 40, overlap 20" in err, err
    rc, _, err = esr("upscale", inputs / "rgb.jpg", tmp_path / "o2", "--model", models["nearest4"], "--tile", "40", "--tile-overlap", "21")
    assert rc == 2 and "at most half the tile (20), got 21" in err
    # below 32 the overlap cannot hide the seams: refused
    rc, _, err = esr("upscale", inputs / "rgb.jpg", tmp_path / "o3", "--model", models["nearest4"], "--tile", "16")
    assert rc == 2 and "at least 32" in err
    from esrcli import Upscaler

    with pytest.raises(ConfigError, match="at least 32"):
        Upscaler(models["nearest4"], tile=16)
    up = Upscaler(models["nearest4"], tile=32, precision="fp32")  # the overlap follows the tile, as in the CLI
    assert up.options.tile_overlap == 16 and up.upscale(_rng(40, 50, 3)).shape == (160, 200, 3)


def test_two_inputs_for_one_output_are_an_error_every_run(esr, models, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    cv2.imwrite(str(d / "x.png"), _rng(10, 12, 3))
    cv2.imwrite(str(d / "x.jpg"), _rng(10, 12, 3, 1))
    for run in range(2):  # the second run finds x.png written: still an error, not a quiet skip
        rc, _, err = esr("upscale", d, tmp_path / "out", "--model", models["nearest4"], "--ext", "png")
        assert rc == 1 and "is also the output of" in err, (run, err)


def test_a_missing_input_fails_alone(esr, models, inputs, tmp_path):
    rc, out, err = esr("upscale", tmp_path / "missing.png", inputs / "rgb.jpg", tmp_path / "out", "--model", models["nearest4"])
    assert rc == 1 and "missing.png: no such file" in err
    assert (tmp_path / "out" / "rgb.jpg").exists() and "1 written, 0 skipped, 1 failed" in err


def test_ext_against_the_output_file_name_and_an_output_too_large(esr, models, inputs, tmp_path):
    rc, _, err = esr("upscale", inputs / "rgb.jpg", tmp_path / "x.png", "--model", models["nearest4"], "--ext", "jpg")
    assert rc == 0 and "--ext jpg ignored: the output file name x.png decides its format" in err
    assert (tmp_path / "x.png").read_bytes()[:4] == b"\x89PNG"
    rc, _, err = esr("upscale", inputs / "rgb.jpg", tmp_path / "y.png", "--model", models["nearest4"], "--scale", "1000")
    assert rc == 1 and "the output would be 24000x20000 pixels, over the limit" in err and "smaller --scale" in err


def test_depth_and_alpha_warnings_follow_the_written_file(esr, models, inputs, tmp_path):
    rc, _, err = esr("upscale", inputs / "rgba.png", tmp_path / "a.jpg", "--model", models["nearest4"])
    assert rc == 0 and "alpha dropped" in err and _mode(tmp_path / "a.jpg")[0] == "RGB"
    rc, _, err = esr("upscale", inputs / "rgba.png", tmp_path / "b.png", "--model", models["nearest4"], "--ext", "jpg")
    assert rc == 0 and "alpha dropped" not in err and _mode(tmp_path / "b.png")[0] == "RGBA"  # a named .png wins
    rc, _, err = esr("upscale", inputs / "deep.png", tmp_path / "o", "--model", models["nearest4"], "--ext", "webp")
    assert rc == 0 and "16-bit depth is reduced" in err
    rc, _, err = esr("upscale", inputs / "deep.png", tmp_path / "o", "--model", models["nearest4"])
    assert rc == 0 and "16-bit depth" not in err
    rc, _, err = esr("upscale", inputs / "rgba.png", tmp_path / "c.bmp", "--model", models["nearest4"])  # BMP: no alpha either
    assert rc == 0 and "BMP has no alpha channel; alpha dropped" in err


def test_nan_output_fails_that_file_with_one_line(esr, models, inputs, tmp_path):
    from esrcli.weights import load_state_dict

    sd = load_state_dict(models["nearest4"])
    sd["body.0.weight"] = torch.full_like(sd["body.0.weight"], float("nan"))
    q = dict(num_in_ch=3, num_out_ch=3, num_feat=4, num_conv=1, scale=4, act_type="prelu")
    net = SRVGGNetCompact(**q)
    net.load_state_dict(sd)
    save_model(tmp_path / "nan.safetensors", net, ModelInfo("SRVGGNetCompact", q, 4))
    rc, stdout, err = esr("upscale", inputs / "rgb.jpg", inputs / "gray.png", tmp_path / "o", "--model", tmp_path / "nan.safetensors", "--precision", "fp32")
    assert rc == 1 and stdout == "" and "NaN" in err and "2 failed" in err and "Traceback" not in err and "RuntimeWarning" not in err
    assert "values in fp32: its weights are broken" in err and "try --precision fp32" not in err  # already fp32
    assert not (tmp_path / "o" / "rgb.jpg").exists()


def test_resize_out_of_memory_fails_that_file(monkeypatch):
    import esrcli.infer.upscale as up

    def boom(*a, **k):
        raise cv2.error("OpenCV(5.1.0) alloc.cpp:73: error: (-4:Insufficient memory) Failed to allocate 49152000000 bytes")

    monkeypatch.setattr(up.cv2, "resize", boom)
    with pytest.raises(MemoryError, match=r"cannot resize to 30x20: .*Insufficient memory"):
        up._resize(np.zeros((4, 4, 3), np.float32), (20, 30))
    from esrcli.infer.batch import _FILE_ERRORS

    assert issubclass(MemoryError, _FILE_ERRORS)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_special_files_are_refused_not_read(esr, models, tmp_path):
    """A link to /dev/zero would be read until memory runs out: refused by name, at once."""
    (tmp_path / "z.png").symlink_to("/dev/zero")
    rc, _, err = esr("upscale", tmp_path / "z.png", tmp_path / "o", "--model", models["nearest4"])
    assert rc == 1 and "z.png: not a regular file" in err
    from esrcli.data.imageio import read_image
    from esrcli.errors import ImageError

    with pytest.raises(ImageError, match="not a regular file"):
        read_image(tmp_path / "z.png")


def test_a_run_that_writes_nothing_leaves_no_new_folder(esr, models, tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    rc, _, err = esr("upscale", tmp_path / "bad.png", tmp_path / "new" / "deep", "--model", models["nearest4"])
    assert rc == 1 and "1 failed" in err and not (tmp_path / "new").exists()
    rc, _, err = esr("upscale", tmp_path / "bad.png", tmp_path / "new2", "--model", tmp_path / "missing.safetensors")
    assert rc == 1 and not (tmp_path / "new2").exists()
    (tmp_path / "kept").mkdir()  # a folder that was there stays
    rc, _, err = esr("upscale", tmp_path / "bad.png", tmp_path / "kept", "--model", models["nearest4"])
    assert rc == 1 and (tmp_path / "kept").is_dir()
