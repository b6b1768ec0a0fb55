"""RRDBNet, the ESRGAN generator, with BasicSR / Real-ESRGAN state-dict key names.

Source: Wang et al., "ESRGAN: Enhanced Super-Resolution Generative Adversarial Networks",
ECCVW 2018, Sec. 3.1 (Residual-in-Residual Dense Block, residual scaling 0.2); the
pixel-unshuffle front end for x2/x1 follows Real-ESRGAN (Wang et al., ICCVW 2021, Sec. 3.3).

Key layout (so official ``RealESRGAN_x4plus.pth`` / ``RealESRGAN_x2plus.pth`` load strictly)::

    conv_first.{weight,bias}
    body.N.rdb{1,2,3}.conv{1..5}.{weight,bias}
    conv_body, conv_up1, conv_up2, conv_hr, conv_last
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from esrcli.archs._onednn import ONES, fused_conv_ops, fused_path

__all__ = ["ResidualDenseBlock", "RRDB", "RRDBNet"]

_SLOPE = 0.2  # LeakyReLU negative slope
_BETA = 0.2  # residual scaling


def _conv_lrelu(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """``leaky_relu(conv(x), 0.2)``, as one oneDNN kernel where :func:`fused_path` allows."""
    if fused_path(x, conv.weight):
        return fused_conv_ops().conv(x, conv.weight, conv.bias, ONES, ONES, ONES, 1, "leaky_relu", [_SLOPE], "")  # type: ignore[union-attr]
    return F.leaky_relu(conv(x), _SLOPE, inplace=True)


def _weights_key(convs: Iterable[nn.Conv2d]) -> tuple[object, ...]:
    """What identifies the current weights of ``convs`` (storage, in-place version, dtype,
    device): weights derived from them and cached are rebuilt when it changes."""
    return tuple((c.weight.data_ptr(), c.weight._version, c.weight.dtype, c.weight.device) for c in convs)


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convolutions with a scaled residual (ESRGAN Fig. 4).

    Args:
        num_feat: channels of the block input/output.
        num_grow_ch: channels added by each of conv1..conv4 (growth rate).

    Shapes:
        ``(B, num_feat, H, W)`` -> ``(B, num_feat, H, W)``.
    """

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.num_feat = num_feat
        self.num_grow_ch = num_grow_ch
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self._init_weights()

        self._split_key: tuple[object, ...] | None = None
        self._split: list[list[Tensor]] = []

    def _init_weights(self) -> None:
        """ESRGAN's "smaller initialization" (Sec. 3.2; BasicSR's ``default_init_weights(...,
        0.1)``): Kaiming-normal (fan-in, gain sqrt(2)) weights scaled by 0.1 and zero biases,
        so each dense block starts close to the identity and the deep trunk trains stably from
        scratch. Skipped on the ``meta`` device (nothing to fill; building there must stay
        cheap), and loaded weights replace it anyway."""
        convs = (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5)
        if convs[0].weight.is_meta:
            return
        with torch.no_grad():
            for conv in convs:
                nn.init.kaiming_normal_(conv.weight, a=0.0, mode="fan_in", nonlinearity="leaky_relu")
                conv.weight.mul_(0.1)
                nn.init.zeros_(conv.bias)

    def _split_weights(self) -> list[list[Tensor]]:
        """Each conv's weight cut along its input channels into the pieces that act on
        ``x, x1, x2, x3, x4`` (channels_last copies), rebuilt when a weight changes."""
        convs = (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5)
        key = _weights_key(convs)
        if key != self._split_key:
            bounds = [0, self.num_feat] + [self.num_feat + (k + 1) * self.num_grow_ch for k in range(4)]
            self._split = [
                [c.weight[:, bounds[k] : bounds[k + 1]].contiguous(memory_format=torch.channels_last) for k in range(j + 1)]
                for j, c in enumerate(convs)
            ]
            self._split_key = key
        return self._split

    def _forward_split(self, x: Tensor) -> Tensor:
        """Inference forward without the concatenations, on oneDNN's fused kernels.

        ``conv_j(cat(x, x1, .., x_{j-1}))`` equals ``sum_k conv(x_k, W_j[:, slice_k])``: the first
        term is a plain convolution (with the bias) and each further one is accumulated in place
        by oneDNN's sum post-op, so no concatenated tensor is ever copied together. Same
        arithmetic as ``forward`` up to rounding (in bf16, each partial sum is rounded once).
        Measured on 2 Zen 4 cores for one block on a 256x256 bf16 input: 82 ms against 108 ms
        with ``torch.cat`` (the copies were 10% of RRDBNet's time and the narrower convolutions
        run as fast per FLOP).
        """
        ops = fused_conv_ops()
        conv_pw, conv_add_, one = ops.conv, ops.conv_add_, ONES  # type: ignore[union-attr]
        split = self._split_weights()
        feats = [x, conv_pw(x, split[0][0], self.conv1.bias, one, one, one, 1, "leaky_relu", [_SLOPE], "")]
        for j, conv in enumerate((self.conv2, self.conv3, self.conv4, self.conv5), start=1):
            acc = conv_pw(x, split[j][0], conv.bias, one, one, one, 1, "none", [], "")
            for k in range(1, j + 1):
                acc = conv_add_(acc, feats[k], split[j][k], None, one, one, one, 1, "add", 1.0, None, [], None)
            feats.append(F.leaky_relu_(acc, _SLOPE) if j < 4 else acc)
        return torch.add(x, feats[5], alpha=_BETA, out=feats[5])  # one pass for x5 * 0.2 + x

    def forward(self, x: Tensor) -> Tensor:
        if fused_path(x, self.conv1.weight):
            return self._forward_split(x)
        # In-place activations and scaling act on fresh conv outputs only: same numerics
        # as ``x5 * 0.2 + x``, fewer temporaries; autograd-safe (convs do not save outputs).
        x1 = F.leaky_relu(self.conv1(x), _SLOPE, inplace=True)
        x2 = F.leaky_relu(self.conv2(torch.cat((x, x1), 1)), _SLOPE, inplace=True)
        x3 = F.leaky_relu(self.conv3(torch.cat((x, x1, x2), 1)), _SLOPE, inplace=True)
        x4 = F.leaky_relu(self.conv4(torch.cat((x, x1, x2, x3), 1)), _SLOPE, inplace=True)
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5.mul_(_BETA).add_(x)


