"""`esr niqe` and `esr eval`: tables, JSON/CSV, bad files, pairing by name."""

from __future__ import annotations

import csv
import io
import json
import math

import cv2
import numpy as np
import pytest


def _photo(h: int, w: int, seed: int) -> np.ndarray:
    """A textured BGR uint8 image (smoothed noise)."""
    rng = np.random.default_rng(seed)
    return np.clip(cv2.GaussianBlur(rng.random((h, w, 3)) * 255, (0, 0), 1.2), 0, 255).astype(np.uint8)


def _write(path, img) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "imgs"
    _write(d / "a.png", _photo(192, 200, 0))
    _write(d / "b.png", _photo(100, 130, 1))
    (d / "broken.png").write_bytes(b"not an image at all")
    _write(d / "tiny.png", _photo(50, 60, 2))
    return d


def test_niqe_folder_with_bad_files(esr, folder):
    rc, out, err = esr("niqe", folder)
    assert rc == 1
    assert "a.png" in out and "b.png" in out and "mean" in out
    assert "broken.png" not in out and "tiny.png" not in out
    assert "nan" not in out.lower()
    assert "broken.png" in err and "tiny.png" in err and "too small for NIQE" in err
    assert "2 image(s) scored, 2 skipped" in err


def test_niqe_json_parses_and_lists_skipped(esr, folder):
    rc, out, _ = esr("niqe", folder / "a.png", folder / "b.png", folder / "missing.png", "--json")
    assert rc == 1
    doc = json.loads(out)
    assert [r["path"].split("/")[-1] for r in doc["images"]] == ["a.png", "b.png"]
    values = [r["niqe"] for r in doc["images"]]
    assert all(isinstance(v, float) and math.isfinite(v) for v in values)
    assert doc["mean"]["niqe"] == pytest.approx(sum(values) / 2)
    assert doc["skipped"][0]["path"].endswith("missing.png")
    assert doc["convert"] == "y" and doc["crop_border"] == 0


def test_niqe_csv_and_options(esr, folder):
    rc, out, _ = esr("niqe", folder / "a.png", "--csv", "--convert", "gray", "--crop-border", "4")
    assert rc == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["path", "niqe"] and rows[-1][0] == "mean"
    from esrcli.metrics import niqe, read_uint8

    expected = niqe(read_uint8(folder / "a.png"), crop_border=4, convert="gray")
    assert float(rows[1][1]) == pytest.approx(expected, abs=1e-8)


def test_niqe_csv_keeps_its_mean_row_when_nothing_scored(esr, folder):
    rc, out, err = esr("niqe", folder / "broken.png", folder / "tiny.png", "--csv")
    assert rc == 1
    assert list(csv.reader(io.StringIO(out))) == [["path", "niqe"], ["mean", "-"]]
    assert "0 image(s) scored, 2 skipped" in err


def test_niqe_usage_errors(esr, folder):
    rc, _, _ = esr("niqe", folder / "a.png", "--json", "--csv")
    assert rc == 2
    rc, _, _ = esr("niqe", folder / "a.png", "--convert", "lab")
    assert rc == 2


def test_niqe_nothing_found(esr, tmp_path):
    rc, out, err = esr("niqe", tmp_path)
    assert rc == 1 and out == "" and "no images found" in err


@pytest.fixture
def pairs(tmp_path):
    gt = _photo(128, 136, 3)
    noisy = np.clip(gt.astype(np.int16) + np.random.default_rng(4).integers(-8, 9, gt.shape), 0, 255).astype(np.uint8)
    _write(tmp_path / "gt" / "same.png", gt)
    _write(tmp_path / "sr" / "same.png", gt)
    _write(tmp_path / "gt" / "noisy.bmp", gt)
    _write(tmp_path / "sr" / "noisy.png", noisy)
    _write(tmp_path / "sr" / "orphan.png", gt)
    _write(tmp_path / "gt" / "lonely.png", gt)
    _write(tmp_path / "gt" / "wrongsize.png", gt)
    _write(tmp_path / "sr" / "wrongsize.png", gt[:, :100])
    return tmp_path


