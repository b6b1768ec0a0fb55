"""Downloadable models by name: the official ESRGAN / Real-ESRGAN releases and a user catalogue.

Names match case-insensitively, with or without ``.pth``: ``RealESRGAN_x4plus``,
``realesrgan_x4plus.pth`` and ``REALESRGAN_X4PLUS`` are the same model.

Facts of the built-in entries (URL, size in bytes, sha256, architecture, scale, licence) are
taken from OpenModelDB's data (github.com/OpenModelDB/open-model-database, ``data/models/*.json``,
``resources``) at commit ``782aac088bd83dd3fc438a42eb0c3868dc559110`` (2026-08-14), or from the
official release pages where OpenModelDB has no entry; each entry's ``source`` says which.
Where no published size or hash exists, the field is ``None`` and such a file is checked less
(its architecture and scale only, after download).

The user catalogue is a TOML file (``ESR_MODELS_FILE``, default ``models.toml`` in the
platform's user config folder for ``esr``)::

    [models.my-x4]
    url = "https://example.org/my_x4.pth"
    sha256 = "0123...cdef"        # required: 64 hex digits
    size = 67040989              # optional, bytes
    description = "my fine-tune"  # optional

A user entry of the same name as a built-in one replaces it (e.g. to use a mirror).
Downloaded files live in ``ESR_CACHE_DIR`` or the platform's user cache folder
(``.../esr/models``).
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from esrcli.errors import ConfigError, WeightsError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as tomllib

__all__ = [
    "RemoteModel",
    "OFFICIAL_MODELS",
    "OPENMODELDB_COMMIT",
    "normalize_name",
    "cache_dir",
    "user_catalogue_path",
    "load_user_catalogue",
    "remote_models",
    "find_remote",
    "cached_file",
    "unknown_name_error",
    "ModelRow",
    "list_models",
]

OPENMODELDB_COMMIT = "782aac088bd83dd3fc438a42eb0c3868dc559110"
"""The commit of github.com/OpenModelDB/open-model-database the built-in facts were read at."""

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_MODEL_SUFFIXES = (".pth", ".safetensors")


@dataclass(frozen=True)
class RemoteModel:
    """A model that can be downloaded by name.

    Attributes:
        name: the name users type (matching ignores case and a ``.pth`` suffix).
        url: direct download URL, or ``""`` when the file is only on a web page
            (``page``) that needs a browser.
        sha256: lowercase hex digest of the file, or ``None`` where none is published.
        size: file size in bytes, or ``None`` where none is published.
        arch: ``"RRDBNet"`` or ``"SRVGGNetCompact"`` (``""`` when unknown: user entries).
        scale: upscaling factor (0 when unknown).
        num_block: RRDBNet blocks or SRVGGNetCompact ``num_conv`` (0 when unknown).
        license: SPDX licence identifier of the weights.
        description: one line.
        page: a web page to download the file from by hand.
        source: where the facts above come from.
        user: whether the entry comes from the user catalogue.
    """

    name: str
    url: str
    sha256: str | None
    size: int | None = None
    arch: str = ""
    scale: int = 0
    num_block: int = 0
    license: str = ""
    description: str = ""
    page: str = ""
    source: str = ""
    user: bool = False

    @property
    def file_name(self) -> str:
        """The cache file name: the official file name for built-in entries, ``NAME.pth`` /
        ``NAME.safetensors`` (after the URL's suffix) for user entries."""
        base = Path(urlparse(self.url).path).name if self.url else ""
        if not self.user and base.lower().endswith(_MODEL_SUFFIXES):
            return base
        suffix = ".safetensors" if base.lower().endswith(".safetensors") else ".pth"
        stem = self.name[: -len(suffix)] if self.name.lower().endswith(suffix) else self.name
        return stem + suffix


_OMDB = f"OpenModelDB {OPENMODELDB_COMMIT[:12]} data/models/"
_RELEASES = "https://github.com/xinntao/Real-ESRGAN/releases/download/"

OFFICIAL_MODELS: tuple[RemoteModel, ...] = (
    RemoteModel(
        name="RealESRGAN_x4plus",
        url=_RELEASES + "v0.1.0/RealESRGAN_x4plus.pth",
        size=67040989,
        sha256="4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1",
        arch="RRDBNet", scale=4, num_block=23, license="BSD-3-Clause",
        description="Real-ESRGAN general photos x4 (GAN stage)",
        source=_OMDB + "4x-realesrgan-x4plus.json",
    ),
    RemoteModel(
        # Not in OpenModelDB. URL: the Real-ESRGAN v0.1.1 release page lists RealESRNet_x4plus.pth.
        # No size or sha256 is published there: checked by architecture and scale only.
        name="RealESRNet_x4plus",
        url=_RELEASES + "v0.1.1/RealESRNet_x4plus.pth",
        size=None,
        sha256=None,
        arch="RRDBNet", scale=4, num_block=23, license="BSD-3-Clause",
        description="Real-ESRNet general photos x4 (L1 stage, before the GAN)",
        source="github.com/xinntao/Real-ESRGAN/releases/tag/v0.1.1 (no published size or hash)",
    ),
    RemoteModel(
        name="RealESRGAN_x4plus_anime_6B",
        url=_RELEASES + "v0.2.2.4/RealESRGAN_x4plus_anime_6B.pth",
        size=17938799,
        sha256="f872d837d3c90ed2e05227bed711af5671a6fd1c9f7d7e91c911a61f155e99da",
        arch="RRDBNet", scale=4, num_block=6, license="BSD-3-Clause",
        description="Real-ESRGAN anime illustrations x4 (6 blocks)",
        source=_OMDB + "4x-realesrgan-x4plus-anime-6b.json",
    ),
    RemoteModel(
        name="RealESRGAN_x2plus",
        url=_RELEASES + "v0.2.1/RealESRGAN_x2plus.pth",
        size=67061725,
        sha256="49fafd45f8fd7aa8d31ab2a22d14d91b536c34494a5cfe31eb5d89c2fa266abb",
        arch="RRDBNet", scale=2, num_block=23, license="BSD-3-Clause",
        description="Real-ESRGAN general photos x2",
        source=_OMDB + "2x-realesrgan-x2plus.json",
    ),
    RemoteModel(
        name="realesr-animevideov3",
        url=_RELEASES + "v0.2.5.0/realesr-animevideov3.pth",
        size=2504012,
        sha256="b8a8376811077954d82ca3fcf476f1ac3da3e8a68a4f4d71363008000a18b75d",
        arch="SRVGGNetCompact", scale=4, num_block=16, license="BSD-3-Clause",
        description="Real-ESRGAN anime video x4, compact (16 convs)",
        source=_OMDB + "4x-realesr-animevideo-v3.json",
    ),
    RemoteModel(
        name="realesr-general-x4v3",
        url=_RELEASES + "v0.2.5.0/realesr-general-x4v3.pth",
        size=4885111,
        sha256="8dc7edb9ac80ccdc30c3a5dca6616509367f05fbc184ad95b731f05bece96292",
        arch="SRVGGNetCompact", scale=4, num_block=32, license="BSD-3-Clause",
        description="Real-ESRGAN general scenes x4, compact (32 convs)",
        source=_OMDB + "4x-realesr-general-x4v3.json",
    ),
    RemoteModel(
        name="realesr-general-wdn-x4v3",
        url=_RELEASES + "v0.2.5.0/realesr-general-wdn-x4v3.pth",
        size=4885111,
        sha256="1641f8c4464b9f097c9fdda5589273713f67cf59f3d909e0bd688f0cee269dca",
        arch="SRVGGNetCompact", scale=4, num_block=32, license="BSD-3-Clause",
        description="Real-ESRGAN general scenes x4, compact, stronger denoising (interpolate with realesr-general-x4v3)",
        source=_OMDB + "4x-realesr-general-wdn-x4v3.json",
    ),
    RemoteModel(
        # ESRGAN's own release is a Google Drive folder; OpenModelDB's 4x-ESRGAN entry
        # ("Pretrained: RRDB_ESRGAN_x4.pth") lists this direct mirror first.
        name="RRDB_ESRGAN_x4",
        url="https://objectstorage.us-phoenix-1.oraclecloud.com/n/ax6ygfvpvzka/b/open-modeldb-files/o/4x-ESRGAN.pth",
        size=66952991,
        sha256="545805ce2d861ee90972b5fa50b851f19ee4bb35dedd2eb090be1f7c935b6b00",
        arch="RRDBNet", scale=4, num_block=23, license="Apache-2.0",
        description="ESRGAN x4 (bicubic degradation, GAN), old key layout",
        page="https://mega.nz/#!uhAVEaAA!qfwIQ44Ba3rXMAb2-M3aM3zFBCwzmyQ64IO_0O-csJE",
        source=_OMDB + "4x-ESRGAN.json",
    ),
    RemoteModel(
        # OpenModelDB's 4x-PSNR entry ("Pretrained: RRDB_PSNR_x4.pth") has a Google Drive
        # page only: no direct download; size and hash let a hand-placed file be verified.
        name="RRDB_PSNR_x4",
        url="",
        size=66954395,
        sha256="985fba37421353716ef2fbd7fbbab061e76409994d168cf52527aa8ee53f81ec",
        arch="RRDBNet", scale=4, num_block=23, license="Apache-2.0",
        description="ESRGAN x4 PSNR-oriented (bicubic degradation, L1), old key layout",
        page="https://drive.google.com/open?id=1ldwajXL50uC7PCS63B4Wato6Dnk-svNL",
        source=_OMDB + "4x-PSNR.json",
    ),
)


def normalize_name(name: str) -> str:
    """The matching key of a model name: stripped, lowercase, without a ``.pth`` / ``.safetensors`` suffix."""
    key = name.strip().lower()
    for suffix in _MODEL_SUFFIXES:
        if key.endswith(suffix):
            return key[: -len(suffix)]
    return key


def cache_dir() -> Path:
    """Where downloaded models are kept: ``$ESR_CACHE_DIR``, else the user cache folder
    (e.g. ``~/.cache/esr/models`` on Linux). Not created here."""
    env = os.environ.get("ESR_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("esr", appauthor=False)) / "models"


def user_catalogue_path() -> Path:
    """The user catalogue file: ``$ESR_MODELS_FILE``, else ``models.toml`` in the user config
    folder (e.g. ``~/.config/esr/models.toml`` on Linux). It need not exist."""
    env = os.environ.get("ESR_MODELS_FILE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("esr", appauthor=False)) / "models.toml"


_USER_KEYS = {"url": str, "sha256": str, "size": int, "description": str}


def load_user_catalogue(path: str | os.PathLike | None = None) -> list[RemoteModel]:
    """Read the user catalogue (``[models.NAME]`` tables); a missing file is an empty catalogue.

    Args:
        path: the TOML file; default :func:`user_catalogue_path`.

    Returns:
        The entries in file order, each with ``user=True``.

    Raises:
        ConfigError: invalid TOML, an unknown or ill-typed key, a missing ``url`` or
            ``sha256``, a malformed hash or URL; the message starts with the file and
            the key path, e.g. ``models.toml: models.my-x4.sha256: expected 64 hex digits``.
    """
    path = Path(path) if path is not None else user_catalogue_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None
    unknown = sorted(set(data) - {"models"})
    if unknown:
        raise ConfigError(f"{path}: {unknown[0]}: unknown table (expected [models.NAME] tables)")
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise ConfigError(f"{path}: models: expected [models.NAME] tables")
    out = []
    for name, table in models.items():
        where = f"{path}: models.{name}"
        if not _NAME.match(name):
            raise ConfigError(f"{where}: a name may hold letters, digits and . _ + - only")
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: expected a table with url and sha256")
        for key, value in table.items():
            tp = _USER_KEYS.get(key)
            if tp is None:
                raise ConfigError(f"{where}.{key}: unknown key (known: {', '.join(_USER_KEYS)})")
            if not isinstance(value, tp) or isinstance(value, bool):
                raise ConfigError(f"{where}.{key}: expected {tp.__name__}, got {type(value).__name__}")
        for key in ("url", "sha256"):
            if key not in table:
                raise ConfigError(f"{where}.{key}: missing (url and sha256 are required)")
        url = table["url"]
        if urlparse(url).scheme not in ("http", "https"):
            raise ConfigError(f"{where}.url: expected an http:// or https:// URL, got {url!r}")
        sha = table["sha256"].lower()
        if not _SHA256.match(sha):
            raise ConfigError(f"{where}.sha256: expected 64 hex digits, got {table['sha256']!r}")
        size = table.get("size")
        if size is not None and size <= 0:
            raise ConfigError(f"{where}.size: expected a positive number of bytes, got {size}")
        out.append(
            RemoteModel(
                name=name, url=url, sha256=sha, size=size, description=table.get("description", ""),
                source=str(path), user=True,
            )
        )
    return out


def remote_models(user_file: str | os.PathLike | None = None) -> list[RemoteModel]:
    """All downloadable models: user entries first (they replace built-in ones of the same
    name), then the built-in official ones.

    Raises:
        ConfigError: a malformed user catalogue (see :func:`load_user_catalogue`).
    """
    user = load_user_catalogue(user_file)
    taken = {normalize_name(m.name) for m in user}
    return user + [m for m in OFFICIAL_MODELS if normalize_name(m.name) not in taken]


def find_remote(name: str, user_file: str | os.PathLike | None = None) -> RemoteModel | None:
    """The downloadable model called ``name`` (case-insensitive, ``.pth`` optional), or ``None``.

    Raises:
        ConfigError: a malformed user catalogue.
    """
    key = normalize_name(name)
    return next((m for m in remote_models(user_file) if normalize_name(m.name) == key), None)


def cached_file(model: RemoteModel, cache: str | os.PathLike | None = None) -> Path:
    """Where ``model`` is (or will be) in the cache folder (the file may not exist)."""
    return (Path(cache) if cache is not None else cache_dir()) / model.file_name


def unknown_name_error(name: str, embedded: list[str]) -> WeightsError:
    """The error for a name that is neither a file, an embedded model nor a catalogue entry."""
    official = ", ".join(m.name for m in OFFICIAL_MODELS)
    known = f"embedded models: {', '.join(embedded)}" if embedded else "no embedded models yet"
    return WeightsError(
        f"{name}: no such model file or embedded model ({known}), nor a downloadable model of that name",
        f"downloadable: {official}; your own in the user catalogue (esr model list --all)",
    )


@dataclass(frozen=True)
class ModelRow:
    """One line of ``esr model list --all``.

    Attributes:
        name: the name to type.
        kind: ``"embedded"`` (inside the package), ``"cached"`` (downloaded), ``"damaged"``
            (a cached file of the wrong size), ``"download"`` (downloaded on first use) or
            ``"manual"`` (no direct URL: placed by hand).
        arch: architecture, ``""`` when unknown.
        scale: upscaling factor, 0 when unknown.
        size: file size in bytes, ``None`` when unknown.
        path: the file for embedded and cached models, else ``None``.
        description: one line.
        license: SPDX identifier, ``""`` when unknown.
        url: download URL (or page), ``""`` for embedded models.
    """

    name: str
    kind: str
    arch: str = ""
    scale: int = 0
    size: int | None = None
    path: Path | None = None
    description: str = ""
    license: str = ""
    url: str = ""


def list_models(cache: str | os.PathLike | None = None, user_file: str | os.PathLike | None = None) -> list[ModelRow]:
    """Every model a name can reach: embedded ones, then catalogue entries (cached or not).

    An official model that an embedded model stands for (its ``official`` field) is listed
    once, as embedded.

    Raises:
        WeightsError: a malformed embedded catalogue (a packaging bug).
        ConfigError: a malformed user catalogue.
    """
    from importlib import resources

    from esrcli.weights.embedded import catalogue

    rows: list[ModelRow] = []
    covered: set[str] = set()
    for e in catalogue():
        covered.add(normalize_name(e.name))
        if e.official:
            covered.add(normalize_name(e.official))
        res = resources.files("esrcli.models").joinpath(e.file)
        size = None
        try:
            size = len(res.read_bytes()) if not isinstance(res, Path) else res.stat().st_size
        except (OSError, FileNotFoundError):
            pass
        note = f" (= {e.official}, used as is)" if e.official else ""
        rows.append(
            ModelRow(e.name, "embedded", e.arch, e.scale, size, res if isinstance(res, Path) else None, e.description + note)
        )
    for m in remote_models(user_file):
        if normalize_name(m.name) in covered and not m.user:
            continue
        path = cached_file(m, cache)
        if path.is_file():
            kind, size = "cached", path.stat().st_size
            if m.size is not None and size != m.size:  # a partial or foreign file: every use fails
                kind = "damaged"
                rows.append(ModelRow(m.name, kind, m.arch, m.scale, size, path,
                                     f"{size:,} bytes, not {m.size:,}: delete it or run esr model fetch {m.name}", m.license, m.url or m.page))
                continue
        else:
            kind, size, path = ("download" if m.url else "manual"), m.size, None
        rows.append(ModelRow(m.name, kind, m.arch, m.scale, size, path, m.description, m.license, m.url or m.page))
    return rows