class RRDB(nn.Module):
    """Residual in Residual Dense Block: three dense blocks and an outer scaled residual.

    Shapes:
        ``(B, num_feat, H, W)`` -> ``(B, num_feat, H, W)``.
    """

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: Tensor) -> Tensor:
        out = self.rdb3(self.rdb2(self.rdb1(x)))
        if torch.is_grad_enabled():
            return out.mul_(_BETA).add_(x)
        return torch.add(x, out, alpha=_BETA, out=out)  # one pass; ``out=`` has no autograd


class RRDBNet(nn.Module):
    """The ESRGAN / Real-ESRGAN generator.

    For ``scale`` 2 and 1 the input is first pixel-unshuffled by 2 and 4, so the trunk
    always runs at 1/4 of the output resolution and always upsamples x4 (two nearest x2
    steps with a conv each), exactly as Real-ESRGAN's x2plus model does.

    Args:
        num_in_ch: image channels in (3 for RGB).
        num_out_ch: image channels out.
        scale: upscaling factor, 1, 2 or 4.
        num_feat: trunk channels (64 in ESRGAN).
        num_block: number of RRDB blocks (23 in ESRGAN, 6 in the anime x4 model).
        num_grow_ch: dense-block growth channels (32).

    Shapes:
        ``(B, num_in_ch, H, W)`` float in ``[0, 1]`` -> ``(B, num_out_ch, H*scale, W*scale)``.
        For scale 2 (1), H and W must be divisible by 2 (4).

    Raises:
        ValueError: a scale other than 1, 2 or 4, or a non-positive size.
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
    ) -> None:
        super().__init__()
        if scale not in (1, 2, 4):
            raise ValueError(f"scale: RRDBNet supports 1, 2 or 4, got {scale}")
        if min(num_in_ch, num_out_ch, num_feat, num_grow_ch) < 1 or num_block < 0:
            raise ValueError("RRDBNet: channel counts must be >= 1 and num_block >= 0")
        self.scale = scale
        self.num_in_ch = num_in_ch
        self.unshuffle = {4: 1, 2: 2, 1: 4}[scale]
        first_in = num_in_ch * self.unshuffle**2
        self.conv_first = nn.Conv2d(first_in, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

        self._subpixel_key: tuple[object, ...] | None = None
        self._subpixel: dict[str, tuple[Tensor, Tensor]] = {}

    # Trunk rows of context the upsampling tail needs on each side of a strip: its four 3x3
    # convs (one at 2x, three at 4x) reach 2 + 3 = 5 output rows, i.e. under 2 trunk rows.
    _TAIL_HALO = 2
    # Elements of one full-resolution feature map per strip (halo included) when running
    # without autograd: in bf16 just under 32 MB, glibc's largest mmap threshold, so that
    # inside esrcli.memory.keep_freed_memory the strips reuse heap pages instead of faulting in
    # fresh mmaps (about 100,000 page faults per 256x256 forward otherwise).
    _TAIL_STRIP_ELEMENTS = 15 << 20

    def _subpixel_weights(self) -> dict[str, tuple[Tensor, Tensor]]:
        """``conv_up1``/``conv_up2`` as 2x2 convolutions on the un-upsampled input, one per
        output phase (see :meth:`_up_conv_lrelu`), rebuilt when a weight changes.

        Each entry: weight ``(4 * C_out, C_in, 2, 2)`` (phases ``dy * 2 + dx`` stacked along
        the output channels, channels_last) and bias ``(4 * C_out,)``, in the conv's dtype.
        A phase's taps are sums of the 3x3 taps that land on the same input pixel, added in
        float32 and rounded once.
        """
        convs = {"conv_up1": self.conv_up1, "conv_up2": self.conv_up2}
        key = _weights_key(convs.values())
        if key != self._subpixel_key:

            def merge(w: Tensor, dim: int, phase: int) -> Tensor:
                # Along one axis, nearest x2 maps the taps -1, 0, +1 of output phase 0 onto
                # input offsets -1, 0, 0, and those of phase 1 onto 0, 0, +1.
                a, b, c = w.unbind(dim)
                return torch.stack((a, b + c) if phase == 0 else (a + b, c), dim)

            subpixel = {}
            for name, conv in convs.items():
                w = conv.weight.float()
                phases = [merge(merge(w, 2, dy), 3, dx) for dy in (0, 1) for dx in (0, 1)]
                weight = torch.cat(phases).to(conv.weight.dtype).contiguous(memory_format=torch.channels_last)
                subpixel[name] = (weight, conv.bias.repeat(4))
            # Built whole, then published: threads running the same network (esrcli.infer.workers)
            # may rebuild it at once but never see a half-filled cache.
            self._subpixel, self._subpixel_key = subpixel, key
        return self._subpixel

    def _up_conv_lrelu(self, name: str, feat: Tensor) -> Tensor:
        """``leaky_relu(conv(nearest_x2(feat)))`` for ``conv_up1``/``conv_up2``.

        On the fused path without upsampling first (sub-pixel convolution): a 3x3 conv
        on a nearest-x2 input reads, for each of the four output phases ``(dy, dx)``, only a
        2x2 window of the original pixels, so one 2x2 conv with ``4 * C_out`` outputs and
        padding 1 computes all phases (output ``(H + 1, W + 1)``), and phase ``(dy, dx)`` at
        pixel ``(i, j)`` is its value at ``(i + dy, j + dx)``; four strided copies interleave
        them. Same function as the upsample-then-conv path up to rounding, with 4/9 of the
        multiply-adds (the two convs are 4% of RRDBNet x4's FLOPs) and no upsampled copy of
        the input. Measured on 2 Zen 4 cores in bf16, one 56-row strip of a 256-wide trunk:
        the x4 tail 98 ms against 119 ms.
        """
        conv = getattr(self, name)
        if not fused_path(feat, conv.weight):
            return _conv_lrelu(conv, F.interpolate(feat, scale_factor=2, mode="nearest"))
        weight, bias = self._subpixel_weights()[name]
        phases = fused_conv_ops().conv(feat, weight, bias, ONES, ONES, ONES, 1, "leaky_relu", [_SLOPE], "")  # type: ignore[union-attr]
        b, _, h, w = feat.shape
        c = conv.out_channels
        src = phases.permute(0, 2, 3, 1).view(b, h + 1, w + 1, 2, 2, c)
        out = torch.empty((b, c, 2 * h, 2 * w), dtype=phases.dtype, device=phases.device, memory_format=torch.channels_last)
        dst = out.permute(0, 2, 3, 1).view(b, h, 2, w, 2, c)
        for dy in (0, 1):
            for dx in (0, 1):
                dst[:, :, dy, :, dx].copy_(src[:, dy : dy + h, dx : dx + w, dy, dx])
        return out

    def _tail(self, feat: Tensor) -> Tensor:
        feat = self._up_conv_lrelu("conv_up1", feat)
        feat = self._up_conv_lrelu("conv_up2", feat)
        return self.conv_last(_conv_lrelu(self.conv_hr, feat))

    def _tail_in_strips(self, feat: Tensor, rows: int) -> Tensor:
        """The upsampling tail over horizontal strips of ``rows`` trunk rows (plus a halo).

        Identical to ``_tail(feat)``: every strip carries ``_TAIL_HALO`` rows of real context
        on each inner side, more than the tail's reach, and zero padding only at the image's
        own borders. Bounds inference memory: the x4 feature maps (``num_feat`` channels at
        16x the trunk's pixels) are the largest tensors of the network.
        """
        h, halo = feat.shape[2], self._TAIL_HALO
        parts = []
        for top in range(0, h, rows):
            bottom = min(h, top + rows)
            a, b = max(0, top - halo), min(h, bottom + halo)
            parts.append(self._tail(feat[:, :, a:b])[:, :, (top - a) * 4 : (bottom - a) * 4])
        return torch.cat(parts, dim=2)

    def forward(self, x: Tensor) -> Tensor:
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        b, c, h, w = feat.shape
        max_rows = max(4 * self._TAIL_HALO, self._TAIL_STRIP_ELEMENTS // max(1, b * c * w * 16) - 2 * self._TAIL_HALO)
        # Strips keep the CPU's working set in its caches; on a GPU they only add launches
        # (an H200, 1024x1024 fp16: 288 ms in strips, 275 ms whole).
        if not torch.is_grad_enabled() and feat.device.type == "cpu" and h > max_rows:
            strips = -(-h // max_rows)
            return self._tail_in_strips(feat, -(-h // strips))  # equal strips
        return self._tail(feat)