def test_eval_matches_by_name_and_reports_missing(esr, pairs):
    rc, out, err = esr("eval", pairs / "sr", pairs / "gt", "--scale", "4", "--json")
    assert rc == 1
    doc = json.loads(out)
    by_name = {r["path"].split("/")[-1]: r for r in doc["images"]}
    assert set(by_name) == {"same.png", "noisy.png"}
    assert by_name["same.png"]["psnr"] == "inf" and by_name["same.png"]["psnr_y"] == "inf"
    assert by_name["same.png"]["ssim"] == pytest.approx(1.0)
    assert 20 < by_name["noisy.png"]["psnr"] < 45 and 0 < by_name["noisy.png"]["ssim_y"] < 1
    assert math.isfinite(by_name["noisy.png"]["niqe"])
    assert doc["mean"]["psnr"] == "inf"
    assert doc["scale"] == 4 and doc["crop_border"] == 4
    assert "orphan.png" in err and "lonely.png" in err
    assert "wrongsize.png" in err and "sizes differ: sr 100x128 vs gt 136x128" in err

    _write(pairs / "sr" / "same.jpg", _photo(128, 136, 3))  # two SR files for one GT: said once
    rc, out, err = esr("eval", pairs / "sr", pairs / "gt")
    assert "ambiguous name 'same'" in err and "no SR image named 'same" not in err

    (pairs / "sr" / "same.jpg").unlink()
    _write(pairs / "gt" / "noisy.png", _photo(128, 136, 3))  # two GT files for one SR
    rc, out, err = esr("eval", pairs / "sr", pairs / "gt", "--no-niqe")
    assert "ambiguous name 'noisy'" in err and "sr/noisy.png: more than one ground truth named 'noisy.*'" in err
    assert "no ground truth named 'noisy" not in err


def test_a_file_named_twice_is_scored_once(esr, folder):
    rc, out, err = esr("niqe", folder / "a.png", folder, "--csv")
    assert [line.split(",")[0].split("/")[-1] for line in out.splitlines()[1:]] == ["a.png", "b.png", "mean"]


def test_eval_two_files_table_prints_inf(esr, pairs):
    rc, out, err = esr("eval", pairs / "sr" / "same.png", pairs / "gt" / "same.png", "--no-niqe")
    assert rc == 0, err
    assert "inf" in out and "NIQE" not in out and "nan" not in out.lower()


def test_eval_csv_and_crop_border(esr, pairs):
    rc, out, _ = esr("eval", pairs / "sr" / "noisy.png", pairs / "gt" / "noisy.bmp", "--csv", "--crop-border", "0", "--no-niqe")
    assert rc == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["path", "psnr", "ssim", "psnr_y", "ssim_y"]
    from esrcli.metrics import psnr, read_uint8

    expected = psnr(read_uint8(pairs / "sr" / "noisy.png"), read_uint8(pairs / "gt" / "noisy.bmp"), 0)
    assert float(rows[1][1]) == pytest.approx(expected, abs=1e-7)


def test_eval_sr_suffix_and_gt_mod_crop(esr, tmp_path):
    gt = _photo(130, 129, 5)
    _write(tmp_path / "gt" / "bird.png", gt)
    _write(tmp_path / "sr" / "bird_out.png", gt[:128, :128])
    rc, out, err = esr("eval", tmp_path / "sr", tmp_path / "gt", "--sr-suffix", "_out", "--json", "--no-niqe")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["images"][0]["psnr"] == "inf"
    assert "cropped to a multiple of the scale" in err


def test_eval_missing_path_is_an_error(esr, tmp_path):
    rc, out, err = esr("eval", tmp_path / "nope", tmp_path)
    assert rc == 1 and "nope: no such file or folder" in err
