"""Model files: safetensors/.pth I/O with metadata, canonicalisation, architecture
detection, network interpolation and the embedded model catalogue.

Typical use::

    net, info = load_model("RealESRGAN_x4plus.pth")    # eval, float32
    save_model("x4.safetensors", net, info, half=True)
"""

from esrcli.weights.canonical import canonicalize, unwrap_checkpoint
from esrcli.weights.embedded import CatalogueEntry, catalogue, default_model_name, denoise_pair, find_entry, resolve_model, sharpness_pair
from esrcli.weights.detect import ModelInfo, check_state_dict, detect_arch, params_text
from esrcli.weights.interp import interpolate, interpolate_files
from esrcli.weights.io import (
    build_model, denoise_state_dict, load_model, load_state_dict, read_denoise_pair, read_model_file, read_model_info, save_model,
)

__all__ = [
    "ModelInfo",
    "CatalogueEntry",
    "load_model",
    "build_model",
    "read_denoise_pair",
    "denoise_state_dict",
    "load_state_dict",
    "read_model_file",
    "read_model_info",
    "save_model",
    "detect_arch",
    "check_state_dict",
    "canonicalize",
    "unwrap_checkpoint",
    "params_text",
    "interpolate",
    "interpolate_files",
    "catalogue",
    "default_model_name",
    "find_entry",
    "resolve_model",
    "sharpness_pair",
    "denoise_pair",
]
