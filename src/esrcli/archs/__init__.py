"""Network architectures: generators (RRDBNet, SRVGGNetCompact), discriminators, VGG19 features.

State-dict key names follow BasicSR / Real-ESRGAN (and torchvision for VGG19), so official
weight files load with ``strict=True``. :func:`build_generator` is the one explicit mapping
from an architecture name to its class.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from esrcli.archs.discriminators import UNetDiscriminatorSN, VGGStyleDiscriminator
from esrcli.archs.rrdbnet import RRDB, RRDBNet, ResidualDenseBlock
from esrcli.archs.srvgg import ACT_TYPES, SRVGGNetCompact
from esrcli.archs.vgg import (
    VGG19_FILE_NAME,
    VGG19_LAYER_NAMES,
    VGG19FeatureExtractor,
    load_vgg19_weights,
    vgg19_cache_path,
)
from esrcli.errors import WeightsError

__all__ = [
    "GENERATORS",
    "RRDB",
    "RRDBNet",
    "ResidualDenseBlock",
    "SRVGGNetCompact",
    "ACT_TYPES",
    "UNetDiscriminatorSN",
    "VGGStyleDiscriminator",
    "VGG19FeatureExtractor",
    "VGG19_FILE_NAME",
    "VGG19_LAYER_NAMES",
    "load_vgg19_weights",
    "vgg19_cache_path",
    "build_generator",
    "generator_defaults",
]

GENERATORS: dict[str, type[nn.Module]] = {"RRDBNet": RRDBNet, "SRVGGNetCompact": SRVGGNetCompact}
"""Generator architectures by name, in detection order."""


def generator_defaults(arch: str) -> dict[str, Any]:
    """The constructor defaults of a generator, e.g. ``{"num_in_ch": 3, ..., "num_grow_ch": 32}``.

    Raises:
        WeightsError: unknown architecture name.
    """
    cls = _generator_class(arch)
    sig = inspect.signature(cls.__init__)
    return {n: p.default for n, p in sig.parameters.items() if n != "self"}


def _generator_class(arch: str) -> type[nn.Module]:
    cls = GENERATORS.get(arch)
    if cls is None:
        raise WeightsError(f"unknown generator architecture {arch!r} (expected one of {', '.join(GENERATORS)})")
    return cls


def build_generator(arch: str, params: dict[str, Any]) -> nn.Module:
    """Build a generator by name from its hyper-parameters.

    Args:
        arch: ``"RRDBNet"`` or ``"SRVGGNetCompact"``.
        params: constructor arguments, e.g. ``{"scale": 4, "num_block": 23}``; missing ones
            take the defaults of the class.

    Returns:
        The module in training mode, float32, on the CPU.

    Raises:
        WeightsError: unknown architecture, unknown parameter name, or invalid values.
    """
    cls = _generator_class(arch)
    allowed = generator_defaults(arch)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise WeightsError(f"{arch}: unknown hyper-parameter(s) {', '.join(unknown)} (expected {', '.join(allowed)})")
    try:
        return cls(**params)
    except (ValueError, TypeError) as exc:
        raise WeightsError(f"{arch}: {exc}") from None
