"""`--denoise S|auto`: interpolation with the weak-denoise partner, errors, per-image strengths."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import esrcli.estimate
from esrcli.errors import ConfigError, WeightsError
from esrcli.weights import catalogue, denoise_pair, denoise_state_dict, load_model, read_denoise_pair, read_model_info
from esrcli.weights.embedded import resolve_model

NORMAL, WDN = "esr-general-x4-net", "esr-general-x4-net-wdn"


def _weights(name: str) -> dict[str, torch.Tensor]:
    with resolve_model(name) as path:
        return {k: v.float() for k, v in read_model_info(path)[0].items()}


@pytest.fixture(scope="module")
def pair() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    return _weights(NORMAL), _weights(WDN)


def test_catalogue_pairs_are_embedded_and_of_one_architecture():
    entries = {e.name: e for e in catalogue()}
    paired = [e for e in entries.values() if e.denoise_partner]
    assert [e.name for e in paired] == [NORMAL] and entries[NORMAL].denoise_partner == WDN
    for e in paired:
        a, b = entries[e.name], entries[e.denoise_partner]
        assert (a.arch, a.scale) == (b.arch, b.scale)
    assert denoise_pair(NORMAL) == denoise_pair(WDN) == denoise_pair("ESR-General-X4-Net") == (NORMAL, WDN)
    assert entries[WDN].iterations and not entries[WDN].default
    with resolve_model(WDN) as path:
        _, info = read_model_info(path)
        assert path.stat().st_size < 3_000_000  # fp16, as small as its partner
    assert info.metadata["dtype"] == "float16" and info.metadata["base_model"] == NORMAL
    assert (info.params["num_feat"], info.params["num_conv"], info.params["act_type"]) == (64, 32, "prelu")


def test_interpolation_ends_are_the_two_models_and_the_middle_is_linear(pair):
    normal, wdn = pair
    key = "body.0.weight"
    assert not torch.allclose(normal[key], wdn[key])  # the partner is a different network
    for s in (1.0, 0.0, 0.3):
        net, info = load_model(NORMAL, denoise=s)
        got = net.state_dict()
        want = {k: s * normal[k] + (1 - s) * wdn[k] for k in normal}
        assert got.keys() == want.keys()
        for k in want:
            assert torch.allclose(got[k], want[k], atol=1e-6), (s, k)
        if s == 1.0:
            assert all(torch.equal(got[k], normal[k]) for k in normal)
        if s == 0.0:
            assert all(torch.equal(got[k], wdn[k]) for k in wdn)
        assert info.metadata["parents"] == f"{NORMAL},{WDN}" and float(info.metadata["denoise"]) == s
    sd_n, sd_w, info = read_denoise_pair(WDN)  # either end names the same pair, normal first
    assert torch.equal(sd_n[key].float(), normal[key]) and info.arch == "SRVGGNetCompact"


def test_errors_for_models_without_a_partner_and_bad_strengths(pair):
    for name in ("realesrgan-x4plus", "no/such/file.safetensors"):
        with pytest.raises(WeightsError) as exc:
            load_model(name, denoise=0.5)
        msg = str(exc.value)
        assert msg.startswith(f"{name}: --denoise needs a model with a weak-denoise partner")
        assert "pass --model esr-general-x4-net" in msg and "\n" not in msg
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ConfigError, match=r"^denoise: strength must be in \[0, 1\]"):
            load_model(NORMAL, denoise=bad)
        with pytest.raises(ConfigError, match=r"^denoise: strength must be in \[0, 1\]"):
            denoise_state_dict(*pair, bad)
    with pytest.raises(ConfigError, match="sharpness and denoise"):
        load_model(NORMAL, denoise=0.5, sharpness=0.5)


def _image(seed: int, noisy: bool) -> np.ndarray:
    """A smooth 24x28 RGB image, with strong noise or without."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:24, 0:28]
    base = np.stack([120 + 60 * np.sin(xx / 5.0), 100 + 50 * np.cos(yy / 4.0), 140 + 0 * xx], axis=2)
    if noisy:
        base = base + rng.normal(0, 25, base.shape)
    return np.clip(base, 0, 255).astype(np.uint8)


def _noise_strength(color: np.ndarray) -> float:
    """A stand-in estimator: strength from the high-pass energy (noisy -> 1, smooth -> about 0)."""
    hp = color[1:, :, :] - color[:-1, :, :]
    return float(np.std(hp) * 255 / 20)


