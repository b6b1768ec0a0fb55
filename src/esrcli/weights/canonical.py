"""Canonicalisation of loaded checkpoints into a flat BasicSR-named state dict.

Handles what official and community ``.pth`` files wrap their weights in: BasicSR's
``{"params_ema": ..., "params": ...}`` (EMA preferred, as Real-ESRGAN's inference does; the
same for esr's training checkpoints, ``{"net_g_ema": ..., "net_g": ...}``),
``{"state_dict": ...}``, ``{"model": ...}``, DataParallel ``module.`` prefixes, and the two
old ESRGAN RRDBNet layouts (``RRDB_ESRGAN_x4.pth`` and friends):

* sequential: ``model.0`` (first conv), ``model.1.sub.N.RDB1.conv1.0`` (blocks),
  ``model.1.sub.<num_block>`` (trunk conv), ``model.3`` / ``model.6`` (up convs),
  ``model.8`` (HR conv), ``model.10`` (last conv);
* named: ``conv_first``, ``RRDB_trunk.N.RDB1.conv1``, ``trunk_conv``, ``upconv1``,
  ``upconv2``, ``HRconv``, ``conv_last``.
"""

from __future__ import annotations

import re
from typing import Any

from torch import Tensor

from esrcli.errors import WeightsError

__all__ = ["unwrap_checkpoint", "canonicalize"]

_WRAPPER_KEYS = ("params_ema", "net_g_ema", "params", "state_dict", "model_state_dict", "model", "net_g", "generator")


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, Tensor) for v in obj.values())


def unwrap_checkpoint(obj: Any, name: str) -> tuple[dict[str, Tensor], str]:
    """Find the tensor dict inside a loaded checkpoint.

    Args:
        obj: what ``torch.load`` returned.
        name: the file name, for messages.

    Returns:
        ``(state_dict, where)`` with ``where`` the wrapper key used (``""`` for a bare dict).

    Raises:
        WeightsError: no tensor dict found.
    """
    if _is_state_dict(obj):
        return obj, ""
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if _is_state_dict(inner):
                return inner, key
        # A dict of mostly tensors with a few bookkeeping entries (e.g. "iter").
        tensors = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
        if tensors and len(tensors) >= len(obj) // 2:
            return tensors, ""
    raise WeightsError(f"{name}: not a model file (no tensors found)")


def _strip_prefix(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    for prefix in ("module.", "_orig_mod."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


_SEQ_BLOCK = re.compile(r"^model\.1\.sub\.(\d+)\.RDB([123])\.conv([1-5])\.0\.(weight|bias)$")
_SEQ_TRUNK = re.compile(r"^model\.1\.sub\.(\d+)\.(weight|bias)$")
_NAMED_BLOCK = re.compile(r"^RRDB_trunk\.(\d+)\.RDB([123])\.conv([1-5])\.(weight|bias)$")
_SEQ_TAIL = {"model.0": "conv_first", "model.3": "conv_up1", "model.6": "conv_up2", "model.8": "conv_hr", "model.10": "conv_last"}
_NAMED_TAIL = {
    "conv_first": "conv_first",
    "trunk_conv": "conv_body",
    "upconv1": "conv_up1",
    "upconv2": "conv_up2",
    "HRconv": "conv_hr",
    "conv_last": "conv_last",
}


def _convert_old_esrgan(sd: dict[str, Tensor], name: str) -> tuple[dict[str, Tensor], str] | None:
    """Rename an old ESRGAN layout to BasicSR names; ``None`` when ``sd`` is not one."""
    if "model.1.sub.0.RDB1.conv1.0.weight" in sd:
        out: dict[str, Tensor] = {}
        for k, v in sd.items():
            m = _SEQ_BLOCK.match(k)
            if m:
                out[f"body.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}"] = v
                continue
            m = _SEQ_TRUNK.match(k)
            if m:
                out[f"conv_body.{m[2]}"] = v
                continue
            head, _, leaf = k.rpartition(".")
            if head in _SEQ_TAIL:
                out[f"{_SEQ_TAIL[head]}.{leaf}"] = v
                continue
            raise WeightsError(f"{name}: old ESRGAN layout with an unsupported layer {k!r} (only the x4 RRDBNet is supported)")
        return out, "esrgan-sequential"
    if "RRDB_trunk.0.RDB1.conv1.weight" in sd:
        out = {}
        for k, v in sd.items():
            m = _NAMED_BLOCK.match(k)
            if m:
                out[f"body.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}"] = v
                continue
            head, _, leaf = k.rpartition(".")
            if head in _NAMED_TAIL:
                out[f"{_NAMED_TAIL[head]}.{leaf}"] = v
                continue
            raise WeightsError(f"{name}: old ESRGAN layout with an unsupported layer {k!r}")
        return out, "esrgan-named"
    return None


def canonicalize(obj: Any, name: str) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Turn a loaded checkpoint into a flat state dict with BasicSR key names.

    Args:
        obj: what ``torch.load`` returned (a dict of tensors or a wrapper around one).
        name: the file name, for messages.

    Returns:
        ``(state_dict, notes)``; ``notes`` may hold ``"source_key"`` (e.g. ``"params_ema"``)
        and ``"layout"`` (``"esrgan-sequential"`` / ``"esrgan-named"``) for ``esr model info``.

    Raises:
        WeightsError: no tensors found, or an old ESRGAN layout with unsupported layers.
    """
    sd, where = unwrap_checkpoint(obj, name)
    sd = _strip_prefix(dict(sd))
    notes: dict[str, str] = {}
    if where:
        notes["source_key"] = where
    converted = _convert_old_esrgan(sd, name)
    if converted is not None:
        sd, notes["layout"] = converted
    return sd, notes
