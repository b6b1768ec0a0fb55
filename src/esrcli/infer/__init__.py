"""Inference: tiled forward pass with feathered blending, device/precision choice, model
loading, the upscale pipeline for one image, the batch engine and video files.

Names are imported from their submodules on first use (PEP 562), so that
``esrcli.infer.plan`` (argument checks, no torch) can be imported without loading torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_NAMES = {
    "batch": (
        "DEFAULT_TILE", "BatchOptions", "DenoiseChosen", "Event", "Failed", "Finished", "FrameProgress", "Notice", "Skipped",
        "Warned", "Written", "run_batch",
    ),
    "plan": ("BatchItem", "collect_inputs"),
    "device": ("Precision", "prepare_model", "select_device", "select_precision"),
    "model": ("ModelSpec", "UpscaleModel", "load_upscale_model", "round_strength"),
    "tiled": ("tiled_forward",),
    "upscale": ("UpscaleOptions", "fill_transparent", "upscale_frames", "upscale_image"),
    "video": ("VideoError", "VideoOptions", "VideoProgress", "upscale_video"),
}
_WHERE = {name: module for module, names in _NAMES.items() for name in names}
_WHERE.update(keep_freed_memory="esrcli.memory", release_memory="esrcli.memory")

__all__ = sorted(_WHERE)

if TYPE_CHECKING:  # pragma: no cover
    from esrcli.infer.batch import (
        DEFAULT_TILE, BatchOptions, DenoiseChosen, Event, Failed, Finished, FrameProgress, Notice, Skipped, Warned, Written, run_batch,
    )
    from esrcli.infer.device import Precision, prepare_model, select_device, select_precision
    from esrcli.infer.model import ModelSpec, UpscaleModel, load_upscale_model, round_strength
    from esrcli.infer.plan import BatchItem, collect_inputs
    from esrcli.infer.tiled import tiled_forward
    from esrcli.infer.upscale import UpscaleOptions, fill_transparent, upscale_frames, upscale_image
    from esrcli.infer.video import VideoError, VideoOptions, VideoProgress, upscale_video
    from esrcli.memory import keep_freed_memory, release_memory


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'esrcli.infer' has no attribute {name!r}")
    module = importlib.import_module(where if "." in where else f"esrcli.infer.{where}")
    value = getattr(module, name)
    globals()[name] = value  # cached: later look-ups (and monkeypatching) see a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
