"""esr: real-world blind image super-resolution in the ESRGAN / Real-ESRGAN tradition.

``from esrcli import Upscaler`` gives the Python API (:class:`esrcli.api.Upscaler`); it is
imported on first use, so ``import esrcli`` stays cheap (no torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Upscaler", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from esrcli.api import Upscaler


def __getattr__(name: str) -> Any:
    if name == "Upscaler":
        from esrcli.api import Upscaler

        return Upscaler
    raise AttributeError(f"module 'esrcli' has no attribute {name!r}")
