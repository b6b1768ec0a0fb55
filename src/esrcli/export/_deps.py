"""Optional packages of the ``export`` extra, imported on use with a clear message when missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from esrcli.errors import EsrError

__all__ = ["require", "MissingExtraError"]


class MissingExtraError(EsrError):
    """An optional package of the ``export`` extra is not installed."""

_PIP = {"onnx": "onnx", "onnxruntime": "onnxruntime", "ncnn": "ncnn"}


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise a one-line :class:`EsrError` naming the extra to install.

    Raises:
        MissingExtraError: ``"<purpose> needs the Python package '<pkg>', which is not installed"``
            with the hint ``pip install 'esrcli[export]'``.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"{purpose} needs the Python package '{_PIP.get(module, module)}', which is not installed",
            "pip install 'esrcli[export]'  (onnx, onnxruntime, ncnn)",
        ) from None
