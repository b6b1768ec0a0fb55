"""DegradeConfig: Real-ESRGAN defaults, validation naming keys, TOML round trip."""

from __future__ import annotations

import math
import tomllib

import pytest

from esrcli.config import from_dict, load_toml, to_toml
from esrcli.config.degrade import DegradeConfig
from esrcli.errors import ConfigError


def test_defaults_are_real_esrgan_x4plus():
    cfg = DegradeConfig()
    assert (cfg.scale, cfg.gt_size, cfg.usm_radius, cfg.usm_weight, cfg.usm_threshold) == (4, 256, 50, 0.5, 10.0)
    f, s, fin = cfg.first, cfg.second, cfg.final
    assert f.kernel_list == ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
    assert f.kernel_prob == (0.45, 0.25, 0.12, 0.03, 0.12, 0.03) == s.kernel_prob
    assert f.kernel_range == (7, 9, 11, 13, 15, 17, 19, 21)
    assert (f.sinc_prob, s.sinc_prob, fin.sinc_prob) == (0.1, 0.1, 0.8)
    assert (f.blur_sigma, s.blur_sigma) == ((0.2, 3.0), (0.2, 1.5))
    assert f.betag_range == (0.5, 4.0) and f.betap_range == (1.0, 2.0)
    assert (f.resize_prob, s.resize_prob) == ((0.2, 0.7, 0.1), (0.3, 0.4, 0.3))
    assert (f.resize_range, s.resize_range) == ((0.15, 1.5), (0.3, 1.2))
    assert (f.noise_range, s.noise_range) == ((1.0, 30.0), (1.0, 25.0))
    assert (f.poisson_scale_range, s.poisson_scale_range) == ((0.05, 3.0), (0.05, 2.5))
    assert f.gaussian_noise_prob == s.gaussian_noise_prob == 0.5
    assert f.gray_noise_prob == s.gray_noise_prob == 0.4
    assert f.jpeg_range == s.jpeg_range == (30.0, 95.0)
    assert (f.blur_prob, s.blur_prob) == (1.0, 0.8)
    assert fin.sinc_omega_range == (math.pi / 3, math.pi) and fin.sinc_first_prob == 0.5


def test_partial_second_table_keeps_second_stage_defaults():
    cfg = from_dict(DegradeConfig, {"second": {"noise_range": [2, 20]}}, path="degrade")
    assert cfg.second.noise_range == (2.0, 20.0)
    assert cfg.second.blur_sigma == (0.2, 1.5) and cfg.second.blur_prob == 0.8


@pytest.mark.parametrize(
    "data, message",
    [
        ({"first": {"blur_sigma": [-1, 2]}}, "degrade.first.blur_sigma: "),
        ({"first": {"kernel_prob": [0.5, 0.25, 0.12, 0.03, 0.12, 0.03]}}, "degrade.first.kernel_prob: probabilities must sum to 1"),
        ({"second": {"kernel_prob": [0.5, 0.5]}}, "degrade.second.kernel_prob: expected 6 probabilities"),
        ({"first": {"kernel_range": [7, 8]}}, "degrade.first.kernel_range: kernel sizes must be odd"),
        ({"first": {"kernel_range": [23]}}, "degrade.first.kernel_range: "),
        ({"second": {"resize_prob": [0.5, 0.5, 0.5]}}, "degrade.second.resize_prob: probabilities must sum to 1"),
        ({"second": {"blur_prob": 1.5}}, "degrade.second.blur_prob: probability must be in [0, 1]"),
        ({"first": {"jpeg_range": [30, 120]}}, "degrade.first.jpeg_range: "),
        ({"first": {"noise_range": [10, 5]}}, "degrade.first.noise_range: lower bound"),
        ({"first": {"resize_range": [1.2, 1.5]}}, "degrade.first.resize_range: must contain 1"),
        ({"first": {"kernel_list": ["iso", "box"]}}, "degrade.first.kernel_list[1]: 'box' is not one of"),
        ({"final": {"sinc_omega_range": [0.5, 4.0]}}, "degrade.final.sinc_omega_range: "),
        ({"final": {"kernel_range": [6]}}, "degrade.final.kernel_range: "),
        ({"final": {"sinc_first_prob": -0.1}}, "degrade.final.sinc_first_prob: "),
        ({"scale": 0}, "degrade.scale: "),
        ({"gt_size": 250}, "degrade.gt_size: must be a positive multiple of scale"),
        ({"usm_weight": -1}, "degrade.usm_weight: "),
        ({"first": {"bogus": 1}}, "degrade.first.bogus: unknown key"),
    ],
)
def test_config_errors_name_the_key(data, message):
    with pytest.raises(ConfigError) as exc:
        from_dict(DegradeConfig, data, path="degrade")
    assert str(exc.value).startswith(message), str(exc.value)


def test_toml_round_trip(tmp_path):
    cfg = from_dict(DegradeConfig, {"scale": 2, "gt_size": 128, "first": {"noise_range": [1, 10]}, "final": {"sinc_prob": 0.3}})
    text = to_toml(cfg, table="degrade")
    assert "[degrade.first]" in text and "[degrade.second]" in text and "[degrade.final]" in text
    assert from_dict(DegradeConfig, tomllib.loads(text)["degrade"]) == cfg
    f = tmp_path / "c.toml"
    f.write_text(text + "\n[other]\nx = 1\n")
    assert load_toml(DegradeConfig, f, table="degrade") == cfg
    assert load_toml(DegradeConfig, f, table="degrade").second == DegradeConfig().second
