"""Inference: tiled forward pass with feathered blending, device/precision choice, the upscale pipeline."""

from esrcli.infer.device import Precision, prepare_model, select_device, select_precision
from esrcli.infer.tiled import tiled_forward
from esrcli.infer.upscale import UpscaleOptions, fill_transparent, upscale_image
from esrcli.memory import keep_freed_memory, release_memory

__all__ = [
    "Precision",
    "UpscaleOptions",
    "fill_transparent",
    "keep_freed_memory",
    "prepare_model",
    "release_memory",
    "select_device",
    "select_precision",
    "tiled_forward",
    "upscale_image",
]