def test_auto_calls_the_callback_per_image_and_uses_cached_blends(tmp_path):
    from esrcli.infer import BatchOptions, DenoiseChosen, UpscaleOptions, Written, collect_inputs, load_upscale_model, run_batch
    from esrcli.infer.model import ModelSpec, round_strength

    d = tmp_path / "in"
    d.mkdir()
    images = {"a_smooth.png": _image(0, False), "b_noisy.png": _image(1, True), "c_smooth.png": _image(2, False)}
    for n, a in images.items():
        cv2.imwrite(str(d / n), cv2.cvtColor(a, cv2.COLOR_RGB2BGR))
    calls: list[tuple[int, ...]] = []

    def strength(color: np.ndarray) -> float:
        assert color.dtype == np.float32 and color.max() <= 1.0
        calls.append(color.shape)
        return _noise_strength(color)

    model = load_upscale_model(ModelSpec(NORMAL, "cpu", "fp32"))
    items = collect_inputs([d], tmp_path / "out", None)
    options = BatchOptions(upscale=UpscaleOptions(tile=0), jobs=1, denoise=strength)
    events = list(run_batch(items, model, options))
    chosen = {e.src.name: e.strength for e in events if isinstance(e, DenoiseChosen)}
    assert len(calls) == 3 and sorted(chosen) == sorted(images)
    assert chosen["b_noisy.png"] == 1.0 and chosen["a_smooth.png"] < 0.5  # different images, different strengths
    assert all(abs(v / 0.05 - round(v / 0.05)) < 1e-9 for v in chosen.values())  # rounded to the cache step
    assert len([e for e in events if isinstance(e, Written)]) == 3
    # Each output equals a fixed-strength run at the chosen strength.
    for name, s in chosen.items():
        fixed = load_upscale_model(ModelSpec(NORMAL, "cpu", "fp32", denoise=s))
        x = torch.from_numpy(images[name].astype(np.float32) / 255).permute(2, 0, 1)[None]
        a, b = fixed.net(x), model.net_for(8, denoise=s)(x)
        assert torch.allclose(a, b, atol=1e-5)
    assert len(model._blends) == len(set(chosen.values()))  # one blend per distinct strength, reused
    assert round_strength(0.26) == 0.25 and round_strength(-3) == 0.0 and round_strength(7) == 1.0
    with pytest.raises(ConfigError):
        round_strength(float("nan"))


def test_upscaler_denoise(monkeypatch):
    from esrcli import Upscaler

    img = _image(3, True)
    fixed = Upscaler(NORMAL, precision="fp32", denoise=0.35).upscale(img)
    seen = []
    up = Upscaler(NORMAL, precision="fp32", denoise=lambda c: seen.append(c.shape) or 0.34)
    assert np.array_equal(up.upscale(img), fixed) and seen == [(24, 28, 3)]  # 0.34 rounds to 0.35
    assert up.denoise_strength(img) == pytest.approx(0.35)
    assert not np.array_equal(Upscaler(NORMAL, precision="fp32").upscale(img), fixed)
    with pytest.raises(ConfigError, match=r"denoise: must be in \[0, 1\]"):
        Upscaler(NORMAL, denoise=2)
    with pytest.raises(ConfigError, match="'auto' or a callable"):
        Upscaler(NORMAL, denoise="strong")
    with pytest.raises(WeightsError, match="pass --model esr-general-x4-net"):
        Upscaler("realesrgan-x4plus", denoise=0.5)
    # auto: esrcli.estimate.estimate(img).denoise, once per image
    class Estimate:
        def __init__(self, denoise: float) -> None:
            self.denoise = denoise

    got = []
    monkeypatch.setattr(esrcli.estimate, "estimate", lambda a: got.append(a.shape) or Estimate(0.35), raising=False)
    auto = Upscaler(NORMAL, precision="fp32", denoise="auto")
    big = cv2.resize(img, (80, 72))
    assert np.array_equal(auto.upscale(big), Upscaler(NORMAL, precision="fp32", denoise=0.35).upscale(big))
    assert got == [(72, 80, 3)]
    assert auto.denoise_strength(img) == 0.0 and len(got) == 1  # under the estimator's 64 px: a clean image's strength


