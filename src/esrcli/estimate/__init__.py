"""Estimate how an image was degraded (noise, JPEG quality, blur) and the restoration strength it needs."""
