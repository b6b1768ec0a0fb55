"""Learning-rate schedules as pure functions of the iteration (resumable by construction)."""

from __future__ import annotations

import math
from bisect import bisect_right

import torch

from esrcli.config.train import TrainOptions

__all__ = ["lr_factor", "build_scheduler"]


def lr_factor(iteration: int, opts: TrainOptions) -> float:
    """Multiplier of the base learning rate at ``iteration`` (0-based, before the step).

    ``"multistep"``: ``gamma ** (number of milestones <= iteration)`` (torch's MultiStepLR);
    ``"cosine"``: cosine annealing from 1 to ``eta_min / lr`` over ``total_iter``;
    both after an optional linear warm-up of ``warmup_iter`` iterations.
    """
    if opts.warmup_iter and iteration < opts.warmup_iter:
        return (iteration + 1) / opts.warmup_iter
    if opts.scheduler == "multistep":
        return opts.gamma ** bisect_right(opts.milestones, iteration)
    span = max(1, opts.total_iter - opts.warmup_iter)
    t = min(1.0, (iteration - opts.warmup_iter) / span)
    floor = opts.eta_min / opts.lr
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))


def build_scheduler(optimizer: torch.optim.Optimizer, opts: TrainOptions) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` applying :func:`lr_factor`; step it once per iteration."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, opts))
