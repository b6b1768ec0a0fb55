"""oneDNN's fused CPU convolutions, for the generators' inference fast paths.

``torch.ops.mkldnn._convolution_pointwise`` (conv + bias + an optional activation) and
``_convolution_pointwise_.binary`` (conv added in place into another tensor: oneDNN's sum
post-op) are kernels ``torch.compile`` emits for CPU convolutions; eager code can call them
too. Builds without oneDNN lack them: callers then take their plain path. A destination that
is a channel slice (not contiguous) makes oneDNN fall back to an unfused conv and add.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import torch
from torch import Tensor

__all__ = ["FusedConvOps", "fused_conv_ops", "fused_path", "ONES"]

ONES = [1, 1]  # padding, stride and dilation of a 3x3 "same" conv


class FusedConvOps(NamedTuple):
    """``conv(x, w, b, padding, stride, dilation, groups, attr, scalars, algorithm)`` returns
    ``attr(conv(x))`` (``attr``: ``"none"``, ``"relu"``, ``"leaky_relu"`` with ``[slope]``, ...);
    ``conv_add_(other, x, w, b, padding, stride, dilation, groups, "add", 1.0, None, [], None)``
    adds ``conv(x)`` into ``other`` (contiguous in the same memory format) and returns it."""

    conv: Any
    conv_add_: Any


@functools.cache
def fused_conv_ops() -> FusedConvOps | None:
    """The fused convolution ops, or ``None`` where this torch build has no oneDNN."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        m = torch.ops.mkldnn
        return FusedConvOps(m._convolution_pointwise.default, m._convolution_pointwise_.binary)
    except (AttributeError, RuntimeError):
        return None


def fused_path(x: Tensor, weight: Tensor) -> bool:
    """Whether ``x`` may go through :func:`fused_conv_ops` with ``weight``: CPU inference (no
    autograd, no autocast) on a channels_last 4-D fp32/bf16 tensor of the weight's dtype."""
    return (
        not torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.dim() == 4
        and x.dtype in (torch.float32, torch.bfloat16)
        and x.dtype == weight.dtype
        and not torch.is_autocast_enabled("cpu")
        and x.is_contiguous(memory_format=torch.channels_last)
        and fused_conv_ops() is not None
    )
