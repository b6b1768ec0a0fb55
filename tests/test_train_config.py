"""Training config: typed TOML tables, errors naming their path, print-config round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from esrcli.config import from_dict, load_toml, to_toml
from esrcli.config.train import TrainGanConfig, TrainNetConfig
from esrcli.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "data, message",
    [
        ({"train": {"lrr": 1}}, "train.lrr: unknown key"),
        ({"train": {"batch_size": 2.5}}, "train.batch_size: expected an integer"),
        ({"train": {"betas": [0.9]}}, "train.betas: expected 2 values"),
        ({"train": {"precision": "fp8"}}, "train.precision: 'fp8' is not one of"),
        ({"train": {"pool_size": -1}}, "train.pool_size: must be >= 0"),
        ({"train": {"ema_decay": 1.0}}, "train.ema_decay: must be in [0, 1)"),
        ({"model": {"arch": "EDSR"}}, "model.arch: 'EDSR' is not one of"),
        ({"model": {"upsample": "bicubic"}}, "model.upsample: 'bicubic' is not one of"),
        ({"data": {"gt_size": 64, "crop_size": 32}}, "data.crop_size: must be >= gt_size"),
        ({"data": {"gt_size": 66}}, "data.gt_size: must be a multiple of model.scale"),
        ({"degrade": {"first": {"blur_sigma": [3, 1]}}}, "degrade.first.blur_sigma"),
        ({"degrade": {"scale": 2}}, "degrade.scale: must equal model.scale (4)"),
        ({"val": {"metrics": ["lpips"]}}, "val.metrics[0]: 'lpips' is not one of"),
    ],
)
def test_errors_name_the_path(data, message):
    with pytest.raises(ConfigError) as exc:
        from_dict(TrainNetConfig, data)
    assert message in str(exc.value)


def test_bilinear_residual_reaches_the_generator():
    from esrcli.archs import build_generator

    cfg = from_dict(TrainNetConfig, {"model": {"arch": "SRVGGNetCompact", "upsample": "bilinear"}})
    params = cfg.model.generator_params()
    assert params["upsample"] == "bilinear" and build_generator("SRVGGNetCompact", params).upsample == "bilinear"
    assert "upsample" not in from_dict(TrainNetConfig, {"model": {"arch": "SRVGGNetCompact"}}).model.generator_params()


def test_gan_only_tables():
    with pytest.raises(ConfigError, match="net_d: unknown key"):
        from_dict(TrainNetConfig, {"net_d": {}})
    with pytest.raises(ConfigError, match="net_d.type: 'vgg' needs data.gt_size 128 or 256"):
        from_dict(TrainGanConfig, {"net_d": {"type": "vgg"}, "data": {"gt_size": 64}})
    with pytest.raises(ConfigError, match="loss.perceptual_layer_weights"):
        from_dict(TrainGanConfig, {"loss": {"perceptual_layers": ["conv1_2"]}})


def test_stage_defaults_follow_real_esrgan():
    net, gan = TrainNetConfig(), TrainGanConfig()
    assert (net.train.lr, net.train.betas, net.train.ema_decay, net.train.pool_size) == (2e-4, (0.9, 0.99), 0.999, 180)
    assert (gan.train.lr, gan.net_d.lr, gan.net_d.type, gan.net_d.num_feat) == (1e-4, 1e-4, "unet", 64)
    assert (gan.loss.pixel_weight, gan.loss.perceptual_weight, gan.loss.gan_weight) == (1.0, 1.0, 0.1)
    assert gan.loss.perceptual_layer_weights == (0.1, 0.1, 1.0, 1.0, 1.0)
    assert net.data.gt_size == 256 and net.train.gt_usm
    # A partial [train] table keeps the stage's defaults.
    assert from_dict(TrainGanConfig, {"train": {"batch_size": 4, "pool_size": 8}}).train.lr == 1e-4


def test_degrade_follows_data_and_model():
    cfg = from_dict(TrainNetConfig, {"model": {"scale": 2}, "data": {"gt_size": 64, "crop_size": 80}})
    assert (cfg.degrade.scale, cfg.degrade.gt_size) == (2, 64)


def test_paths_resolve_relative_to_the_file(tmp_path):
    f = tmp_path / "sub" / "c.toml"
    f.parent.mkdir()
    f.write_text('[data]\nfolders = ["hr"]\n[loss]\nvgg_weights = "../vgg.pth"\n')
    cfg = load_toml(TrainGanConfig, f)
    assert cfg.data.folders == (f.parent / "hr",)
    assert cfg.loss.vgg_weights.resolve() == (tmp_path / "vgg.pth").resolve()


@pytest.mark.parametrize("stage, cls", [("train-net", TrainNetConfig), ("train-gan", TrainGanConfig)])
def test_print_config_round_trips(esr, tmp_path, stage, cls):
    rc, out, err = esr(stage, "--print-config")
    assert rc == 0, err
    f = tmp_path / "c.toml"
    f.write_text(out)
    assert load_toml(cls, f) == cls()
    assert "[degrade.first]" in out and "[train]" in out


def test_shipped_configs_load():
    files = sorted((ROOT / "configs").glob("*.toml"))
    assert files, "configs/*.toml missing"
    from esrcli.estimate.train import EstimatorTrainConfig

    for f in files:
        if "pdm" in f.name:
            from esrcli.config.pdm import PdmConfig

            cfg = load_toml(PdmConfig, f)
            assert cfg.data.hr and cfg.data.lr and to_toml(cfg)
            continue
        if "estimator" in f.name:
            cfg = load_toml(EstimatorTrainConfig, f)
            assert cfg.train.data is not None
            assert to_toml(cfg)
            continue
        cls = TrainGanConfig if "gan" in f.name else TrainNetConfig
        cfg = load_toml(cls, f)
        assert cfg.data.folders
        assert to_toml(cfg)


def test_cli_reports_config_errors(esr, tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("[train]\nbatch_size = 'four'\n")
    rc, out, err = esr("train-net", f)
    assert rc == 1
    assert "train.batch_size: expected an integer" in err and str(f) in err
    rc, _, err = esr("train-net", tmp_path / "missing.toml")
    assert rc == 1 and "config file not found" in err


def test_gan_teacher_and_feature_matching_keys():
    cfg = from_dict(TrainGanConfig, {"teacher": {"model": "realesrgan-x4plus", "weight": 0.5}, "loss": {"feature_matching_weight": 1.0}})
    assert cfg.teacher.weight == 0.5 and cfg.teacher.precision == "auto" and cfg.loss.feature_matching_weight == 1.0
    assert TrainGanConfig().teacher.model is None and TrainGanConfig().loss.feature_matching_weight == 0.0
    with pytest.raises(ConfigError, match=r"^teacher.weight: must be >= 0"):
        from_dict(TrainGanConfig, {"teacher": {"weight": -1}})
    with pytest.raises(ConfigError, match=r"^teacher.precision: 'int8' is not one of"):
        from_dict(TrainGanConfig, {"teacher": {"precision": "int8"}})
    with pytest.raises(ConfigError, match=r"teacher.modle"):
        from_dict(TrainGanConfig, {"teacher": {"modle": "x"}})
    with pytest.raises(ConfigError, match=r"^loss.feature_matching_weight: must be >= 0"):
        from_dict(TrainGanConfig, {"loss": {"feature_matching_weight": -0.1}})
    assert TrainGanConfig().loss.phase_weight == 0.0 and from_dict(TrainGanConfig, {"loss": {"phase_weight": 1}}).loss.phase_weight == 1.0
    with pytest.raises(ConfigError, match=r"^loss.phase_weight: must be >= 0"):
        from_dict(TrainGanConfig, {"loss": {"phase_weight": -1.0}})
    assert TrainGanConfig().loss.texture_weight == 0.0
    with pytest.raises(ConfigError, match=r"^loss.texture_weight: must be >= 0"):
        from_dict(TrainGanConfig, {"loss": {"texture_weight": -1.0}})
    with pytest.raises(ConfigError, match=r"^loss.texture_weight: needs data.gt_size >= 16"):
        from_dict(TrainGanConfig, {"loss": {"texture_weight": 1.0}, "data": {"gt_size": 8, "crop_size": 8}})
    from esrcli.losses.texture import TEXTURE_PATCH

    assert TEXTURE_PATCH == 16  # the config's check above uses the same number
    with pytest.raises(ConfigError, match=r"^loss.perceptual_optional: expected true or false"):
        from_dict(TrainGanConfig, {"loss": {"perceptual_optional": "yes"}})
