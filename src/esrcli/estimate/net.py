"""The small patch CNN of the estimator and the scaling of its outputs.

Input: ``(B, 3, P, P)`` float32 RGB patches in ``[0, 1]`` whose top-left corner lies on the image's
8-pixel block grid (so JPEG blocks sit at the same place in every patch). Output ``(B, 5)``:
noise sigma of R, G, B / 25, JPEG "compression" (100 - q) / 100 (0 for an uncompressed patch), blur
sigma / 3. The first layer sees full resolution (noise and 8x8 block edges are pixel-level); four
stride-2 stages and a global mean pool make it size-agnostic.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["EstimatorNet", "NOISE_SCALE", "BLUR_SCALE", "PATCH"]

NOISE_SCALE = 25.0  # output 0 -> sigma / 25 in 8-bit levels
BLUR_SCALE = 3.0  # output 4 -> blur sigma / 3 px
PATCH = 64


class EstimatorNet(nn.Module):
    """Patch CNN regressing noise sigma (per channel), JPEG compression and blur sigma.

    Args:
        width: channels of the first stage (later stages double up to 4x).
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        self.width = w
        self.body = nn.Sequential(
            nn.Conv2d(3, w, 3, 1, 1), nn.LeakyReLU(0.1),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.LeakyReLU(0.1),
            nn.Conv2d(2 * w, 2 * w, 3, 1, 1), nn.LeakyReLU(0.1),
            nn.Conv2d(2 * w, 4 * w, 3, 2, 1), nn.LeakyReLU(0.1),
            nn.Conv2d(4 * w, 4 * w, 3, 2, 1), nn.LeakyReLU(0.1),
            nn.Conv2d(4 * w, 4 * w, 3, 2, 1), nn.LeakyReLU(0.1),
        )
        self.head = nn.Sequential(nn.Linear(8 * w, 64), nn.LeakyReLU(0.1), nn.Linear(64, 5))
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, a=0.1, nonlinearity="leaky_relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, P, P)`` in [0, 1] -> ``(B, 5)`` scaled targets (see the module docstring)."""
        f = self.body((x - 0.5) * 4.0)
        # mean and std pooling: the std keeps the strength of high-frequency responses
        pooled = torch.cat([f.mean(dim=(2, 3)), f.std(dim=(2, 3))], dim=1)
        return self.head(pooled)
