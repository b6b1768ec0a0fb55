"""SRVGGNetCompact, the small plain-VGG generator of Real-ESRGAN's compact models.

Source: Real-ESRGAN repository (realesr-animevideov3, realesr-general-x4v3): a stack of
3x3 convolutions at low resolution, a PixelShuffle, and a nearest-upsampled copy of the
input added as a global residual.

Key layout (``body`` is a ModuleList): ``body.0`` conv in, ``body.1`` activation
(PReLU weights ``(num_feat,)`` when ``act_type="prelu"``), then ``num_conv`` pairs of conv
and activation, then ``body.{2*num_conv+2}`` the conv to ``num_out_ch * scale**2``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from esrcli.archs._onednn import ONES, fused_conv_ops, fused_path

__all__ = ["SRVGGNetCompact", "ACT_TYPES", "UPSAMPLE_MODES", "upsample_input", "compiled_prelu_backward_error"]

ACT_TYPES = ("relu", "prelu", "leakyrelu")
#: How the input is enlarged for the global residual: ``nearest`` (Real-ESRGAN's compact
#: models) or ``bilinear`` (esr's compact models: the network then only adds detail to a
#: smooth image instead of also having to hide the nearest-neighbour blocks).
UPSAMPLE_MODES = ("nearest", "bilinear")


def _prelu_grads_fused(g: Tensor, x: Tensor, wv: Tensor) -> tuple[Tensor, Tensor]:
    """Both PReLU gradients (per-channel slopes ``wv`` of shape ``(1, C, 1, 1)``) in one pass
    once compiled: ``grad_x`` in ``g``'s dtype and ``grad_w`` of shape ``(C,)`` in float32."""
    grad_x = torch.where(x > 0, g, g * wv)
    grad_w = (x.clamp(max=0).float() * g.float()).sum((0, 2, 3))
    return grad_x, grad_w


class _CompiledPReLUGrads:
    """:func:`_prelu_grads_fused` through ``torch.compile``, built on first use; after a
    failure (no C++ compiler, an unsupported platform) it stays off and keeps the reason."""

    def __init__(self) -> None:
        self._fn: Any = None
        self.error: str | None = None

    def __call__(self, g: Tensor, x: Tensor, wv: Tensor) -> tuple[Tensor, Tensor] | None:
        if self.error is not None:
            return None
        try:
            if self._fn is None:
                self._fn = torch.compile(_prelu_grads_fused)
            return self._fn(g, x, wv)
        except Exception as exc:  # noqa: BLE001 - any compiler failure means: use the eager kernels
            text = str(exc).strip()
            self.error = f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
            return None


_COMPILED_PRELU_GRADS = _CompiledPReLUGrads()


def compiled_prelu_backward_error() -> str | None:
    """Why the compiled PReLU backward (``SRVGGNetCompact.use_compiled_prelu_backward``) fell
    back to the eager kernels in this process, or ``None`` while it has not failed."""
    return _COMPILED_PRELU_GRADS.error


