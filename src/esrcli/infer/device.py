"""Device and precision selection for inference.

``auto`` picks CUDA, then MPS, then CPU. Precision ``auto`` picks fp16 on CUDA/MPS; on
CPU it picks bf16 only where the processor computes bf16 natively (AVX512-BF16 or AMX)
and a probe pass through the actual network comes within :data:`BF16_PROBE_MIN_PSNR` dB
PSNR of fp32 (checked once per network and cached for the process), otherwise fp32. The
probe is a small synthetic input, and real photos can drive a network further from fp32 than
it does (RealESRGAN_x4plus: probe 51.6 dB, 64 px crops of Real-ESRGAN's demo photos 43.1-52.1
dB; the compact esr-general-x4-net: probe 58.3 dB, crops 56.4-62.2 dB), so the probe must
clear the 45 dB promise (:data:`BF16_MIN_PSNR`) by a margin measured on such crops
(:data:`BF16_PROBE_MARGIN`). fp16 is never used on
the CPU (slow or unsupported there): a request for it runs fp32 with a notice.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from esrcli.errors import ConfigError
from esrcli.weights.io import checked_device

__all__ = [
    "PRECISIONS",
    "Precision",
    "select_device",
    "select_precision",
    "cpu_has_native_bf16",
    "prepare_model",
    "BF16_MIN_PSNR",
    "BF16_PROBE_MARGIN",
    "BF16_PROBE_MIN_PSNR",
    "CHANNELS_LAST_DEVICES",
]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
BF16_MIN_PSNR = 45.0  # dB, the promise: bf16 output vs fp32 on real photos
# The probe overestimates real photos' PSNR by up to 8.5 dB (RealESRGAN_x4plus, see the module
# docstring); 9 dB of margin keeps x4plus in fp32 and lets compact models (>= 58 dB) use bf16.
BF16_PROBE_MARGIN = 9.0
BF16_PROBE_MIN_PSNR = BF16_MIN_PSNR + BF16_PROBE_MARGIN
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_probe_cache: dict[object, float] = {}


@dataclass(frozen=True)
class Precision:
    """The chosen compute precision.

    Attributes:
        dtype: ``torch.float32``, ``torch.bfloat16`` or ``torch.float16``.
        name: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        note: a one-line explanation when the choice differs from the request or was
            probed (e.g. "fp16 is not supported on cpu; using fp32"), else ``None``.
    """

    dtype: torch.dtype
    name: str
    note: str | None = None


def select_device(spec: str = "auto") -> torch.device:
    """Resolve ``auto|cpu|cuda[:N]|mps`` to an available :class:`torch.device`.

    Raises:
        ConfigError: an unknown spec or a device that is not available here.
    """
    if not isinstance(spec, str):
        raise ConfigError(f"device: expected auto, cpu, cuda, cuda:N or mps, got {spec!r}")
    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if re.fullmatch(r"cpu|mps|cuda(:\d+)?", spec):
        dev = checked_device(spec)
        return torch.device("cuda", dev.index or 0) if dev.type == "cuda" else dev
    raise ConfigError(f"device: expected auto, cpu, cuda, cuda:N or mps, got {spec!r}")


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (x86 ``avx512_bf16`` / ``amx_bf16`` flags, Linux).

    Elsewhere (no ``/proc/cpuinfo``) returns ``False``: bf16 would be emulated and slow.
    """
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags") or line.startswith("Features"):
            flags.update(line.split(":", 1)[-1].split())
    return bool({"avx512_bf16", "amx_bf16"} & flags) and torch.backends.mkldnn.is_available()


# Devices whose convolutions are fastest with channels_last (NHWC) tensors: oneDNN on the CPU
# (its bf16 kernels, and the generators' fused paths, need it) and cuDNN, whose fp16/bf16
# tensor-core kernels are NHWC ones (NCHW inputs get transposed around every conv). MPS stays
# NCHW.
CHANNELS_LAST_DEVICES = ("cpu", "cuda")


