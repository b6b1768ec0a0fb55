"""Loading a generator for inference: the one place that the batch engine, the video path and
:class:`esrcli.Upscaler` get their network from.

:func:`load_upscale_model` resolves the model (a file or an embedded name, through
:func:`esrcli.weights.load_model`), checks that it is an image generator, picks the device
and the compute precision and moves the network there. An option that changes the network
at load time is one more field of :class:`ModelSpec`, applied in :func:`_load_network`.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Optional, Union

import torch
from torch import nn

from esrcli.errors import WeightsError
from esrcli.infer.device import Precision, prepare_model, select_device, select_precision
from esrcli.memory import release_memory

__all__ = ["GENERATOR_ARCHS", "ModelSpec", "UpscaleModel", "load_upscale_model"]

#: Architectures that :func:`load_upscale_model` accepts.
GENERATOR_ARCHS = ("RRDBNet", "SRVGGNetCompact")


@dataclass(frozen=True)
class ModelSpec:
    """Which network to load and how it runs.

    Attributes:
        model: a model file (``.safetensors`` / ``.pth``) or an embedded model name;
            ``None`` = the embedded default (:func:`esrcli.weights.default_model_name`).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``
            (:func:`esrcli.infer.select_device`), or a :class:`torch.device`.
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16``
            (:func:`esrcli.infer.select_precision`). With ``auto``, 16-bit images run in fp32.
        sharpness: ``None`` for the model as stored; else ``0..1``: ESRGAN network
            interpolation, once at load, between an embedded model and its PSNR-stage
            partner (:func:`esrcli.weights.load_model`'s ``sharpness``).
    """

    model: Union[str, "os.PathLike[str]", None] = None
    device: Union[str, torch.device] = "auto"
    precision: str = "auto"
    sharpness: Optional[float] = None


@dataclass
class UpscaleModel:
    """A loaded generator, ready for :func:`esrcli.infer.upscale_image`.

    Attributes:
        name: the model as given (file path or embedded name).
        info: its :class:`esrcli.weights.ModelInfo` (``arch``, ``scale``, ``params``).
        device: where it runs.
        precision: the chosen :class:`esrcli.infer.Precision`.
        spec: the :class:`ModelSpec` it was loaded from.
    """

    name: str
    info: object
    device: torch.device
    precision: Precision
    spec: ModelSpec
    _nets: dict[torch.dtype, nn.Module] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def net(self) -> nn.Module:
        """The network in the chosen precision: ``(B, C, h, w)`` in ``[0, 1]`` -> ``(B, C, h*scale, w*scale)``."""
        return self._nets[self.precision.dtype]

    def net_for(self, bit_depth: int) -> nn.Module:
        """The network for an image of ``bit_depth`` (8 or 16).

        Automatic half precision would round 16-bit samples to about 8-11 bits: under
        ``precision="auto"`` those run in fp32 (that copy of the network is loaded when
        first needed, so memory stays low otherwise). Safe to call from several threads.
        """
        dtype = torch.float32 if self.spec.precision.strip().lower() == "auto" and bit_depth == 16 else self.precision.dtype
        with self._lock:
            if dtype not in self._nets:
                net, _ = _load_network(self.spec, self.name)
                self._nets[dtype] = prepare_model(net, self.device, dtype)
                del net
                release_memory()
            return self._nets[dtype]


def _model_name(spec: ModelSpec) -> str:
    if spec.model is not None:
        return str(spec.model)
    from esrcli.weights import default_model_name

    name = default_model_name()
    if name is None:
        raise WeightsError("no default model is embedded yet; pass --model NAME|PATH (a .safetensors or .pth file)")
    return name


def _load_network(spec: ModelSpec, name: str) -> tuple[nn.Module, object]:
    """The float32 network on the CPU and its info, with every load-time option of ``spec`` applied.

    Raises:
        WeightsError: see :func:`load_upscale_model`.
    """
    from esrcli import weights  # looked up at call time: tests and later changes hook in here

    net, info = weights.load_model(name, device="cpu", sharpness=spec.sharpness)
    if info.arch not in GENERATOR_ARCHS:
        raise WeightsError(f"{name}: {info.arch} is not an image generator")
    return net, info


def load_upscale_model(spec: ModelSpec = ModelSpec()) -> UpscaleModel:
    """Load a generator for inference as ``spec`` says.

    Args:
        spec: the :class:`ModelSpec`.

    Returns:
        The :class:`UpscaleModel` (network on its device, in eval mode, no grads, in the
        chosen precision; on the CPU in channels_last layout). ``precision.note`` carries a
        one-line explanation when the choice was probed or differs from the request.

    Raises:
        WeightsError: no default model, no such file or model name, an unreadable file, or
            a network that is not an image generator (message names the model).
        ConfigError: an unknown or unavailable device, an unknown precision.
    """
    name = _model_name(spec)
    device = spec.device if isinstance(spec.device, torch.device) else select_device(spec.device)
    net, info = _load_network(spec, name)
    prec = select_precision(spec.precision, device, net, int(info.params.get("num_in_ch", 3)), key=(name, spec.sharpness))
    model = UpscaleModel(name, info, device, prec, spec)
    model._nets[prec.dtype] = prepare_model(net, device, prec.dtype)
    del net
    release_memory()
    return model
