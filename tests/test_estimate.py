"""esrcli.estimate and ``esr estimate`` / ``esr train-estimator``."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from esrcli.errors import ConfigError, ImageError
from esrcli.estimate import DegradationEstimate, estimate
from esrcli.estimate.classical import immerkaer_per_channel, jpeg_file_quality
from esrcli.estimate.core import _load_net, block_phase
from esrcli.estimate.strength import recommend_denoise
from esrcli.ops.jpeg import jpeg_roundtrip_uint8


def _scene(h: int = 256, w: int = 320, seed: int = 0) -> np.ndarray:
    """A synthetic photo-like RGB uint8 image: smooth shading, edges and some texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([80 + 60 * np.sin(xx / 37.0), 100 + 50 * np.cos(yy / 29.0), 120 + 0.2 * (xx - yy)], axis=2)
    for _ in range(12):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(8, 40)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        img[mask] = rng.uniform(30, 220, 3)
    tex = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 1.5) * 20
    img[: h // 3] += tex[: h // 3, :, None]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _photo(shared: Path) -> np.ndarray:
    bgr = cv2.imread(str(shared / "data" / "val" / "set14" / "zebra.png"))
    return np.ascontiguousarray(bgr[:, :, ::-1])


def test_embedded_estimator_is_packaged() -> None:
    net = _load_net()
    assert net is not None, "esr-estimator.safetensors is missing from src/esrcli/models"
    assert sum(p.numel() for p in net.parameters()) < 500_000


def test_immerkaer_measures_pure_noise_on_a_flat_image() -> None:
    rng = np.random.default_rng(1)
    flat = np.full((200, 200, 3), 128.0, np.float32) + rng.standard_normal((200, 200, 3)).astype(np.float32) * 7.0
    sig = immerkaer_per_channel(flat)
    assert len(sig) == 3
    assert all(abs(s - 7.0) < 0.4 for s in sig), sig


@pytest.mark.parametrize("quality", [23, 57, 90])
def test_jpeg_file_quality_is_exact_for_opencv_and_pillow(tmp_path: Path, quality: int) -> None:
    img = _scene()
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    cv2.imwrite(str(a), img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    Image.fromarray(img).save(b, quality=quality)
    assert jpeg_file_quality(a) == quality
    assert jpeg_file_quality(b) == quality
    assert estimate(a).jpeg_quality == quality
    png = tmp_path / "c.png"
    cv2.imwrite(str(png), img[:, :, ::-1])
    assert jpeg_file_quality(png) is None


def test_block_phase_finds_the_grid_of_a_cropped_jpeg() -> None:
    dec = jpeg_roundtrip_uint8(_scene(), 40)[:, :, 1]  # the plane estimate() reads
    assert block_phase(dec) == (0, 0)
    assert block_phase(dec[3:, 5:]) == (5, 3)
    assert block_phase(dec[7:, 1:]) == (1, 7)
    assert block_phase(dec[7:, 1:].astype(np.float32) / 255) == (1, 7)  # float [0, 1] samples
    clean = _scene()[:, :, 1]
    assert block_phase(clean[3:, 5:]) == (0, 0)


def test_a_flat_image_has_no_jpeg_quality_or_blur() -> None:
    est = estimate(np.full((200, 200, 3), 120, np.uint8))
    assert est.jpeg_quality is None and est.blur_sigma == 0.0 and est.denoise == 0.0


def test_block_phase_at_high_quality_and_odd_offsets() -> None:
    # a fine quality (95) leaves no visible block edges; the grid is still in the coefficients
    scene = _scene(h=264, w=264, seed=3)
    for quality, (dy, dx) in ((95, (1, 1)), (85, (4, 4)), (70, (7, 2)), (30, (3, 6))):
        dec = jpeg_roundtrip_uint8(scene, quality)[:, :, 1]
        assert block_phase(dec[dy:, dx:]) == ((8 - dy) % 8, (8 - dx) % 8), quality
    # 16-bit samples of the same decoded image give the same answer
    dec16 = jpeg_roundtrip_uint8(scene, 50)[:, :, 1].astype(np.uint16) * 257
    assert block_phase(dec16[5:, 2:]) == (3, 6)
    # an image resized after compression has no grid left
    dec = jpeg_roundtrip_uint8(scene, 40)
    resized = cv2.resize(dec, (199, 199), interpolation=cv2.INTER_AREA)[:, :, 1]
    assert block_phase(resized) == (0, 0)


def test_estimate_follows_added_noise_and_blur(shared: Path) -> None:
    img = _photo(shared)
    rng = np.random.default_rng(0)
    levels = []
    for s in (0.0, 5.0, 12.0):
        noisy = np.clip(np.rint(img + rng.standard_normal(img.shape) * s), 0, 255).astype(np.uint8)
        est = estimate(noisy)
        assert len(est.noise_sigma) == 3
        levels.append(est.noise_sigma_mean)
    assert abs(levels[1] - 5.0) < 1.5 and abs(levels[2] - 12.0) < 2.0, levels
    assert levels[0] < 2.0, levels
    blurs = [estimate(np.clip(np.rint(cv2.GaussianBlur(img.astype(np.float32), (0, 0), s)), 0, 255).astype(np.uint8)).blur_sigma
             for s in (0.5, 1.2, 2.2)]
    assert blurs[0] < blurs[1] < blurs[2], blurs


def test_estimate_reads_the_quality_of_a_decoded_jpeg(shared: Path) -> None:
    img = _photo(shared)
    low, high = estimate(jpeg_roundtrip_uint8(img, 30)), estimate(jpeg_roundtrip_uint8(img, 85))
    assert low.jpeg_quality is not None and abs(low.jpeg_quality - 30) <= 10, low
    assert high.jpeg_quality is not None and abs(high.jpeg_quality - 85) <= 10, high
    # a very heavily compressed photo needs more denoising than a clean one
    assert estimate(jpeg_roundtrip_uint8(img, 12)).denoise > estimate(img).denoise


def test_gray_and_16_bit_inputs() -> None:
    rng = np.random.default_rng(3)
    gray = np.clip(np.rint(_scene()[:, :, 1] + rng.standard_normal((256, 320)) * 8), 0, 255).astype(np.uint8)
    est = estimate(gray)
    assert isinstance(est, DegradationEstimate)
    assert len(est.noise_sigma) == 1
    est16 = estimate(gray.astype(np.uint16) * 257)
    assert est16.noise_sigma == pytest.approx(est.noise_sigma, abs=0.3)
    rgba = np.dstack([_scene(), np.full((256, 320), 255, np.uint8)])
    assert len(estimate(rgba).noise_sigma) == 3
    assert 0.0 <= est.denoise <= 1.0


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"<array>: too small to estimate \(40x30"):
        estimate(np.zeros((30, 40, 3), np.uint8))
    with pytest.raises(ImageError, match="float16"):
        estimate(np.zeros((100, 100, 3), np.float16))
    assert estimate(np.zeros((100, 100, 3), np.float64)).jpeg_quality is None  # float64 in [0, 1], as Upscaler takes it
    eight_bit = (np.random.default_rng(0).random((100, 100, 3)) * 255).astype(np.float32)
    with pytest.raises(ImageError, match=r"float samples must lie in \[0, 1\], got .* \(8-bit values\? divide by 255\)"):
        estimate(eight_bit)  # would be misread as a clean image, not clipped
    with pytest.raises(ImageError, match="NaN or infinite"):
        estimate(np.full((100, 100, 3), np.nan, np.float32))
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ImageError, match="broken.png"):
        estimate(bad)


