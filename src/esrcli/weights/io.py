"""Reading and writing model files: esr safetensors with metadata, official ``.pth`` files.

The esr model file is a safetensors file whose header metadata (all strings) holds:

=================  ==========================================================
``format``         ``"esr-model"``
``format_version`` ``"1"``
``arch``           ``"RRDBNet"`` or ``"SRVGGNetCompact"``
``params``         JSON object of constructor hyper-parameters
``scale``          upscaling factor, e.g. ``"4"``
``esr_version``    version of esr that wrote the file
``provenance``     where the weights come from (free text)
``dtype``          ``"float32"`` or ``"float16"`` (storage only; loading gives float32)
(extra keys)       e.g. ``iterations``, ``parents``, ``alpha`` (strings)
=================  ==========================================================

``.pth`` files are read with ``torch.load(weights_only=True)`` only, so no code in a
checkpoint ever runs.
"""

from __future__ import annotations

import json
import numbers
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from esrcli import __version__
from esrcli.archs import build_generator
from esrcli.atomic import atomic_output
from esrcli.errors import ConfigError, WeightsError, read_failure
from esrcli.weights.canonical import canonicalize
from esrcli.weights.detect import ModelInfo, check_state_dict, detect_arch

__all__ = [
    "FORMAT", "read_model_file", "load_state_dict", "read_model_info", "read_named", "read_pair", "load_model", "build_model", "read_denoise_pair",
    "denoise_state_dict", "save_model", "atomic_save",
]

FORMAT = "esr-model"
FORMAT_VERSION = "1"
_CORE_KEYS = ("format", "format_version", "arch", "params", "scale", "esr_version", "dtype")


def _sniff(path: Path, head: bytes) -> str:
    """``"safetensors"``, ``"pth"`` (zip or legacy pickle) or ``"unknown"`` from the first bytes."""
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return "pth"
    return "unknown"


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            metadata = dict(fh.metadata() or {})
            sd = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError, JSON errors: all a bad file
        raise WeightsError(f"{path}: corrupt or truncated safetensors file ({_first_line(exc)})") from None
    if not sd:
        raise WeightsError(f"{path}: safetensors file holds no tensors")
    return sd, metadata


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