class _PReLUFunction(torch.autograd.Function):
    """PReLU with a faster CPU backward than ATen's ``_prelu_kernel_backward``.

    Same forward (``F.prelu``). The eager backward uses only vectorised ops, with
    ``prelu(x) = w*x + (1 - w)*relu(x)``:

    * ``grad_x = w*g + (1 - w)*relu_backward(g, x)`` (one ``lerp``)
    * ``grad_w = sum over (B, H, W) of g*min(x, 0)``

    Measured on 2 CPU cores for a ``(4, 64, 64, 64)`` channels_last tensor: 1.3 ms in bf16
    and 0.6 ms in fp32 against ATen's 3.7 / 3.0 ms, which made the PReLU backward 20% of a
    SRVGGNetCompact training step. Results equal ATen's up to rounding. With ``compiled``
    (per-channel slopes on the CPU) both gradients come from one ``torch.compile``-generated
    loop instead: 0.3 ms in bf16, the training step 8% faster.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, compiled: bool) -> Tensor:  # noqa: D102
        w = weight.to(x.dtype)  # autocast would cast the weight for F.prelu too
        ctx.save_for_backward(x, w)
        ctx.weight_dtype = weight.dtype
        ctx.compiled = compiled
        return F.prelu(x, w)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, Tensor | None, None]:  # noqa: D102
        x, w = ctx.saved_tensors
        wv = w.view(1, -1, 1, 1)
        if w.numel() > 1 and all(ctx.needs_input_grad[:2]):
            grads = None
            if torch.compiler.is_compiling():
                # Traced by train.compile: inductor turns this formulation into one fast loop
                # (the lerp/threshold one below into a loop 4x slower, 1.1 ms per layer).
                grads = _prelu_grads_fused(g, x, wv)
            elif ctx.compiled and x.device.type == "cpu":
                grads = _COMPILED_PRELU_GRADS(g, x, wv)  # None: compiling failed, eager below
            if grads is not None:
                return grads[0], grads[1].to(ctx.weight_dtype), None
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            # w*g + (1 - w)*g_pos == lerp(g_pos, g, w)
            grad_x = torch.lerp(torch.ops.aten.threshold_backward(g, x, 0), g, wv)
        if ctx.needs_input_grad[1]:
            dims = (0, 1, 2, 3) if w.numel() == 1 else (0, 2, 3)
            grad_w = x.clamp(max=0).mul_(g).sum(dims).reshape(w.shape).to(ctx.weight_dtype)
        return grad_x, grad_w, None


class _PReLU(nn.PReLU):
    """``nn.PReLU`` (same parameter name ``weight``) with :class:`_PReLUFunction`'s backward
    for 4-D inputs when autograd records; plain ``F.prelu`` otherwise."""

    compiled_backward = False  # set by SRVGGNetCompact.use_compiled_prelu_backward

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 4 and torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
            return _PReLUFunction.apply(x, self.weight, self.compiled_backward)
        return F.prelu(x, self.weight.to(x.dtype))


def upsample_input(x: Tensor, scale: int, mode: str) -> Tensor:
    """The global residual of :class:`SRVGGNetCompact`: ``x`` enlarged ``scale`` times.

    Args:
        x: ``(B, C, H, W)`` float.
        scale: the factor.
        mode: ``"nearest"`` or ``"bilinear"`` (``align_corners=False``).

    Returns:
        ``(B, C, H*scale, W*scale)``, ``x``'s dtype.
    """
    if mode == "nearest":
        return F.interpolate(x, scale_factor=scale, mode="nearest")
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


def _activation(act_type: str, num_feat: int) -> nn.Module:
    if act_type == "relu":
        return nn.ReLU(inplace=True)
    if act_type == "prelu":
        return _PReLU(num_parameters=num_feat)
    return nn.LeakyReLU(negative_slope=0.1, inplace=True)


class SRVGGNetCompact(nn.Module):
    """Compact SR network: conv/activation body, PixelShuffle, nearest-upsampled residual.

    Args:
        num_in_ch: image channels in.
        num_out_ch: image channels out.
        num_feat: body channels (64 in the official models).
        num_conv: hidden conv layers between the first and last conv (16 or 32 officially).
        scale: upscaling factor (>= 1).
        act_type: ``"relu"``, ``"prelu"`` (official models) or ``"leakyrelu"`` (slope 0.1).
        upsample: the global residual's enlargement of the input, ``"nearest"`` (official
            models) or ``"bilinear"`` (half-pixel centres, ``align_corners=False``). A plain
            stack of 3x3 convolutions learns to turn nearest-neighbour blocks into smooth
            gradients only slowly: esr-general-x4-net after 22,000 CPU iterations still
            made block edges 2.2x as strong as the edges inside its 4x4 blocks on the
            README's example; on a bilinear residual that is no longer its job.

    Shapes:
        ``(B, num_in_ch, H, W)`` float in ``[0, 1]`` -> ``(B, num_out_ch, H*scale, W*scale)``.

    Raises:
        ValueError: unknown ``act_type``, ``scale < 1`` or non-positive sizes.
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_conv: int = 16,
        scale: int = 4,
        act_type: str = "prelu",
        upsample: str = "nearest",
    ) -> None:
        super().__init__()
        if act_type not in ACT_TYPES:
            raise ValueError(f"act_type: expected one of {', '.join(ACT_TYPES)}, got {act_type!r}")
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample: expected one of {', '.join(UPSAMPLE_MODES)}, got {upsample!r}")
        if scale < 1 or min(num_in_ch, num_out_ch, num_feat) < 1 or num_conv < 0:
            raise ValueError("SRVGGNetCompact: scale, channels must be >= 1 and num_conv >= 0")
        if num_out_ch != num_in_ch:
            # The global residual adds the upsampled input to the output.
            raise ValueError(f"SRVGGNetCompact: num_out_ch ({num_out_ch}) must equal num_in_ch ({num_in_ch})")
        self.scale = scale
        self.num_in_ch = num_in_ch
        self.act_type = act_type
        self.upsample = upsample
        body: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), _activation(act_type, num_feat)]
        for _ in range(num_conv):
            body += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), _activation(act_type, num_feat)]
        body.append(nn.Conv2d(num_feat, num_out_ch * scale * scale, 3, 1, 1))
        self.body = nn.ModuleList(body)
        self.upsampler = nn.PixelShuffle(scale)
        self._init_weights()

    def _init_weights(self) -> None:
        """Variance-preserving initialisation, so a fresh network trains.

        With PyTorch's default conv init (``kaiming_uniform_(a=sqrt(5))``, weight variance
        ``1/(3 fan_in)``) each conv + PReLU layer shrinks the signal variance about 5x; over
        the 33 layers of the 64/32 model that is ~1e-23, so the body's output and the
        gradients reaching its first layers vanish (measured: Adam second moments of ~1e-38
        at ``body.0`` after 5,890 iterations, PReLU slopes never moved from 0.25) and the
        network stays the nearest-neighbour upsampling of its global residual. Kaiming-normal
        init with the activation's slope (He et al. 2015, Sec. 2.2) keeps the variance; the last
        conv is scaled by 0.1 so training starts near that nearest-neighbour baseline. Loaded
        weights replace all of this. Skipped on the ``meta`` device.
        """
        slope = {"prelu": 0.25, "leakyrelu": 0.1, "relu": 0.0}[self.act_type]
        convs = [m for m in self.body if isinstance(m, nn.Conv2d)]
        if convs[0].weight.is_meta:
            # Nothing to fill on the meta device; and random fills there go through
            # Python decompositions whose first use costs about a second of imports.
            return
        for conv in convs:
            nn.init.kaiming_normal_(conv.weight, a=slope, mode="fan_in", nonlinearity="leaky_relu")
            nn.init.zeros_(conv.bias)
        with torch.no_grad():
            convs[-1].weight.mul_(0.1)

    def use_compiled_prelu_backward(self, enabled: bool = True) -> None:
        """Compute the PReLU gradients on the CPU with one ``torch.compile``-generated kernel
        per layer (needs a C++ compiler; compiled on the first backward pass, about 20 s the
        first time on a machine, seconds once inductor's cache has it). Where compiling fails
        the eager kernels are used and :func:`compiled_prelu_backward_error` says why.
        Changes no result beyond rounding; no effect on inference or other devices."""
        for layer in self.body:
            if isinstance(layer, _PReLU):
                layer.compiled_backward = enabled

    def forward(self, x: Tensor) -> Tensor:
        out = x
        for layer in self.body[:-1]:
            out = layer(out)
        last = self.body[-1]
        if self.upsample == "nearest" and fused_path(out, last.weight) and x.dtype == out.dtype:
            return self.upsampler(self._last_conv_with_residual(x, out))
        out = self.upsampler(last(out))
        return out + upsample_input(x, self.scale, self.upsample)

    def _last_conv_with_residual(self, x: Tensor, feat: Tensor) -> Tensor:
        """The last conv with the global residual added before the PixelShuffle.

        The nearest-upsampled input, in PixelShuffle's channel order (channel ``c * s**2 + k``
        holds input channel ``c``), is built at low resolution and the conv is accumulated
        into it by oneDNN's sum post-op: one rounding instead of two in bf16, and no
        upsampling of a 3-channel channels_last image (slow in ATen: 7 ms at 1024x1024).
        Measured on 2 Zen 4 cores, 256x256 input at x4 in bf16: last conv, shuffle and
        residual 13 ms against 17.5 ms.
        """
        b, c, h, w = x.shape
        s2 = self.scale * self.scale
        acc = torch.empty((b, c * s2, h, w), dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
        acc.permute(0, 2, 3, 1).view(b, h, w, c, s2).copy_(x.permute(0, 2, 3, 1)[..., None])
        last = self.body[-1]
        return fused_conv_ops().conv_add_(acc, feat, last.weight, last.bias, ONES, ONES, ONES, 1, "add", 1.0, None, [], None)  # type: ignore[union-attr]
