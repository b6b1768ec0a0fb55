"""A small, reproducible source of random draws for parameter sampling.

Parameters are sampled in Python (types, sizes, factors), but every number comes from a
``torch.Generator`` so that one seed fixes the whole degradation. Uniforms are pulled in
blocks from the generator, which keeps sampling thousands of parameter sets cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import torch

T = TypeVar("T")

__all__ = ["Draws"]


class Draws:
    """Uniform, choice and seed draws backed by a ``torch.Generator`` (any device).

    Args:
        generator: the generator; the same generator state gives the same draws.
        block: how many float64 uniforms to fetch from the generator at a time.
    """

    def __init__(self, generator: torch.Generator, block: int = 256) -> None:
        self.generator = generator
        self.block = block
        self._buf: list[float] = []

    def random(self) -> float:
        """A uniform float in ``[0, 1)``."""
        if not self._buf:
            t = torch.rand(self.block, dtype=torch.float64, generator=self.generator, device=self.generator.device)
            self._buf = t.tolist()[::-1]
        return self._buf.pop()

    def uniform(self, lo: float, hi: float) -> float:
        """A uniform float in ``[lo, hi)`` (``lo`` when the range is empty)."""
        return lo + (hi - lo) * self.random()

    def choice(self, items: Sequence[T]) -> T:
        """One of ``items``, each equally likely."""
        return items[min(int(self.random() * len(items)), len(items) - 1)]

    def choices(self, items: Sequence[T], probs: Sequence[float]) -> T:
        """One of ``items`` drawn with probabilities ``probs`` (summing to 1)."""
        u = self.random() * sum(probs)
        acc = 0.0
        for item, p in zip(items, probs):
            acc += p
            if u < acc:
                return item
        # u can reach the total only by rounding: return the last item with p > 0
        return [it for it, p in zip(items, probs) if p > 0][-1]

    def randint(self, lo: int, hi: int) -> int:
        """An integer in ``[lo, hi]`` (both ends included)."""
        return lo + min(int(self.random() * (hi - lo + 1)), hi - lo)

    def seed(self) -> int:
        """A 53-bit integer seed for a derived generator."""
        return int(self.random() * 2**53)
