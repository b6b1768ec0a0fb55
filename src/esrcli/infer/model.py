"""Loading a generator for inference: the one place that the batch engine, the video path and
:class:`esrcli.Upscaler` get their network from.

:func:`load_upscale_model` resolves the model (a file or an embedded name, through
:func:`esrcli.weights.load_model`), checks that it is an image generator, picks the device
and the compute precision and moves the network there. An option that changes the network
at load time is one more field of :class:`ModelSpec`, applied in :func:`_load_network`.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional, Union

import torch
from torch import nn

from esrcli.errors import ConfigError, WeightsError
from esrcli.infer.device import Precision, prepare_model, select_device, select_precision
from esrcli.memory import release_memory

__all__ = ["DENOISE_CACHE", "DENOISE_STEP", "GENERATOR_ARCHS", "ModelSpec", "UpscaleModel", "load_upscale_model", "round_strength"]

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
        denoise: ``None`` for the model as stored; else a strength ``0..1``: network
            interpolation, once at load, ``denoise * model + (1 - denoise) * partner``
            with the model's weak-denoise partner (:func:`esrcli.weights.load_model`'s
            ``denoise``). Per-image strengths: :meth:`UpscaleModel.net_for`'s ``denoise``.
    """

    model: Union[str, "os.PathLike[str]", None] = None
    device: Union[str, torch.device] = "auto"
    precision: str = "auto"
    sharpness: Optional[float] = None
    denoise: Optional[float] = None


#: Per-image denoise strengths are rounded to this step, so that a folder of images
#: re-interpolates the weights at most ``1 / DENOISE_STEP + 1`` times.
DENOISE_STEP = 0.05
#: Interpolated networks kept per model (least recently used dropped first).
DENOISE_CACHE = 8


def round_strength(strength: float) -> float:
    """``strength`` clipped to ``[0, 1]`` and rounded to :data:`DENOISE_STEP`.

    Raises:
        ConfigError: not a finite number.
    """
    s = float(strength)
    if not math.isfinite(s):
        raise ConfigError(f"denoise: strength must be a number in [0, 1], got {strength}")
    return round(min(1.0, max(0.0, s)) / DENOISE_STEP) * DENOISE_STEP


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
    _pair: tuple | None = field(default=None, repr=False)  # (normal, weak, info) state dicts
    _blends: "OrderedDict[tuple[torch.dtype, float], nn.Module]" = field(default_factory=OrderedDict, repr=False)

    @property
    def net(self) -> nn.Module:
        """The network in the chosen precision: ``(B, C, h, w)`` in ``[0, 1]`` -> ``(B, C, h*scale, w*scale)``."""
        return self._nets[self.precision.dtype]

    def net_for(self, bit_depth: int, denoise: float | None = None) -> nn.Module:
        """The network for an image of ``bit_depth`` (8 or 16).

        Automatic half precision would round 16-bit samples to about 8-11 bits: under
        ``precision="auto"`` those run in fp32 (that copy of the network is loaded when
        first needed, so memory stays low otherwise). Safe to call from several threads.

        Args:
            bit_depth: 8 or 16.
            denoise: ``None`` for the network of :attr:`spec`; else a per-image strength
                (``--denoise auto``): the model interpolated with its weak-denoise partner
                at ``strength * model + (1 - strength) * partner``, the strength clipped to
                ``[0, 1]`` and rounded to :data:`DENOISE_STEP`; the
                :data:`DENOISE_CACHE` most recent strengths stay built.

        Raises:
            WeightsError: ``denoise`` for a model without a weak-denoise partner.
            ConfigError: ``denoise`` not a finite number, or given with ``spec.sharpness``.
        """
        dtype = torch.float32 if self.spec.precision.strip().lower() == "auto" and bit_depth == 16 else self.precision.dtype
        if denoise is not None:
            return self._blend(dtype, round_strength(denoise))
        with self._lock:
            if dtype not in self._nets:
                net, _ = _load_network(self.spec, self.name)
                self._nets[dtype] = prepare_model(net, self.device, dtype)
                del net
                release_memory()
            return self._nets[dtype]

    def check_denoise(self) -> None:
        """Load the weak-denoise pair now (per-image strengths need it).

        Raises:
            WeightsError: the model has no weak-denoise partner (one line naming the models
                that have one).
            ConfigError: the spec also asks for ``sharpness``.
        """
        from esrcli import weights

        if self.spec.sharpness is not None:
            raise ConfigError("sharpness and denoise: give one of them (no model has both partners yet)")
        with self._lock:
            if self._pair is None:
                self._pair = weights.read_denoise_pair(self.name)

    def _blend(self, dtype: torch.dtype, strength: float) -> nn.Module:
        from esrcli import weights

        self.check_denoise()
        key = (dtype, round(strength, 6))
        with self._lock:
            net = self._blends.get(key)
            if net is not None:
                self._blends.move_to_end(key)
                return net
            normal, weak, info = self._pair  # type: ignore[misc]
            sd = weights.denoise_state_dict(normal, weak, strength)
            net = prepare_model(weights.build_model(sd, info, "cpu", self.name), self.device, dtype)
            self._blends[key] = net
            while len(self._blends) > DENOISE_CACHE:
                self._blends.popitem(last=False)
            return net


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

    net, info = weights.load_model(name, device="cpu", sharpness=spec.sharpness, denoise=spec.denoise)
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
    prec = select_precision(spec.precision, device, net, int(info.params.get("num_in_ch", 3)), key=(name, spec.sharpness, spec.denoise))
    model = UpscaleModel(name, info, device, prec, spec)
    model._nets[prec.dtype] = prepare_model(net, device, prec.dtype)
    del net
    release_memory()
    return model
