"""``esr degrade``: batch mode, --show, --print-config, errors."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from esrcli.config import load_toml
from esrcli.config.degrade import DegradeConfig
from esrcli.data.imageio import read_image
from esrcli.data.testchart import draw_test_chart


@pytest.fixture
def hr_dir(tmp_path):
    d = tmp_path / "hr"
    d.mkdir()
    chart = (draw_test_chart(96)[:, :, ::-1] * 255).round().astype(np.uint8)
    cv2.imwrite(str(d / "a.png"), chart)
    cv2.imwrite(str(d / "b_gray.png"), cv2.cvtColor(chart, cv2.COLOR_BGR2GRAY)[:80, :72])
    cv2.imwrite(str(d / "c16.png"), chart.astype(np.uint16) * 257)
    return d


def test_degrade_folder_with_crops(esr, hr_dir, tmp_path):
    out = tmp_path / "out"
    rc, stdout, err = esr("degrade", hr_dir, out, "--per-image", "2", "--crop", "64", "--seed", "3")
    assert rc == 0, err
    lq = sorted(p.name for p in (out / "lq").iterdir())
    assert lq == ["a_0.png", "a_1.png", "b_gray_0.png", "b_gray_1.png", "c16_0.png", "c16_1.png"]
    assert read_image(out / "lq" / "a_0.png").size == (16, 16)
    assert read_image(out / "gt" / "a_1.png").size == (64, 64)
    assert read_image(out / "gt" / "c16_0.png").bit_depth == 16
    lines = [json.loads(x) for x in (out / "params.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and lines[0]["lq"] == "lq/a_0.png" and lines[0]["gt"] == "gt/a_0.png"
    assert {"first", "second", "final", "seed", "crop"} <= set(lines[0])
    # the GT crop is the source at the logged position
    src = read_image(hr_dir / "a.png").color
    c = lines[1]["crop"]
    gt = read_image(out / "gt" / "a_1.png").color
    assert np.array_equal(gt, src[c["top"] : c["top"] + 64, c["left"] : c["left"] + 64])
    assert "6 LQ images" in stdout
    # same seed -> identical files
    out2 = tmp_path / "out2"
    assert esr("degrade", hr_dir, out2, "--per-image", "2", "--crop", "64", "--seed", "3")[0] == 0
    assert (out / "lq" / "b_gray_1.png").read_bytes() == (out2 / "lq" / "b_gray_1.png").read_bytes()


def test_degrade_whole_images_scale_2(esr, hr_dir, tmp_path):
    out = tmp_path / "o"
    rc, _, err = esr("degrade", hr_dir / "b_gray.png", hr_dir / "a.png", out, "--scale", "2")
    assert rc == 0, err
    assert read_image(out / "lq" / "b_gray.png").size == (40, 36)
    assert read_image(out / "lq" / "a.png").size == (48, 48)
    assert not (out / "gt").exists()


def test_bad_file_is_reported_and_batch_goes_on(esr, hr_dir, tmp_path):
    (hr_dir / "broken.png").write_bytes(b"not a png at all")
    (hr_dir / "small.png").write_bytes(cv2.imencode(".png", np.zeros((20, 20, 3), np.uint8))[1].tobytes())
    out = tmp_path / "out"
    rc, stdout, err = esr("degrade", hr_dir, out, "--crop", "32")
    assert rc == 1
    assert "esr: error:" in err and "broken.png" in err
    # too small for the crop: a warning, not a failure
    assert "esr: warning:" in err and "small.png" in err and "smaller than --crop 32, skipped" in err
    assert "1 of 5 files failed" in err and "1 smaller than --crop skipped" in stdout
    assert len((out / "params.jsonl").read_text().splitlines()) == 3
    (hr_dir / "broken.png").unlink()
    rc, stdout, err = esr("degrade", hr_dir, tmp_path / "out2", "--crop", "32")
    assert rc == 0 and "small.png" in err


def test_show_writes_a_sheet(esr, tmp_path, hr_dir):
    sheet = tmp_path / "sheet.png"
    rc, stdout, err = esr("degrade", "--show", "-o", sheet, "--n", "3", "--no-open")
    assert rc == 0, err
    assert stdout.strip() == str(sheet)
    im = read_image(sheet)
    assert im.size[0] > 256 and im.size[1] > 256 * 2
    sheet2 = tmp_path / "sheet2.png"
    rc, stdout, err = esr("degrade", "--show", hr_dir / "a.png", "-o", sheet2, "--n", "2", "--seed", "1")
    assert rc == 0, err and sheet2.exists()
    before = (hr_dir / "a.png").read_bytes()
    rc, _, err = esr("degrade", "--show", hr_dir / "a.png", "-o", hr_dir / "a.png", "--no-open")
    assert rc == 2 and "the sheet would overwrite the input image" in err
    assert (hr_dir / "a.png").read_bytes() == before


def test_print_config_round_trips(esr, tmp_path):
    rc, stdout, _ = esr("degrade", "--print-config")
    assert rc == 0
    f = tmp_path / "d.toml"
    f.write_text(stdout)
    assert load_toml(DegradeConfig, f, table="degrade") == DegradeConfig()
    f.write_text(stdout.replace("sinc_first_prob = 0.5", "sinc_first_prob = 0.25"))
    rc, stdout2, _ = esr("degrade", "--print-config", "--config", f, "--scale", "3")
    assert rc == 0
    f2 = tmp_path / "d2.toml"
    f2.write_text(stdout2)
    cfg = load_toml(DegradeConfig, f2, table="degrade")
    assert cfg.final.sinc_first_prob == 0.25 and cfg.scale == 3 and cfg.gt_size == 255


def test_config_error_names_the_key(esr, tmp_path, hr_dir):
    f = tmp_path / "bad.toml"
    f.write_text("[degrade.first]\nblur_sigma = [-1.0, 2.0]\n")
    rc, _, err = esr("degrade", hr_dir, tmp_path / "o", "--config", f)
    assert rc == 1 and "degrade.first.blur_sigma" in err and "bad.toml" in err


@pytest.mark.parametrize(
    "args",
    [
        ["degrade"],
        ["degrade", "only_one_path"],
        ["degrade", "a.png", "out", "--crop", "30"],
        ["degrade", "--show", "a.png", "b.png"],
        ["degrade", "a.png", "out", "-o", "x.png"],
        ["degrade", "a.png", "out", "--n", "4"],  # options of the other mode: errors, not ignored
        ["degrade", "a.png", "out", "--no-open"],
        ["degrade", "--show", "--crop", "64"],
        ["degrade", "--show", "--per-image", "3"],
        ["degrade", "--show", "-r"],
        ["degrade", "--print-config", "a.png", "out"],
        ["degrade", "--print-config", "--show"],
    ],
)
def test_usage_errors_exit_2(esr, args):
    rc, _, err = esr(*args)
    assert rc == 2, err


def test_missing_input_is_an_error(esr, tmp_path):
    rc, _, err = esr("degrade", tmp_path / "nope", tmp_path / "out")
    assert rc == 1 and "nope" in err


def test_recursive_folders_get_distinct_names(esr, hr_dir, tmp_path):
    sub = hr_dir / "sub"
    sub.mkdir()
    (sub / "a.png").write_bytes((hr_dir / "a.png").read_bytes())
    out = tmp_path / "out"
    assert esr("degrade", hr_dir, out, "--crop", "32")[0] == 0
    assert not (out / "lq" / "sub__a.png").exists()  # not recursive: sub-folder ignored
    out2 = tmp_path / "out2"
    rc, _, err = esr("degrade", hr_dir, out2, "--crop", "32", "--recursive")
    assert rc == 0, err
    names = sorted(p.name for p in (out2 / "lq").iterdir())
    assert names == ["a.png", "b_gray.png", "c16.png", "sub__a.png"]
    # each image's randomness depends on its name, not on the other files
    assert (out / "lq" / "a.png").read_bytes() == (out2 / "lq" / "a.png").read_bytes()


def test_outputs_never_become_inputs(esr, hr_dir, tmp_path):
    # the input folder is OUT/lq: its HR images would be overwritten by their own LQ
    out = tmp_path / "w"
    (out / "lq").mkdir(parents=True)
    cv2.imwrite(str(out / "lq" / "a.png"), cv2.imread(str(hr_dir / "a.png")))
    before = (out / "lq" / "a.png").read_bytes()
    rc, _, err = esr("degrade", out / "lq", out)
    assert rc == 2 and "the outputs go to" in err and "pick another output folder" in err
    assert (out / "lq" / "a.png").read_bytes() == before
    # OUT inside the input folder with -r: a second run leaves the first run's outputs out
    x = tmp_path / "x"
    x.mkdir()
    cv2.imwrite(str(x / "a.png"), cv2.imread(str(hr_dir / "a.png")))
    assert esr("degrade", x, x, "-r")[0] == 0
    rc, _, err = esr("degrade", x, x, "-r")
    assert rc == 0 and "1 files in" in err and "left out of the inputs" in err
    assert sorted(p.name for p in (x / "lq").iterdir()) == ["a.png"]
    assert len((x / "params.jsonl").read_text().splitlines()) == 1


def test_params_log_matches_the_images_after_a_partial_rerun(esr, hr_dir, tmp_path):
    from esrcli.data.imageio import to_tensor
    from esrcli.degrade import degrade_with_params

    out = tmp_path / "out"
    assert esr("degrade", hr_dir, out, "--seed", "0")[0] == 0
    first = {e["lq"]: e for e in map(json.loads, (out / "params.jsonl").read_text().splitlines())}
    # a rerun with another seed on one file: its line is replaced, the others stay
    assert esr("degrade", hr_dir / "a.png", out, "--seed", "1")[0] == 0
    lines = [json.loads(x) for x in (out / "params.jsonl").read_text().splitlines()]
    assert sorted(e["lq"] for e in lines) == sorted(first)
    by_lq = {e["lq"]: e for e in lines}
    assert by_lq["lq/b_gray.png"] == first["lq/b_gray.png"]
    assert by_lq["lq/a.png"]["seed"] != first["lq/a.png"]["seed"]
    for entry in lines:  # every line rebuilds the image that is there now
        img = read_image(entry["source"])
        gt = to_tensor(np.repeat(img.color, 3, axis=2) if img.is_gray else img.color)
        h, w = entry["gt_size"]
        lq = degrade_with_params(gt[:, :, :h, :w], [entry])
        written = read_image(out / entry["lq"]).color
        assert np.abs(np.rint(lq[0].permute(1, 2, 0).numpy() * 255) - np.rint(written * 255)).max() <= 1
    # nothing written at all: no log is promised
    rc, stdout, _ = esr("degrade", tmp_path / "nothing.png", tmp_path / "o2")
    assert rc != 0 and not (tmp_path / "o2" / "params.jsonl").exists()


def test_seed_of_a_file_does_not_depend_on_other_files(esr, hr_dir, tmp_path):
    col = tmp_path / "col"
    col.mkdir()
    cv2.imwrite(str(col / "x.png"), cv2.imread(str(hr_dir / "a.png")))
    cv2.imwrite(str(col / "x.bmp"), cv2.imread(str(hr_dir / "a.png")))
    assert esr("degrade", col / "x.png", tmp_path / "c1")[0] == 0
    assert esr("degrade", col / "x.bmp", col / "x.png", tmp_path / "c2")[0] == 0  # x.png is named x-2 there
    assert (tmp_path / "c1" / "lq" / "x.png").read_bytes() == (tmp_path / "c2" / "lq" / "x-2.png").read_bytes()
    # a file named twice is degraded once
    rc, stdout, _ = esr("degrade", col / "x.png", col / "x.png", tmp_path / "c3")
    assert rc == 0 and sorted(p.name for p in (tmp_path / "c3" / "lq").iterdir()) == ["x.png"]


def test_misspelt_table_and_blocked_output_are_one_line_errors(esr, hr_dir, tmp_path):
    f = tmp_path / "typo.toml"
    f.write_text("[degrad.first]\nnoise_range = [1.0, 2.0]\n")
    rc, _, err = esr("degrade", "--print-config", "-c", f)
    assert rc == 1 and "no [degrade] table (tables found: [degrad])" in err
    (tmp_path / "o1").mkdir()
    (tmp_path / "o1" / "lq").write_text("")
    rc, _, err = esr("degrade", hr_dir / "a.png", tmp_path / "o1")
    assert rc == 1 and "o1/lq: exists and is not a folder" in err and "Traceback" not in err and "internal error" not in err