def prepare_model(net: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """Move ``net`` to ``device``/``dtype`` for inference: eval mode, no grads, channels_last
    weights on the CPU and CUDA (:data:`CHANNELS_LAST_DEVICES`).

    On CUDA this also sets ``torch.backends.cudnn.benchmark`` (process-wide): tiles share one
    size, so cuDNN times its algorithms once per shape and keeps the fastest.
    """
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    net = net.eval().requires_grad_(False).to(device=device, dtype=dtype)
    if device.type in CHANNELS_LAST_DEVICES:
        net = net.to(memory_format=torch.channels_last)
    return net


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float().clamp(0, 1) - b.float().clamp(0, 1)) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def _probe_input(num_in_ch: int, size: int = 48) -> torch.Tensor:
    """A fixed natural-looking input: smooth random colour fields plus fine noise, in [0, 1]."""
    g = torch.Generator().manual_seed(1234)
    x = F.interpolate(torch.rand(1, num_in_ch, size // 8, size // 8, generator=g), size=(size, size), mode="bicubic", align_corners=False)
    return (x + 0.04 * torch.randn(1, num_in_ch, size, size, generator=g)).clamp(0, 1)


def probe_bf16_psnr(net: nn.Module, num_in_ch: int = 3, key: object | None = None) -> float:
    """PSNR (dB) of the bf16 output against fp32 on a fixed 48x48 probe input, cached per ``key``.

    ``net`` (float32, on the CPU) runs once as it is and once with bf16 copies of its
    parameters and buffers (``torch.func.functional_call``), exactly as the network
    converted to bf16 would; the module itself is not copied or changed.
    """
    key = id(net) if key is None else key
    if key not in _probe_cache:
        from torch.func import functional_call

        x = _probe_input(num_in_ch)
        with torch.inference_mode():
            ref = net(x)
            low_params = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in net.state_dict().items()}
            low = functional_call(net, low_params, (x.to(torch.bfloat16),))
            del low_params
        _probe_cache[key] = _psnr(low, ref)
    return _probe_cache[key]


def select_precision(
    requested: str,
    device: torch.device,
    net: nn.Module | None = None,
    num_in_ch: int = 3,
    key: object | None = None,
) -> Precision:
    """Choose the compute dtype for ``net`` on ``device``.

    Args:
        requested: ``auto``, ``fp32``, ``bf16`` or ``fp16``.
        device: where the network runs.
        net: the network (float32); needed for ``auto`` on CPU, where bf16 must pass the
            probe check (>= :data:`BF16_PROBE_MIN_PSNR` dB against fp32 on the probe input,
            so that real photos stay >= :data:`BF16_MIN_PSNR` dB). Without it, ``auto``
            on CPU is fp32.
        num_in_ch: input channels of ``net`` (for the probe input).
        key: cache key of the probe result (e.g. the model file); default ``id(net)``.

    Returns:
        The :class:`Precision`.

    Raises:
        ConfigError: an unknown precision name.
    """
    if not isinstance(requested, str):
        raise ConfigError(f"precision: expected one of {', '.join(PRECISIONS)}, got {requested!r}")
    requested = requested.strip().lower()
    if requested not in PRECISIONS:
        raise ConfigError(f"precision: expected one of {', '.join(PRECISIONS)}, got {requested!r}")
    if device.type == "cpu":
        if requested == "fp16":
            return Precision(torch.float32, "fp32", "fp16 is not supported on the CPU; using fp32")
        if requested == "bf16":
            note = None if cpu_has_native_bf16() else "this CPU has no native bf16: bf16 is emulated and slow"
            return Precision(torch.bfloat16, "bf16", note)
        if requested == "fp32" or net is None or not cpu_has_native_bf16():
            return Precision(torch.float32, "fp32")
        db = probe_bf16_psnr(net, num_in_ch, key)
        if db >= BF16_PROBE_MIN_PSNR:
            return Precision(torch.bfloat16, "bf16", f"auto precision: bf16 (probe {db:.1f} dB vs fp32)")
        why = f"only {db:.1f} dB < {BF16_PROBE_MIN_PSNR:g}" if db == db else "not finite: the model's output has NaN values"
        return Precision(torch.float32, "fp32", f"auto precision: fp32 (bf16 probe {why})")
    if requested == "auto":
        return Precision(torch.float16, "fp16")
    return Precision(_DTYPES[requested], requested)
