"""Estimate how an image was degraded (noise, JPEG quality, blur) and the restoration strength it needs.

``esrcli.estimate.estimate(image) -> DegradationEstimate``; see :mod:`esrcli.estimate.core`.
"""

from esrcli.estimate.core import DegradationEstimate, estimate

__all__ = ["DegradationEstimate", "estimate"]
