"""Typed TOML configuration: frozen dataclasses built from TOML tables.

A config class is a frozen ``@dataclass`` whose fields are annotated with one of:
``bool``, ``int``, ``float`` (an integer is accepted), ``str``, ``pathlib.Path``
(resolved relative to the config file), ``tuple[X, ...]`` / ``tuple[X, Y]``,
``Literal[...]``, ``X | None`` or a nested config dataclass. Defaults are the
field defaults.

Validation that needs values lives in the dataclass's ``__post_init__`` and raises
:class:`~esrcli.errors.ConfigError` with a message that starts with the field name;
the loader prefixes the table path, so users read ``degrade.first.blur_sigma: ...``.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Opt:
    ...     lr: float = 2e-4
    >>> from_dict(Opt, {"lr": 1e-4}).lr
    0.0001
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from esrcli.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as tomllib

T = TypeVar("T")

__all__ = ["from_dict", "from_toml", "load_toml", "to_toml", "replace_path"]


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, path: str, base_dir: Path | None) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a table, got {type(value).__name__}")
        return from_dict(tp, value, path=path, base_dir=base_dir)
    if origin is Union or origin is types.UnionType:
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        errors = []
        for a in args:
            try:
                return _convert(a, value, path, base_dir)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: {value!r} matches none of {', '.join(_type_name(a) for a in args)}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"{path}: {value!r} is not one of {', '.join(repr(c) for c in choices)}")
        return value
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected an array, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{path}[{i}]", base_dir) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{path}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(a, v, f"{path}[{i}]", base_dir) for i, (a, v) in enumerate(zip(args, value)))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{path}: expected a path string, got {value!r}")
        p = Path(value).expanduser()
        if base_dir is not None and not p.is_absolute():
            p = base_dir / p
        return p
    raise ConfigError(f"{path}: unsupported config type {tp!r}")  # programming error surfaced clearly


def from_dict(cls: type[T], data: dict[str, Any], path: str = "", base_dir: Path | None = None) -> T:
    """Build the frozen dataclass ``cls`` from a (TOML) dict, checking every key and type.

    Args:
        cls: the config dataclass.
        data: the parsed table.
        path: dotted path of this table, used in error messages.
        base_dir: folder that relative ``Path`` fields are resolved against.

    Returns:
        An instance of ``cls``.

    Raises:
        ConfigError: an unknown key, a wrong type or a value rejected by ``__post_init__``;
            the message starts with the full dotted key path.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        key_path = f"{path}.{key}" if path else key
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{key_path}: unknown key (known keys: {known})")
        kwargs[key] = _convert(hints[key], value, key_path, base_dir)
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(f"{path}.{msg}" if path else msg, exc.hint) from None


def load_toml(cls: type[T], file: str | Path, table: str | None = None) -> T:
    """Read a TOML file into ``cls``; relative paths resolve against the file's folder.

    Args:
        cls: the config dataclass.
        file: path of the ``.toml`` file.
        table: optional top-level table to read (e.g. ``"degrade"``); other tables are ignored,
            but the file must have this one (a misspelt table would otherwise be ignored too).

    Raises:
        ConfigError: the file is missing or not valid TOML (message names the file), it has no
            ``table``, or any error of :func:`from_dict`.
    """
    file = Path(file)
    try:
        with open(file, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{file}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: invalid TOML ({exc})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: invalid TOML (not UTF-8 text: byte {exc.object[exc.start]:#04x} at offset {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read ({exc.strerror})") from None
    if table is not None:
        if table not in data:
            found = ", ".join(f"[{k}]" for k in data if isinstance(data[k], dict)) or "none"
            raise ConfigError(
                f"{file}: no [{table}] table (tables found: {found})",
                f"put the settings under [{table}] (an empty [{table}] table gives the defaults)",
            )
        data = data[table]
        if not isinstance(data, dict):
            raise ConfigError(f"{file}: {table}: expected a table")
    try:
        return from_dict(cls, data, path=table or "", base_dir=file.resolve().parent)
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}", exc.hint) from None


def from_toml(cls: type[T], text: str) -> T:
    """``cls`` from TOML text such as :func:`to_toml` writes (a checkpoint's stored config);
    paths are taken as they stand.

    Raises:
        ConfigError: not valid TOML, or any error of :func:`from_dict`.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML ({exc})") from None
    return from_dict(cls, data)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, Path):
        return _toml_value(v.as_posix())
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def to_toml(obj: Any, table: str = "") -> str:
    """Serialise a config dataclass (nested ones become sub-tables) to TOML text.

    ``None`` values are written as comments, since TOML has no null.
    """
    scalars, subtables = [], []
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            subtables.append((f.name, v))
        elif v is None:
            scalars.append(f"# {f.name} = (unset)")
        else:
            scalars.append(f"{f.name} = {_toml_value(v)}")
    out = []
    if table and scalars:
        out.append(f"[{table}]")
    out.extend(scalars)
    text = "\n".join(out)
    for name, sub in subtables:
        sub_text = to_toml(sub, f"{table}.{name}" if table else name)
        text += ("\n\n" if text else "") + sub_text
    return text


def replace_path(obj: T, dotted: str, value: Any) -> T:
    """Return a copy of a frozen config with one (possibly nested) field replaced.

    Example: ``replace_path(cfg, "train.batch_size", 4)``.
    """
    head, _, rest = dotted.partition(".")
    if not rest:
        return dataclasses.replace(obj, **{head: value})
    return dataclasses.replace(obj, **{head: replace_path(getattr(obj, head), rest, value)})