def test_cli_denoise(esr, tmp_path, monkeypatch):
    d = tmp_path / "in"
    d.mkdir()
    cv2.imwrite(str(d / "a.png"), cv2.resize(_image(4, False), (72, 66)))
    cv2.imwrite(str(d / "b.png"), cv2.resize(_image(5, True), (72, 66), interpolation=cv2.INTER_NEAREST))
    for bad, why in (("1.5", "must be between 0 and 1 (or auto), got 1.5"), ("strong", "expected a number between 0 and 1 or auto, got 'strong'"),
                     ("nan", "must be between 0 and 1")):
        rc, _, err = esr("upscale", d, tmp_path / "o", "--model", NORMAL, "--denoise", bad)
        lines = [ln for ln in err.splitlines() if "--denoise" in ln]
        assert rc == 2 and len(lines) == 1 and why in lines[0], err
    rc, _, err = esr("upscale", d, tmp_path / "o", "--denoise", "0.5")  # the default model has no partner
    assert rc == 1 and err == "esr: error: realesrgan-x4plus: --denoise needs a model with a weak-denoise partner (pass --model esr-general-x4-net)\n"
    rc, _, err = esr("upscale", d, tmp_path / "o", "--model", NORMAL, "--denoise", "0.5", "--sharpness", "0.5")
    assert rc == 2 and "not both" in err
    rc, out, err = esr("upscale", d, tmp_path / "o1", "--model", NORMAL, "--denoise", "0.25", "--precision", "fp32")
    assert rc == 0 and "at denoise 0.25" in err and len(out.split()) == 2
    # the weak end names the same pair, and the line says which blend runs
    rc, out, err = esr("upscale", d, tmp_path / "o3", "--model", WDN, "--denoise", "0.25", "--precision", "fp32")
    assert rc == 0 and f"model {NORMAL} at denoise 0.25" in err, err
    for f in (tmp_path / "o1").iterdir():
        assert (tmp_path / "o3" / f.name).read_bytes() == f.read_bytes()

    class Estimate:
        def __init__(self, denoise: float) -> None:
            self.denoise = denoise

    monkeypatch.setattr(esrcli.estimate, "estimate", lambda a: Estimate(_noise_strength(a / 255.0 if a.dtype == np.uint8 else a)), raising=False)
    rc, out, err = esr("--verbose", "upscale", d, tmp_path / "o2", "--model", NORMAL, "--denoise", "auto", "--precision", "fp32")
    assert rc == 0 and "at denoise auto (per image)" in err, err
    chose = [ln for ln in err.splitlines() if "denoise auto chose" in ln]
    assert len(chose) == 2
    values = {Path(ln.split(":")[1].strip()).name: float(ln.rsplit(" ", 1)[1]) for ln in chose}
    assert values["b.png"] == 1.0 and values["a.png"] < values["b.png"]
    rc, _, err = esr("upscale", d, tmp_path / "o4", "--denoise", "auto")
    assert rc == 1 and err.count("\n") == 1 and "pass --model esr-general-x4-net" in err


def test_recommend_denoise_is_calibrated_monotone_and_bounded():
    from esrcli.estimate.strength import recommend_denoise as rec

    sigmas = [0, 2, 5, 10, 16, 20, 30, 46, 80]
    qualities = [10, 15, 20, 25, 30, 50, 90]
    by_sigma = [rec(s, None, 0.0) for s in sigmas]
    by_quality = [rec(0.0, q, 0.0) for q in qualities]
    assert by_sigma == sorted(by_sigma) and by_quality == sorted(by_quality, reverse=True)
    assert by_sigma[:5] == [0.0] * 5 and by_sigma[-2:] == [1.0, 1.0]  # measured: S = 0 best up to sigma ~16
    assert rec(20, None, 0) < rec(30, None, 0) < rec(40, None, 0) < 1.0
    assert by_quality[:2] == [1.0, 1.0] and by_quality[-3:] == [0.0] * 3 and 0 < rec(0, 20, 0) < 1
    assert rec(30, 20, 0.0) > max(rec(30, None, 0.0), rec(0, 20, 0.0))  # noise and compression add up
    assert all(0.0 <= rec(n, q, b) <= 1.0 for n in (0, 3, 50, 1e6) for q in (None, 1, 95) for b in (0.0, 3.0))