def test_recommend_denoise_grows_with_noise_and_compression() -> None:
    # calibrated (docs/denoise.md): 0 up to sigma 20 / quality 25, then rising
    assert recommend_denoise(0.0, None, 0.0) == recommend_denoise(15.0, None, 0.0) == 0.0
    assert recommend_denoise(20.0, None, 0.0) < recommend_denoise(30.0, None, 0.0) < recommend_denoise(40.0, None, 0.0)
    assert recommend_denoise(0.0, 20, 0.0) > recommend_denoise(0.0, 90, 0.0)
    assert recommend_denoise(30.0, 20, 0.0) >= recommend_denoise(30.0, None, 0.0)
    assert all(0.0 <= recommend_denoise(n, q, 0.0) <= 1.0 for n in (0, 3, 50, 200) for q in (None, 1, 5, 95))


def test_cli_json_csv_and_a_bad_file_in_the_batch(tmp_path: Path, esr) -> None:
    img = _scene()
    cv2.imwrite(str(tmp_path / "a.png"), img[:, :, ::-1])
    cv2.imwrite(str(tmp_path / "b.jpg"), img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 61])
    (tmp_path / "c.png").write_bytes(b"garbage")
    rc, out, err = esr("estimate", tmp_path, "--json")
    assert rc == 1
    recs = json.loads(out)
    assert [Path(r["path"]).name for r in recs] == ["a.png", "b.jpg"]
    assert set(recs[0]) == {"path", "noise_sigma", "jpeg_quality", "blur_sigma", "denoise"}
    assert recs[1]["jpeg_quality"] == 61
    assert "c.png" in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if "c.png" in line]) == 1
    rc, out, _ = esr("estimate", tmp_path / "b.jpg", "--csv")
    assert rc == 0
    header, row = out.strip().splitlines()
    assert header.startswith("path,noise_sigma,noise_sigma_r") and ",61," in row
    rc, _, err = esr("estimate", tmp_path / "a.png", "--json", "--csv")
    assert rc == 2


