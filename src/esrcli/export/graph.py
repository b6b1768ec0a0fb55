"""The generators' forward passes in plain operators, for tracing into ONNX.

esr's inference forward passes take fused oneDNN kernels, strips and sub-pixel
rewrites on the CPU; an exporter should see the textbook graph instead: the same weights
(shared, not copied) and the same arithmetic as Real-ESRGAN's reference networks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from esrcli.archs import RRDBNet, SRVGGNetCompact
from esrcli.errors import WeightsError

__all__ = ["plain_forward_module"]


class _PlainRRDBNet(nn.Module):
    """RRDBNet (ESRGAN Sec. 3.1): pixel-unshuffle for x2/x1, RRDB trunk, two nearest x2
    upsamplings with a conv and LeakyReLU(0.2) each, conv_hr, conv_last."""

    def __init__(self, net: RRDBNet) -> None:
        super().__init__()
        self.net = net

    @staticmethod
    def _rdb(m: nn.Module, x: Tensor) -> Tensor:
        x1 = F.leaky_relu(m.conv1(x), 0.2)
        x2 = F.leaky_relu(m.conv2(torch.cat((x, x1), 1)), 0.2)
        x3 = F.leaky_relu(m.conv3(torch.cat((x, x1, x2), 1)), 0.2)
        x4 = F.leaky_relu(m.conv4(torch.cat((x, x1, x2, x3), 1)), 0.2)
        x5 = m.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x

    def forward(self, x: Tensor) -> Tensor:
        n = self.net
        if n.unshuffle > 1:
            x = F.pixel_unshuffle(x, n.unshuffle)
        feat = n.conv_first(x)
        body = feat
        for block in n.body:
            out = self._rdb(block.rdb3, self._rdb(block.rdb2, self._rdb(block.rdb1, body)))
            body = out * 0.2 + body
        feat = feat + n.conv_body(body)
        feat = F.leaky_relu(n.conv_up1(F.interpolate(feat, scale_factor=2.0, mode="nearest")), 0.2)
        feat = F.leaky_relu(n.conv_up2(F.interpolate(feat, scale_factor=2.0, mode="nearest")), 0.2)
        return n.conv_last(F.leaky_relu(n.conv_hr(feat), 0.2))


class _PlainSRVGG(nn.Module):
    """SRVGGNetCompact: conv/activation body, PixelShuffle, plus the nearest- or bilinear-upsampled input."""

    def __init__(self, net: SRVGGNetCompact) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        n = self.net
        out = x
        for layer in n.body[:-1]:
            if isinstance(layer, nn.Conv2d):
                out = layer(out)
            elif isinstance(layer, nn.PReLU):
                out = F.prelu(out, layer.weight)
            elif isinstance(layer, nn.LeakyReLU):
                out = F.leaky_relu(out, layer.negative_slope)
            else:
                out = F.relu(out)
        out = F.pixel_shuffle(n.body[-1](out), n.scale)
        if n.upsample == "bilinear":
            return out + F.interpolate(x, scale_factor=float(n.scale), mode="bilinear", align_corners=False)
        return out + F.interpolate(x, scale_factor=float(n.scale), mode="nearest")


def plain_forward_module(net: nn.Module) -> nn.Module:
    """Wrap a generator in a module whose forward uses plain operators only.

    Shapes: ``(B, C, H, W)`` -> ``(B, C, H*scale, W*scale)``, same dtype as the weights.

    Raises:
        WeightsError: not an RRDBNet or SRVGGNetCompact.
    """
    if isinstance(net, RRDBNet):
        return _PlainRRDBNet(net).eval()
    if isinstance(net, SRVGGNetCompact):
        return _PlainSRVGG(net).eval()
    raise WeightsError(f"cannot export {type(net).__name__}: only RRDBNet and SRVGGNetCompact")
