"""ONNX export of RRDBNet / SRVGGNetCompact generators.

The graph has one input ``input`` ``(B, C, H, W)`` and one output ``output``
``(B, C, H*scale, W*scale)``, both RGB in ``[0, 1]`` (values outside are not clamped), with
dynamic batch, height and width. For x2 / x1 RRDBNet models H and W must be divisible by
2 / 4 (the pixel-unshuffle front end). ``fp16`` stores weights and computes in float16, with
float16 input and output (what GPU runtimes want); fp32 otherwise.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from esrcli import __version__
from esrcli.atomic import atomic_output
from esrcli.errors import ConfigError, WeightsError
from esrcli.export._deps import require
from esrcli.export.graph import plain_forward_module
from esrcli.weights.detect import ModelInfo

__all__ = ["export_onnx", "DEFAULT_OPSET"]

DEFAULT_OPSET = 17


def max_opset() -> int:
    """The newest ONNX opset the installed torch exports."""
    try:
        from torch.onnx import _constants

        return int(_constants.ONNX_MAX_OPSET)
    except (ImportError, AttributeError):
        return 20


def export_onnx(
    net: nn.Module,
    info: ModelInfo,
    path: str | os.PathLike,
    fp16: bool = False,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write ``net`` as an ONNX model file, atomically.

    Args:
        net: an RRDBNet or SRVGGNetCompact (any device; not modified).
        info: its architecture and hyper-parameters (stored as ONNX metadata:
            ``arch``, ``scale``, ``params``, ``esr_version``).
        path: the ``.onnx`` file to write.
        fp16: float16 weights, input and output instead of float32.
        opset: ONNX opset version, 11 to :func:`max_opset` (23 with torch 2.13).

    Returns:
        ``path``.

    Raises:
        ConfigError: an opset outside 11..:func:`max_opset`.
        WeightsError: an unsupported architecture, weights beyond float16's range with
            ``fp16``, or the exporter failed.
        EsrError: the ``onnx`` package is missing (``esrcli[export]``).
    """
    from esrcli.weights.io import check_float16_range

    path = Path(path)
    top = max_opset()
    if not 11 <= opset <= top:
        raise ConfigError(f"opset: expected 11 to {top} (what this torch's ONNX exporter writes), got {opset}")
    if fp16:
        check_float16_range(net, str(path))
    onnx = require("onnx", "ONNX export")
    import copy

    model = copy.deepcopy(net).to("cpu").float().eval()
    wrapper = plain_forward_module(model)
    dtype = torch.float16 if fp16 else torch.float32
    wrapper = wrapper.to(dtype)
    # A small example input; every spatial size is dynamic in the exported graph.
    c = int(info.params.get("num_in_ch", 3))
    example = torch.rand(1, c, 16, 16, dtype=dtype)
    buf = io.BytesIO()
    dims = {0: "batch", 2: "height", 3: "width"}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper, (example,), buf, input_names=["input"], output_names=["output"],
                dynamic_axes={"input": dims, "output": {0: "batch", 2: "height_out", 3: "width_out"}},
                opset_version=opset, do_constant_folding=True, dynamo=False,
            )
    except Exception as exc:  # noqa: BLE001 - exporter errors come in many types
        raise WeightsError(f"{path}: ONNX export failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    proto = onnx.load_from_string(buf.getvalue())
    meta = {
        "arch": info.arch,
        "scale": str(info.scale),
        "params": json.dumps(info.params),
        "esr_version": __version__,
        "dtype": "float16" if fp16 else "float32",
        "input": "RGB in [0, 1], (B, C, H, W)",
    }
    prov = info.metadata.get("provenance")
    if prov:
        meta["provenance"] = prov
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    proto.producer_name = "esr"
    proto.producer_version = __version__
    try:
        with atomic_output(path) as fh:
            fh.write(proto.SerializeToString())
    except OSError as exc:
        if not path.parent.is_dir():
            raise WeightsError(f"{path.parent}: output folder does not exist") from None
        raise WeightsError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return path
