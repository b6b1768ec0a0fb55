"""Exponential moving average of the generator's weights (Real-ESRGAN's ``net_g_ema``)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from esrcli.train.cpu import single_thread_on_cpu

__all__ = ["make_ema", "ema_update"]


def make_ema(net: nn.Module) -> nn.Module:
    """A frozen copy of ``net`` (eval mode, no gradients) to hold the averaged weights."""
    ema = copy.deepcopy(net).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    return ema


@torch.no_grad()
def ema_update(ema: nn.Module, net: nn.Module, decay: float) -> None:
    """``ema = decay * ema + (1 - decay) * net`` for every parameter; buffers are copied.

    Args:
        ema: the averaged copy (same architecture as ``net``).
        net: the trained network (unwrapped from DistributedDataParallel).
        decay: in ``[0, 1)``; 0 copies ``net``. Real-ESRGAN uses 0.999.
    """
    ema_params = [p for p in ema.parameters()]
    net_params = [p.detach() for p in net.parameters()]
    with single_thread_on_cpu(ema_params):
        if decay == 0:
            torch._foreach_copy_(ema_params, net_params)
        else:
            torch._foreach_lerp_(ema_params, net_params, 1.0 - decay)
        for be, bn in zip(ema.buffers(), net.buffers()):
            be.copy_(bn)
