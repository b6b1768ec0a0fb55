"""Architecture and hyper-parameter detection from tensor shapes.

One explicit, ordered list of detectors (RRDBNet, then SRVGGNetCompact); each reads the
hyper-parameters from shapes and key counts, then the result is verified by building the
network on the ``meta`` device and comparing every key and shape.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from esrcli.archs import build_generator
from esrcli.errors import WeightsError

__all__ = ["ModelInfo", "detect_arch", "check_state_dict", "info_from_metadata"]


@dataclass(frozen=True)
class ModelInfo:
    """What a model file holds.

    Attributes:
        arch: ``"RRDBNet"`` or ``"SRVGGNetCompact"``.
        params: constructor hyper-parameters, always including ``scale``, ``num_in_ch``
            and ``num_out_ch``, e.g. ``{"num_in_ch": 3, "num_out_ch": 3, "scale": 4,
            "num_feat": 64, "num_block": 23, "num_grow_ch": 32}``.
        scale: the upscaling factor (same as ``params["scale"]``).
        metadata: string metadata (from the safetensors header, or notes about a ``.pth``).
    """

    arch: str
    params: dict[str, Any]
    scale: int
    metadata: dict[str, str] = field(default_factory=dict)


def _shape(sd: dict[str, Tensor], key: str) -> tuple[int, ...] | None:
    t = sd.get(key)
    return None if t is None else tuple(t.shape)


_BODY_BLOCK = re.compile(r"^body\.(\d+)\.")


def _detect_rrdbnet(sd: dict[str, Tensor], meta_params: dict[str, Any]) -> dict[str, Any] | None:
    first = _shape(sd, "conv_first.weight")
    if first is None or "body.0.rdb1.conv1.weight" not in sd and "conv_body.weight" not in sd:
        return None
    if "conv_up1.weight" not in sd:
        return None
    if "conv_up2.weight" not in sd or "conv_up3.weight" in sd:
        raise WeightsError("RRDBNet variant with other than two upsampling convs (only x1/x2/x4 are supported)")
    last = _shape(sd, "conv_last.weight")
    if last is None or len(first) != 4 or len(last) != 4:
        raise WeightsError("RRDBNet without conv_last")
    num_feat, in_ch = first[0], first[1]
    num_out_ch = last[0]
    blocks = {int(m[1]) for k in sd if (m := _BODY_BLOCK.match(k))}
    num_block = len(blocks)
    grow = _shape(sd, "body.0.rdb1.conv1.weight")
    num_grow_ch = grow[0] if grow else int(meta_params.get("num_grow_ch", 32))
    # conv_first takes num_in_ch * u**2 channels, u = 1, 2, 4 for scale 4, 2, 1.
    hint_in = int(meta_params.get("num_in_ch", num_out_ch))
    for unshuffle, scale in ((1, 4), (2, 2), (4, 1)):
        if in_ch == hint_in * unshuffle**2:
            return {
                "num_in_ch": hint_in,
                "num_out_ch": num_out_ch,
                "scale": scale,
                "num_feat": num_feat,
                "num_block": num_block,
                "num_grow_ch": num_grow_ch,
            }
    raise WeightsError(f"RRDBNet with {in_ch} input channels for {num_out_ch} output channels is not x1/x2/x4")


def _detect_srvgg(sd: dict[str, Tensor], meta_params: dict[str, Any]) -> dict[str, Any] | None:
    first = _shape(sd, "body.0.weight")
    if first is None or len(first) != 4 or "conv_first.weight" in sd:
        return None
    convs = sorted(int(m[1]) for k, v in sd.items() if (m := re.match(r"^body\.(\d+)\.weight$", k)) and v.dim() == 4)
    if convs != list(range(0, 2 * len(convs), 2)) or len(convs) < 2:
        raise WeightsError("SRVGGNetCompact-like file with convolutions at unexpected positions")
    num_feat, num_in_ch = first[0], first[1]
    last = tuple(sd[f"body.{convs[-1]}.weight"].shape)
    num_out_ch = int(meta_params.get("num_out_ch", num_in_ch))
    scale = math.isqrt(max(last[0] // num_out_ch, 1))
    if scale * scale * num_out_ch != last[0]:
        raise WeightsError(f"SRVGGNetCompact last conv has {last[0]} channels: not num_out_ch * scale**2")
    prelu = _shape(sd, "body.1.weight")
    if prelu is not None:
        act_type = "prelu"
    else:
        act_type = str(meta_params.get("act_type", "relu"))
        if act_type == "prelu":
            act_type = "relu"
    params: dict[str, Any] = {
        "num_in_ch": num_in_ch,
        "num_out_ch": num_out_ch,
        "num_feat": num_feat,
        "num_conv": len(convs) - 2,
        "scale": scale,
        "act_type": act_type,
    }
    upsample = str(meta_params.get("upsample", "nearest"))  # weightless: only the metadata says
    if upsample != "nearest":
        params["upsample"] = upsample
    return params


_DETECTORS: tuple[tuple[str, Callable[[dict[str, Tensor], dict[str, Any]], dict[str, Any] | None]], ...] = (
    ("RRDBNet", _detect_rrdbnet),
    ("SRVGGNetCompact", _detect_srvgg),
)


def check_state_dict(sd: dict[str, Tensor], arch: str, params: dict[str, Any]) -> None:
    """Check that ``sd`` has exactly the keys and shapes of ``arch(**params)``.

    The network is built on the ``meta`` device, so this allocates no weights.

    Raises:
        WeightsError: invalid hyper-parameters, missing/unexpected keys or wrong shapes
            (the message lists up to three of each).
    """
    with torch.device("meta"):
        ref = build_generator(arch, params).state_dict()
    missing = [k for k in ref if k not in sd]
    unexpected = [k for k in sd if k not in ref]
    wrong = [f"{k} {tuple(sd[k].shape)} != {tuple(v.shape)}" for k, v in ref.items() if k in sd and sd[k].shape != v.shape]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
            problems.append(f"{label}: {', '.join(items[:3])}{more}")
    if problems:
        raise WeightsError(f"weights do not match {arch} {params_text(params)}: {'; '.join(problems)}")


def params_text(params: dict[str, Any]) -> str:
    """``key=value`` pairs in a stable order, for messages and ``esr model info``."""
    return " ".join(f"{k}={v}" for k, v in params.items())


def info_from_metadata(metadata: dict[str, str]) -> tuple[str, dict[str, Any]] | None:
    """``(arch, params)`` from an esr safetensors header, or ``None`` when absent/invalid."""
    arch = metadata.get("arch")
    raw = metadata.get("params")
    if not arch or not raw:
        return None
    try:
        params = json.loads(raw)
    except ValueError:
        return None
    return (arch, params) if isinstance(params, dict) else None


def detect_arch(state_dict: dict[str, Tensor], metadata: dict[str, str] | None = None) -> ModelInfo:
    """Detect the generator architecture and hyper-parameters of a canonical state dict.

    Shapes decide everything they can: ``num_feat`` from ``conv_first`` / ``body.0``,
    ``num_block`` from the number of ``body.N`` blocks, ``num_grow_ch`` from
    ``body.0.rdb1.conv1``, the RRDBNet scale from ``conv_first``'s input channels
    (``num_in_ch`` x 1, 4, 16 for x4, x2, x1), the SRVGGNetCompact scale from the last
    conv (``num_out_ch * scale**2``) and ``act_type="prelu"`` when PReLU weights exist.
    What shapes cannot tell (``relu`` vs ``leakyrelu``; ``num_in_ch`` when it differs from
    ``num_out_ch``; SRVGGNetCompact's ``upsample``, given only when not ``nearest``) comes
    from esr ``metadata`` when given, else the defaults.

    Args:
        state_dict: canonical keys (see :func:`esrcli.weights.canonical.canonicalize`).
        metadata: the safetensors header of an esr file, if any.

    Returns:
        A :class:`ModelInfo` whose params build a network that loads ``state_dict`` strictly.

    Raises:
        WeightsError: no known architecture matches, or the keys/shapes are inconsistent.
    """
    metadata = dict(metadata or {})
    from_meta = info_from_metadata(metadata)
    meta_params = from_meta[1] if from_meta else {}
    for arch, detector in _DETECTORS:
        params = detector(state_dict, meta_params)
        if params is not None:
            check_state_dict(state_dict, arch, params)
            return ModelInfo(arch=arch, params=params, scale=int(params["scale"]), metadata=metadata)
    sample = ", ".join(list(state_dict)[:3])
    raise WeightsError(f"unknown architecture (not RRDBNet or SRVGGNetCompact; first keys: {sample})")