def _pickle_protocol(path: Path) -> int | None:
    """The pickle protocol of a ``.pth`` file's object pickle (zip ``data.pkl`` or a legacy
    file's first pickle), or ``None`` when it cannot be told."""
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                name = next((n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
                head = zf.open(name).read(2) if name is not None else b""
        else:
            with open(path, "rb") as fh:
                head = fh.read(2)
    except (OSError, zipfile.BadZipFile, RuntimeError):
        return None
    return head[1] if len(head) == 2 and head[0] == 0x80 else None


def _read_pth(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    try:
        # a file object, not the path: torch.load sends paths ending in .safetensors to
        # another loader; its warnings (e.g. about the pickle protocol) are ours to report
        with open(path, "rb") as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(fh, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError (zip), EOFError...
        msg = _first_line(exc)
        if "weights_only" in msg or "Unsupported global" in msg or "Weights only load failed" in msg:
            protocol = _pickle_protocol(path)
            if protocol is not None and protocol > 2:
                raise WeightsError(
                    f"{path}: refused: saved with pickle protocol {protocol}, which torch's safe loader does not read "
                    "(not loaded, for safety)",
                    "save it again with torch.save(obj, path), whose default protocol is 2",
                ) from None
            raise WeightsError(
                f"{path}: refused: the checkpoint contains Python objects other than tensors (not loaded, for safety)"
            ) from None
        raise WeightsError(f"{path}: corrupt or truncated .pth file ({type(exc).__name__})") from None
    sd, notes = canonicalize(obj, str(path))
    notes = {"source_format": "pth", **notes, **_training_config_params(obj)}
    return sd, notes


#: Hyper-parameters that tensor shapes cannot tell (see :func:`esrcli.weights.detect_arch`).
_SHAPELESS_PARAMS = ("act_type", "upsample", "num_in_ch")


def _training_config_params(obj: Any) -> dict[str, str]:
    """``arch`` / ``params`` metadata from an esr training checkpoint's stored config.

    esr checkpoints (``format`` ``esr-train/...``) keep the run's TOML; its ``[model]`` table
    says what the weights cannot: a LeakyReLU (not ReLU) or a bilinear residual. Only those
    keys are passed on; shapes still decide the rest. Anything else gives ``{}``.
    """
    if not isinstance(obj, dict) or not str(obj.get("format", "")).startswith("esr-train") or not isinstance(obj.get("config"), str):
        return {}
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python < 3.11 only
        import tomli as tomllib
    try:
        model = tomllib.loads(obj["config"]).get("model")
    except tomllib.TOMLDecodeError:
        return {}
    if not isinstance(model, dict) or not isinstance(model.get("arch"), str):
        return {}
    params = {k: model[k] for k in _SHAPELESS_PARAMS if isinstance(model.get(k), (str, int))}
    if model["arch"] != "SRVGGNetCompact":
        params.pop("act_type", None)
        params.pop("upsample", None)
    if params.get("upsample") == "nearest":
        del params["upsample"]
    return {"arch": model["arch"], "params": json.dumps(params)} if params else {}


def read_model_file(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Read a model file into a canonical state dict and its string metadata.

    The format is decided by content, not extension: safetensors (esr or other) or a
    PyTorch ``.pth`` (zip or legacy pickle).

    Returns:
        ``(state_dict, metadata)``: tensors as stored (dtype unchanged) with BasicSR key
        names; metadata is the safetensors header, or notes about a ``.pth`` file
        (``source_format``, ``source_key``, ``layout``).

    Raises:
        WeightsError: missing, empty, unreadable, corrupt, truncated or non-model file
            (the message starts with the path).
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise WeightsError(read_failure(path, exc, "a model file")) from None
    if not head:
        raise WeightsError(f"{path}: empty file (0 bytes)")
    kind = _sniff(path, head)
    if kind == "safetensors":
        sd, metadata = _read_safetensors(path)
        sd, _ = canonicalize(sd, str(path))
        return sd, metadata
    if kind == "pth":
        return _read_pth(path)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        raise WeightsError(f"{path}: an ONNX model, which esr writes (esr model export) but does not run",
                           "give the .safetensors or .pth model it was exported from")
    if suffix in (".param", ".bin"):
        raise WeightsError(f"{path}: an ncnn file, which esr does not run", "turn it into an esr model with: esr model import NAME.param NAME.bin -o NAME.safetensors")
    raise WeightsError(f"{path}: not a model file (neither safetensors nor a PyTorch checkpoint)")


def load_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """The canonical state dict of a model file (``.pth`` or ``.safetensors``).

    Unwraps ``params_ema`` (preferred) / ``params`` / ``state_dict``, strips ``module.``,
    converts old ESRGAN key layouts to BasicSR names. Tensors keep their stored dtype.

    Raises:
        WeightsError: unreadable or non-model file (message names the file).
    """
    return read_model_file(path)[0]


def read_model_info(path: str | os.PathLike) -> tuple[dict[str, Tensor], ModelInfo]:
    """Read a model file and detect its architecture.

    Returns:
        ``(state_dict, info)``; the state dict matches ``build_generator(info.arch, info.params)``.

    Raises:
        WeightsError: unreadable file or unknown/inconsistent architecture (names the file).
    """
    sd, metadata = read_model_file(path)
    try:
        info = detect_arch(sd, metadata)
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}", exc.hint) from None
    return sd, info


def read_named(path_or_name: str | os.PathLike, progress: Callable[[int, int | None], None] | None = None) -> tuple[dict[str, Tensor], ModelInfo]:
    """:func:`read_model_info` of a model file or, when no such file exists, of a model name
    (embedded, official or user catalogue; see :func:`esrcli.weights.embedded.resolve_model`).

    Raises:
        WeightsError: as :func:`read_model_info`, or no such file or model name.
    """
    from esrcli.weights.embedded import resolve_model

    with resolve_model(path_or_name, progress=progress) as path:
        return read_model_info(path)


def read_pair(
    a: str | os.PathLike, b: str | os.PathLike
) -> tuple[dict[str, Tensor], ModelInfo, dict[str, Tensor], ModelInfo]:
    """:func:`read_named` of two models that must share one architecture, for interpolation.

    Args:
        a: a model file or name (see :func:`read_named`).
        b: another; named second in the messages.

    Returns:
        ``(sd_a, info_a, sd_b, info_b)``, each state dict in its stored dtype.

    Raises:
        WeightsError: as :func:`read_named`; or the two differ in architecture
            (``"A and B: different architectures (X vs Y)"``) or in hyper-parameters
            (``"A and B: different X hyper-parameters (num_feat 64 vs 32)"``).
    """
    sd_a, info_a = read_named(a)
    sd_b, info_b = read_named(b)
    if info_a.arch != info_b.arch:
        raise WeightsError(f"{a} and {b}: different architectures ({info_a.arch} vs {info_b.arch})")
    if info_a.params != info_b.params:
        pa, pb = info_a.params, info_b.params
        unset = {"upsample": "nearest"}  # SRVGGNetCompact's default, left out of params
        diff = [f"{k} {pa.get(k, unset.get(k))} vs {pb.get(k, unset.get(k))}" for k in sorted(set(pa) | set(pb)) if pa.get(k) != pb.get(k)]
        raise WeightsError(f"{a} and {b}: different {info_a.arch} hyper-parameters ({', '.join(diff)})")
    return sd_a, info_a, sd_b, info_b


def _read_sharpness(name: str, sharpness: float) -> tuple[dict[str, Tensor], ModelInfo]:
    """Weights of ``(1 - sharpness) * psnr_stage + sharpness * gan_stage`` for an embedded pair."""
    from esrcli.weights.embedded import sharpness_pair
    from esrcli.weights.interp import interpolate

    psnr_name, gan_name = sharpness_pair(name)
    sd_a, _, sd_b, info_b = read_pair(psnr_name, gan_name)
    try:
        sd = interpolate(sd_a, sd_b, sharpness)
    except WeightsError as exc:
        raise WeightsError(f"{psnr_name} and {gan_name}: {exc}") from None
    metadata = {**info_b.metadata, "parents": f"{psnr_name},{gan_name}", "alpha": repr(float(sharpness))}
    return sd, ModelInfo(arch=info_b.arch, params=dict(info_b.params), scale=info_b.scale, metadata=metadata)


def read_denoise_pair(name: str) -> tuple[dict[str, Tensor], dict[str, Tensor], ModelInfo]:
    """The weights of an embedded model and of its weak-denoise partner, for ``--denoise``.

    Args:
        name: an embedded model with a ``denoise_partner`` (or that partner itself; see
            :func:`esrcli.weights.denoise_pair`).

    Returns:
        ``(normal, weak_denoise, info)``: the two state dicts (stored dtype) and the info of
        the normal model, with ``parents`` in its metadata.

    Raises:
        WeightsError: no partner (one line naming the models that have one), or partners of
            different architectures.
    """
    from esrcli.weights.embedded import denoise_pair

    normal_name, wdn_name = denoise_pair(name)
    sd_n, info_n, sd_w, _ = read_pair(normal_name, wdn_name)
    metadata = {**info_n.metadata, "parents": f"{normal_name},{wdn_name}"}
    return sd_n, sd_w, ModelInfo(arch=info_n.arch, params=dict(info_n.params), scale=info_n.scale, metadata=metadata)


def denoise_state_dict(normal: dict[str, Tensor], weak: dict[str, Tensor], strength: float) -> dict[str, Tensor]:
    """``strength * normal + (1 - strength) * weak`` for every floating tensor (float32).

    Real-ESRGAN's ``-dn`` option of ``realesr-general-x4v3`` (``dni_weight = [s, 1 - s]``
    over the normal and the weak-denoise model); ESRGAN network interpolation (Wang et al.
    2018, Sec. 3.4) with ``alpha = strength``, A the weak-denoise model.

    Args:
        normal: the model's state dict (strength 1).
        weak: its weak-denoise partner's (strength 0); same keys and shapes.
        strength: in ``[0, 1]``.

    Raises:
        ConfigError: ``strength`` outside ``[0, 1]`` (or not a number).
        WeightsError: different keys or shapes.
    """
    from esrcli.weights.interp import interpolate

    s = float(strength)
    if not 0.0 <= s <= 1.0:  # also NaN
        raise ConfigError(f"denoise: strength must be in [0, 1], got {strength}")
    return interpolate(weak, normal, s)


def build_model(sd: dict[str, Tensor], info: ModelInfo, device: str | torch.device = "cpu", label: str = "model") -> nn.Module:
    """The generator of ``info`` with the weights ``sd``: eval mode, float32, no grads, on ``device``.

    Raises:
        WeightsError: weights that do not fit the architecture (message starts with ``label``).
    """
    # Built on the meta device and given the file's tensors (``assign``): no random
    # initialisation to compute and throw away (0.1-0.25 s for RRDBNet), no second copy.
    with torch.device("meta"):
        net = build_generator(info.arch, info.params)
    sd = {k: v.float().contiguous() if v.is_floating_point() else v for k, v in sd.items()}
    try:
        net.load_state_dict(sd, strict=True, assign=True)
    except RuntimeError as exc:  # shapes were checked; keep a typed error anyway
        raise WeightsError(f"{label}: {_first_line(exc)}") from None
    left = [n for n, t in [*net.named_parameters(), *net.named_buffers()] if t.is_meta]
    if left:  # pragma: no cover - every generator tensor is in its state dict
        raise WeightsError(f"{label}: no weights for {', '.join(left[:3])}")
    net.eval().requires_grad_(False)
    return net.to(device)


def load_model(
    path_or_name: str | os.PathLike,
    device: str | torch.device = "cpu",
    sharpness: float | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    denoise: float | None = None,
) -> tuple[nn.Module, ModelInfo]:
    """Load a generator ready for inference.

    Args:
        path_or_name: a ``.safetensors`` / ``.pth`` file, or a model name tried when no such
            file exists: an embedded model (:func:`esrcli.weights.embedded.catalogue`) or an official /
            user-catalogue model (:mod:`esrcli.weights.remote`), downloaded on first use.
        device: where to put the network.
        sharpness: ``None`` for the model as stored; else a value in ``[0, 1]`` that
            interpolates, once here, between the embedded model's PSNR-stage partner (0) and
            its GAN-stage model (1) (ESRGAN network interpolation, Wang et al. 2018, Sec. 3.4;
            see :func:`esrcli.weights.sharpness_pair`).
        progress: ``progress(done_bytes, total_bytes_or_None)`` while a download runs.
        denoise: ``None`` for the model as stored; else a strength in ``[0, 1]``:
            ``denoise * model + (1 - denoise) * weak_denoise_partner``
            (:func:`denoise_state_dict`, :func:`read_denoise_pair`).

    Returns:
        ``(net, info)``: the network in eval mode, float32, parameters not requiring grad.

    Raises:
        ConfigError: ``sharpness`` or ``denoise`` not a number in ``[0, 1]``, or both given;
            a ``device`` that is no device name or not on this machine.
        WeightsError: no such file or model name, unreadable file, unknown architecture,
            a download that failed or did not verify; ``sharpness`` for a file or a model
            without a partner.
    """
    if sharpness is not None and denoise is not None:
        raise ConfigError("sharpness and denoise: give one of them (no model has both partners yet)")
    device = checked_device(device)
    for name, value in (("sharpness", sharpness), ("denoise", denoise)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
            raise ConfigError(f"{name}: expected a number in [0, 1], got {value!r}")
    if denoise is not None:
        if not 0.0 <= float(denoise) <= 1.0:
            raise ConfigError(f"denoise: strength must be in [0, 1], got {denoise}")
        sd_n, sd_w, info = read_denoise_pair(str(path_or_name))
        info.metadata["denoise"] = repr(float(denoise))
        return build_model(denoise_state_dict(sd_n, sd_w, denoise), info, device, str(path_or_name)), info
    if sharpness is None:
        sd, info = read_named(path_or_name, progress)
    else:
        if not 0.0 <= float(sharpness) <= 1.0:
            raise ConfigError(f"sharpness: must be in [0, 1], got {sharpness}")
        sd, info = _read_sharpness(str(path_or_name), float(sharpness))
    return build_model(sd, info, device, str(path_or_name)), info


def checked_device(device: str | torch.device) -> torch.device:
    """``device`` as a :class:`torch.device` that this machine has (also behind
    :func:`esrcli.infer.device.select_device`).

    Raises:
        ConfigError: not a device name, or a CUDA/MPS device this torch build or machine lacks.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"device: expected cpu, cuda, cuda:N or mps, got {device!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device: cuda is not available on this machine (torch sees no CUDA GPU)")
        if (dev.index or 0) >= torch.cuda.device_count():
            raise ConfigError(f"device: cuda:{dev.index or 0} does not exist ({torch.cuda.device_count()} GPU(s) visible)")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise ConfigError("device: mps is not available on this machine")
    return dev


def atomic_save(tensors: dict[str, Tensor], metadata: dict[str, str], path: str | os.PathLike) -> None:
    """Write a safetensors file atomically (temporary file beside it, then ``os.replace``).

    Raises:
        WeightsError: the folder does not exist or is not writable, or the write failed;
            an existing file at ``path`` is left intact.
    """
    from safetensors.torch import save

    path = Path(path)
    data = save(tensors, metadata=metadata)
    try:
        with atomic_output(path) as fh:
            fh.write(data)
    except OSError as exc:
        if not path.parent.is_dir():
            raise WeightsError(f"{path.parent}: output folder does not exist") from None
        raise WeightsError(f"{path}: cannot write ({exc.strerror or exc})") from None


FLOAT16_MAX = 65504.0


def check_float16_range(tensors: dict[str, Tensor] | nn.Module, where: str, hint: str = "keep float32 (leave out --half / --fp16)") -> None:
    """Refuse weights that float16 cannot hold (they would be stored as infinity).

    Args:
        tensors: a state dict or a network.
        where: what is written, for the message (a file name).
        hint: the one-line way out shown under the message.

    Raises:
        WeightsError: a floating tensor with a finite value beyond +-65504 (message names
            the tensor and its largest magnitude).
    """
    sd = tensors.state_dict() if isinstance(tensors, nn.Module) else tensors
    for k, v in sd.items():
        if v.is_floating_point() and v.numel():
            big = v.detach().float().abs().nan_to_num(nan=0.0, posinf=0.0).max().item()
            if big > FLOAT16_MAX:
                raise WeightsError(
                    f"{where}: tensor {k} holds {big:.4g}, beyond float16's range (+-65504); it cannot be stored as float16",
                    hint,
                )


def save_model(
    path: str | os.PathLike,
    net_or_state_dict: nn.Module | dict[str, Tensor],
    info: ModelInfo,
    extra_metadata: dict[str, str] | None = None,
    half: bool = False,
) -> None:
    """Save a generator as an esr safetensors model file, atomically.

    Args:
        path: output ``.safetensors`` file.
        net_or_state_dict: the generator or its state dict (``module.`` prefixes stripped).
        info: architecture and hyper-parameters; ``info.metadata`` is carried over
            (e.g. ``provenance``), then ``extra_metadata`` on top; the core keys
            (``arch``, ``params``, ``scale``, ``esr_version``, ...) are always set by esr.
        extra_metadata: more string metadata, e.g. ``{"iterations": "400000"}``.
        half: store floating tensors as float16 (half the size; loading returns float32).

    Raises:
        WeightsError: the weights do not match ``info`` (keys/shapes), a non-string
            metadata value, weights beyond float16's range with ``half``, or an unwritable
            destination.
    """
    sd = net_or_state_dict.state_dict() if isinstance(net_or_state_dict, nn.Module) else dict(net_or_state_dict)
    sd, _ = canonicalize(sd, str(path))
    params: dict[str, Any] = dict(info.params)
    params.setdefault("scale", info.scale)
    try:
        check_state_dict(sd, info.arch, params)
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None
    if half:
        check_float16_range(sd, str(path))
    tensors: dict[str, Tensor] = {}
    for k, v in sd.items():
        v = v.detach().to("cpu")
        if v.is_floating_point():
            v = v.to(torch.float16 if half else torch.float32)
        tensors[k] = v.contiguous().clone()
    metadata: dict[str, str] = {**info.metadata, **(extra_metadata or {})}
    for drop in ("source_format", "source_key", "layout"):
        metadata.pop(drop, None)
    bad = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise WeightsError(f"{path}: metadata values must be strings (bad keys: {', '.join(map(str, bad))})")
    metadata.update(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        arch=info.arch,
        params=json.dumps(params),
        scale=str(int(params["scale"])),
        esr_version=__version__,
        dtype="float16" if half else "float32",
    )
    metadata.setdefault("provenance", f"esr {__version__}")
    atomic_save(tensors, metadata, path)
