from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from esrcli.config import from_dict, load_toml, replace_path, to_toml
from esrcli.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    sigma: tuple[float, float] = (0.2, 3.0)
    kind: Literal["iso", "aniso"] = "iso"

    def __post_init__(self) -> None:
        if self.sigma[0] < 0:
            raise ConfigError("sigma: must be >= 0")


@dataclass(frozen=True)
class Outer:
    lr: float = 2e-4
    iters: int = 10
    folder: Path | None = None
    inner: Inner = field(default_factory=Inner)


def test_defaults_and_values():
    cfg = from_dict(Outer, {"lr": 1, "inner": {"sigma": [0.1, 2]}})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.inner.sigma == (0.1, 2.0)
    assert cfg.inner.kind == "iso"


@pytest.mark.parametrize(
    "data, message",
    [
        ({"lrr": 1}, "lrr: unknown key"),
        ({"iters": 1.5}, "iters: expected an integer"),
        ({"iters": True}, "iters: expected an integer"),
        ({"inner": {"kind": "x"}}, "inner.kind: 'x' is not one of"),
        ({"inner": {"sigma": [1]}}, "inner.sigma: expected 2 values"),
        ({"inner": {"sigma": [-1, 2]}}, "inner.sigma: must be >= 0"),
        ({"inner": 3}, "inner: expected a table"),
    ],
)
def test_errors_name_the_key(data, message):
    with pytest.raises(ConfigError) as exc:
        from_dict(Outer, data)
    assert str(exc.value).startswith(message)


def test_load_toml_resolves_paths_and_names_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('folder = "data"\n[inner]\nbogus = 1\n')
    with pytest.raises(ConfigError, match=r"c.toml: inner.bogus: unknown key"):
        load_toml(Outer, f)
    f.write_text('folder = "data"\n')
    assert load_toml(Outer, f).folder == tmp_path.resolve() / "data"
    with pytest.raises(ConfigError, match="config file not found"):
        load_toml(Outer, tmp_path / "missing.toml")
    f.write_text("lr = [")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_toml(Outer, f)
    f.write_bytes(b'folder = "\xff"\n')  # not UTF-8: named, not a UnicodeDecodeError
    with pytest.raises(ConfigError, match=r"c.toml: invalid TOML \(not UTF-8 text: byte 0xff at offset 10\)"):
        load_toml(Outer, f)


def test_to_toml_round_trip(tmp_path):
    import tomllib

    cfg = Outer(lr=0.5, inner=Inner(sigma=(1.0, 2.0), kind="aniso"))
    text = to_toml(cfg)
    assert from_dict(Outer, tomllib.loads(text)) == cfg
    assert replace_path(cfg, "inner.kind", "iso").inner.kind == "iso"
