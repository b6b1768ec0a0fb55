"""Models out of esr and back in: ONNX and ncnn export, ncnn import, numerical checks.

* :func:`export_onnx` writes an ONNX model (input ``input``, output ``output``, dynamic
  batch, height and width; fp32 or fp16) for ONNX Runtime and the apps built on it.
* :func:`export_ncnn` writes ``NAME.param`` + ``NAME.bin`` (input blob ``data``, output blob
  ``output``, fp16 weight storage) for realesrgan-ncnn-vulkan, Upscayl and other ncnn apps.
* :func:`import_ncnn` reads such a pair (also the official Real-ESRGAN ncnn files) back into
  an esr state dict.
* :func:`check_onnx` / :func:`check_ncnn` run the exported file (onnxruntime / the ``ncnn``
  Python package) against PyTorch and give the PSNR in dB.

The writers need no extra package; the checks need the ``export`` extra
(``pip install 'esrcli[export]'``: onnx, onnxruntime, ncnn). Both architectures
(RRDBNet, SRVGGNetCompact) at every scale they support.
"""

from esrcli.export._deps import MissingExtraError
from esrcli.export.check import Check, check_ncnn, check_onnx, psnr_db
from esrcli.export.ncnn import NcnnImport, export_ncnn, import_ncnn, read_ncnn_param
from esrcli.export.onnx import export_onnx

__all__ = [
    "export_onnx",
    "export_ncnn",
    "import_ncnn",
    "read_ncnn_param",
    "NcnnImport",
    "Check",
    "check_onnx",
    "check_ncnn",
    "psnr_db",
    "MissingExtraError",
]