def test_train_estimator_runs_resumes_and_exports(tmp_path: Path, esr) -> None:
    data = tmp_path / "hr"
    data.mkdir()
    for i in range(3):
        cv2.imwrite(str(data / f"img{i}.png"), _scene(200, 200, seed=i)[:, :, ::-1])
    cfg = tmp_path / "est.toml"
    cfg.write_text(f'[train]\ndata = "hr"\niterations = 4\nbatch = 4\nwidth = 4\nlog_every = 2\ncheckpoint_every = 2\n')
    rc, out, err = esr("train-estimator", cfg, "-o", tmp_path / "run")
    assert rc == 0, err
    assert "stopped: done at iteration 4/4" in out
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["iteration"] for x in lines] == [2, 4]
    from esrcli.config import load_toml
    from esrcli.estimate.train import EstimatorTrainConfig, train_estimator

    stopped = train_estimator(load_toml(EstimatorTrainConfig, cfg), tmp_path / "stopped", stop_requested=lambda: True)
    assert (stopped.stopped, stopped.iteration, stopped.total) == ("interrupted", 1, 4) and stopped.weights.is_file()
    weights = tmp_path / "run" / "esr-estimator.safetensors"
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        assert f.metadata()["format"] == "esr-estimator"
    rc, out, err = esr("model", "info", weights)
    assert rc == 0 and "EstimatorNet" in out and "iterations: 4" in out, err
    rc, out, err = esr("estimate", "--json", "--weights", weights, data / "img0.png")
    assert rc == 0, err
    from esrcli.estimate import estimate

    got = json.loads(out)[0]["noise_sigma"]
    assert got == pytest.approx(estimate(data / "img0.png", weights=weights).noise_sigma, abs=0.006)
    assert got != pytest.approx(estimate(data / "img0.png").noise_sigma, abs=0.006)  # not the embedded net
    rc, _, err = esr("estimate", "--weights", cfg, data / "img0.png")
    assert rc == 1 and "est.toml: cannot read the estimator weights" in err
    # more iterations: resumes at 4 and appends
    cfg.write_text(cfg.read_text().replace("iterations = 4", "iterations = 6"))
    rc, _, err = esr("train-estimator", cfg, "-o", tmp_path / "run")
    assert rc == 0, err
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [2, 4, 6]
    # the cosine schedule is the config's (6 iterations), continued, not restarted: it ends at its
    # floor (1 % of lr), where the checkpoint's 4-iteration schedule would have climbed back to
    # half the peak
    assert rows[-1]["lr"] == pytest.approx(2e-5, rel=1e-6)
    # lines written after the last checkpoint (a killed run) are not kept twice
    with open(tmp_path / "run" / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"iteration": 7}) + "\n" + '{"iteration": 8')  # a torn last line
    cfg.write_text(cfg.read_text().replace("iterations = 6", "iterations = 8"))
    assert esr("train-estimator", cfg, "-o", tmp_path / "run")[0] == 0
    its = [json.loads(x)["iteration"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert its == [2, 4, 6, 8]
    # --no-resume refuses a folder with a checkpoint; a corrupt training file is skipped with a warning
    rc, _, err = esr("train-estimator", cfg, "-o", tmp_path / "run", "--no-resume")
    assert rc == 1 and "--no-resume was given" in err
    (data / "broken.png").write_bytes(b"not an image")
    rc, _, err = esr("train-estimator", cfg, "-o", tmp_path / "run2")
    assert rc == 0 and "1 training file(s) skipped" in err and "broken.png" in err


def test_train_estimator_config_errors_name_the_key(tmp_path: Path, esr) -> None:
    cfg = tmp_path / "est.toml"
    cfg.write_text("[sampler]\np_noise = 1.5\n")
    from esrcli.config import load_toml
    from esrcli.estimate.train import EstimatorTrainConfig

    with pytest.raises(ConfigError, match=r": sampler\.p_noise: must be in \[0, 1\]"):
        load_toml(EstimatorTrainConfig, cfg)
    cfg.write_text("[train]\nbatch = 0\n")
    with pytest.raises(ConfigError, match=r": train\.batch: must be >= 1"):  # the table named once
        load_toml(EstimatorTrainConfig, cfg)
    cfg.write_text("[train]\niterationz = 3\n")
    rc, _, err = esr("train-estimator", cfg)
    assert rc == 1 and "iterationz" in err
    cfg.write_text("[train]\niterations = 3\n")
    rc, _, err = esr("train-estimator", cfg, "-o", tmp_path / "r")
    assert rc == 1 and "train.data" in err


def test_a_float_image_file_is_clipped_as_esr_reads_it(tmp_path: Path) -> None:
    """Float TIFFs may overshoot [0, 1]: a file is clipped (as esr upscale reads it); only an
    array passed in is held to [0, 1], where 0-255 floats would be a caller's mistake."""
    from PIL import Image as PILImage

    a = np.random.default_rng(0).random((96, 96)).astype(np.float32) * 1.5
    PILImage.fromarray(a, "F").save(tmp_path / "f.tif")
    est = estimate(tmp_path / "f.tif")
    assert len(est.noise_sigma) == 1 and est.noise_sigma[0] > 5
    with pytest.raises(ImageError, match="float samples must lie in"):
        estimate(a)
