"""The embedded model catalogue: ``esrcli/models/catalogue.json`` and its package files.

``catalogue.json`` is a JSON list of objects::

    [{"name": "esr-x4", "file": "esr-x4.safetensors", "arch": "RRDBNet", "scale": 4,
      "description": "...", "training_data": "...", "iterations": 400000,
      "figures": {"set5_psnr_y": 30.1}, "default": true}]

Only ``name`` and ``file`` are required. The list is empty until a model ships.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator

from esrcli.errors import WeightsError

__all__ = ["CatalogueEntry", "catalogue", "default_model_name", "denoise_pair", "find_entry", "find_embedded", "resolve_model", "sharpness_pair"]

_PACKAGE = "esrcli.models"
_INDEX = "catalogue.json"
#: What ``esr train-net`` / ``train-gan`` export into a run folder: a run folder names it.
RUN_EXPORT = "net_g_ema.safetensors"


@dataclass(frozen=True)
class CatalogueEntry:
    """One embedded model.

    Attributes:
        name: what users type, e.g. ``esr upscale --model NAME``.
        file: file name inside ``esrcli/models/``.
        arch: architecture name (informational; the file's metadata decides).
        scale: upscaling factor (informational).
        description: one line.
        training_data: what it was trained on.
        iterations: training iterations, or ``None``.
        figures: validation figures, e.g. ``{"set5_psnr_y": 30.12}``.
        default: whether this is the default model.
        official: the official Real-ESRGAN name this file stands for, used as is
            (e.g. ``"RealESRGAN_x4plus"``): that name then resolves to this file with
            no download. ``""`` for esr's own models.
        origin: where the weights come from (project, release, how converted).
        license: licence of the weights (the licence text ships beside the file).
        partner: name of the PSNR-stage model of the same architecture that this (GAN-stage)
            model pairs with for ``--sharpness`` network interpolation, or ``""``.
        denoise_partner: name of this model's weak-denoise partner (same architecture,
            fine-tuned with milder noise and JPEG) that ``--denoise`` interpolates with, or
            ``""``.
    """

    name: str
    file: str
    arch: str = ""
    scale: int = 0
    description: str = ""
    training_data: str = ""
    iterations: int | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    default: bool = False
    official: str = ""
    origin: str = ""
    license: str = ""
    partner: str = ""
    denoise_partner: str = ""


def _parse(items: Any) -> list[CatalogueEntry]:
    if not isinstance(items, list):
        raise WeightsError(f"{_INDEX}: expected a JSON list of models")
    out = []
    known = set(CatalogueEntry.__dataclass_fields__)
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not isinstance(item.get("file"), str):
            raise WeightsError(f"{_INDEX}: entry {i} needs string 'name' and 'file'")
        unknown = sorted(set(item) - known)
        if unknown:
            raise WeightsError(f"{_INDEX}: entry {item['name']!r} has unknown key(s) {', '.join(unknown)}")
        out.append(CatalogueEntry(**item))
    return out


def _models_dir() -> Any:
    """The package folder holding the catalogue and model files (a Traversable)."""
    return resources.files(_PACKAGE)


def catalogue() -> list[CatalogueEntry]:
    """The embedded models, in catalogue order (an empty list when none ship).

    Raises:
        WeightsError: a malformed ``catalogue.json`` (a packaging bug).
    """
    try:
        text = _models_dir().joinpath(_INDEX).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    try:
        items = json.loads(text)
    except ValueError as exc:
        raise WeightsError(f"{_INDEX}: invalid JSON ({exc})") from None
    return _parse(items)


def default_model_name() -> str | None:
    """Name of the default embedded model (the one marked ``default``, else the first), or ``None``."""
    entries = catalogue()
    for e in entries:
        if e.default:
            return e.name
    return entries[0].name if entries else None


def find_entry(name: str) -> CatalogueEntry | None:
    """The catalogue entry called ``name``, or ``None``."""
    return next((e for e in catalogue() if e.name == name), None)


def sharpness_pair(name: str) -> tuple[str, str]:
    """The ``(psnr_stage, gan_stage)`` model names that ``--sharpness`` interpolates for ``name``.

    ``name`` may be either end: a GAN-stage entry whose ``partner`` names its PSNR-stage
    model, or a PSNR-stage entry that some GAN-stage entry names as its partner.

    Raises:
        WeightsError: ``name`` is not an embedded model, or it has no partner (the message
            lists the models that have one).
    """
    entries = catalogue()
    entry = next((e for e in entries if e.name == name), None)
    paired = [e.name for e in entries if e.partner] + [e.partner for e in entries if e.partner]
    have = f"models with a partner: {', '.join(paired)}" if paired else "no embedded model has a partner yet"
    if entry is None:
        raise WeightsError(f"{name}: --sharpness needs an embedded model with a PSNR-stage partner ({have})")
    if entry.partner:
        if find_entry(entry.partner) is None:
            raise WeightsError(f"{_INDEX}: {name}'s partner {entry.partner!r} is not in the catalogue")
        return entry.partner, entry.name
    gan = next((e for e in entries if e.partner == name), None)
    if gan is None:
        raise WeightsError(f"{name}: no PSNR-stage partner to interpolate with for --sharpness ({have})")
    return entry.name, gan.name


def denoise_pair(name: str) -> tuple[str, str]:
    """The ``(normal, weak_denoise)`` model names that ``--denoise`` interpolates for ``name``.

    ``name`` may be either end: an entry whose ``denoise_partner`` names its weak-denoise
    model, or the weak-denoise entry itself. Names match as in :func:`find_embedded`.

    Raises:
        WeightsError: ``name`` is not an embedded model with a weak-denoise partner (one line
            that names the models that have one).
    """
    entries = catalogue()
    entry = find_entry(name) or find_embedded(name)
    paired = [e.name for e in entries if e.denoise_partner]
    have = f"pass --model {paired[0]}" if len(paired) == 1 else (
        f"models with one: {', '.join(paired)}" if paired else "no embedded model has one yet")
    if entry is not None and entry.denoise_partner:
        if find_entry(entry.denoise_partner) is None:
            raise WeightsError(f"{_INDEX}: {entry.name}'s denoise_partner {entry.denoise_partner!r} is not in the catalogue")
        return entry.name, entry.denoise_partner
    normal = next((e for e in entries if entry is not None and e.denoise_partner == entry.name), None)
    if normal is not None:
        return normal.name, normal.denoise_partner
    raise WeightsError(f"{name}: --denoise needs a model with a weak-denoise partner ({have})")


def _run_export(folder: Path, text: str) -> Path:
    """The EMA export of the training run ``folder`` (named ``text`` by the caller).

    Raises:
        WeightsError: the folder holds no :data:`RUN_EXPORT`.
    """
    if (folder / RUN_EXPORT).is_file():
        return folder / RUN_EXPORT
    raise WeightsError(f"{text}: is a folder, not a model file (nor a training run with {RUN_EXPORT})",
                       "name a .safetensors or .pth file, or a model (esr model list)")


@contextmanager
def resolve_model(path_or_name: str | os.PathLike, progress: Callable[[int, int | None], None] | None = None) -> Iterator[Path]:
    """Yield a real file path for a model file path or a model name.

    In order: an existing file; a training run folder named as a path (``runs/gan``: its
    ``net_g_ema.safetensors``); an embedded model name; the official name an embedded
    model declares (``official``, used as is); a name in the user catalogue or the official
    catalogue (:mod:`esrcli.weights.remote`), downloaded into the cache on first use.
    Names match case-insensitively, with or without ``.pth``. Anything else that looks
    like a path is yielded as is (reading it then says "no such file").

    Args:
        path_or_name: a file path or a model name.
        progress: ``progress(done_bytes, total_bytes_or_None)`` while a download runs.

    Raises:
        WeightsError: neither an existing file nor a known name; a download that fails or
            does not verify (see :func:`esrcli.weights.download.fetch_model`).
        ConfigError: a malformed user catalogue file.
    """
    path = Path(path_or_name)
    text = str(path_or_name)
    looks_like_path = os.sep in text or (os.altsep is not None and os.altsep in text)
    if path.is_file():  # a folder named like a model (an output folder, say) does not hide it
        yield path
        return
    if looks_like_path and path.is_dir():  # runs/gan: a training run folder stands for its EMA export
        yield _run_export(path, text)
        return
    entry = find_entry(text) or find_embedded(text)
    if entry is not None:  # a bare name: the embedded model, even beside a run folder of that name
        with resources.as_file(_models_dir().joinpath(entry.file)) as real:
            yield Path(real)
        return
    if not looks_like_path:
        from esrcli.weights.remote import find_remote

        remote = find_remote(text)
        if remote is not None:
            from esrcli.weights.download import fetch_model

            yield fetch_model(remote, progress=progress)
            return
    if looks_like_path or path.suffix.lower() in (".pth", ".safetensors", ".pt", ".ckpt"):
        yield path
        return
    if path.is_dir():  # a bare name that is no model name but a folder here
        yield _run_export(path, text)
        return
    from esrcli.weights.remote import unknown_name_error

    raise unknown_name_error(text, [e.name for e in catalogue()])


def find_embedded(name: str) -> CatalogueEntry | None:
    """The embedded entry whose name or declared ``official`` name matches ``name``
    case-insensitively, with or without ``.pth``, or ``None``.

    Raises:
        WeightsError: a malformed ``catalogue.json`` (a packaging bug).
    """
    from esrcli.weights.remote import normalize_name

    key = normalize_name(name)
    for e in catalogue():
        if normalize_name(e.name) == key or (e.official and normalize_name(e.official) == key):
            return e
    return None
