"""Typed, frozen configuration dataclasses and their TOML loader."""

from esrcli.config.loader import from_dict, from_toml, load_toml, replace_path, to_toml

__all__ = ["from_dict", "from_toml", "load_toml", "replace_path", "to_toml"]
