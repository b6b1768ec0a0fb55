"""Discriminators for the GAN stage, with BasicSR / Real-ESRGAN state-dict key names.

* :class:`UNetDiscriminatorSN` - Real-ESRGAN's U-Net discriminator with spectral
  normalisation (Wang et al., ICCVW 2021, Sec. 3.4, Fig. 6); per-pixel realness map.
  Spectral norm uses ``torch.nn.utils.spectral_norm``, so the keys are
  ``convN.weight_orig``, ``convN.weight_u``, ``convN.weight_v`` and official ``net_d``
  files load strictly.
* :class:`VGGStyleDiscriminator` - ESRGAN's VGG-style discriminator (Wang et al., ECCVW
  2018; BasicSR ``VGGStyleDiscriminator``): one logit per image.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import spectral_norm

__all__ = ["UNetDiscriminatorSN", "VGGStyleDiscriminator"]

_SLOPE = 0.2


class UNetDiscriminatorSN(nn.Module):
    """U-Net discriminator with spectral normalisation (Real-ESRGAN).

    Layout: ``conv0`` (plain), ``conv1..conv3`` SN 4x4 stride-2 down, bilinear x2 up with
    SN ``conv4..conv6`` (skip connections add the matching encoder features), SN
    ``conv7``, ``conv8``, plain ``conv9`` to one channel.

    Args:
        num_in_ch: image channels in.
        num_feat: base channels (64).
        skip_connection: add encoder features in the decoder (True in Real-ESRGAN).

    Shapes:
        ``(B, num_in_ch, H, W)`` -> ``(B, 1, H, W)`` logits; H and W must be divisible by 8.
        With ``return_features=True``: ``(logits, [x0, x1, x2, x3, x4, x5, x6, x7, x8])``, the
        activations after ``conv0`` .. ``conv8`` (the input of feature matching).
    """

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, skip_connection: bool = True) -> None:
        super().__init__()
        self.skip_connection = skip_connection
        nf = num_feat
        self.conv0 = nn.Conv2d(num_in_ch, nf, 3, 1, 1)
        self.conv1 = spectral_norm(nn.Conv2d(nf, nf * 2, 4, 2, 1, bias=False))
        self.conv2 = spectral_norm(nn.Conv2d(nf * 2, nf * 4, 4, 2, 1, bias=False))
        self.conv3 = spectral_norm(nn.Conv2d(nf * 4, nf * 8, 4, 2, 1, bias=False))
        self.conv4 = spectral_norm(nn.Conv2d(nf * 8, nf * 4, 3, 1, 1, bias=False))
        self.conv5 = spectral_norm(nn.Conv2d(nf * 4, nf * 2, 3, 1, 1, bias=False))
        self.conv6 = spectral_norm(nn.Conv2d(nf * 2, nf, 3, 1, 1, bias=False))
        self.conv7 = spectral_norm(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv8 = spectral_norm(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(nf, 1, 3, 1, 1)

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        def act(t: Tensor) -> Tensor:
            return F.leaky_relu(t, _SLOPE)

        def up(t: Tensor) -> Tensor:
            return F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)

        x0 = act(self.conv0(x))
        x1 = act(self.conv1(x0))
        x2 = act(self.conv2(x1))
        x3 = act(self.conv3(x2))
        x4 = act(self.conv4(up(x3)))
        if self.skip_connection:
            x4 = x4 + x2
        x5 = act(self.conv5(up(x4)))
        if self.skip_connection:
            x5 = x5 + x1
        x6 = act(self.conv6(up(x5)))
        if self.skip_connection:
            x6 = x6 + x0
        x7 = act(self.conv7(x6))
        x8 = act(self.conv8(x7))
        out = self.conv9(x8)
        if return_features:
            return out, [x0, x1, x2, x3, x4, x5, x6, x7, x8]
        return out


class VGGStyleDiscriminator(nn.Module):
    """ESRGAN's VGG-style discriminator for 128x128 or 256x256 patches.

    Five (six for 256) stages of a 3x3 conv and a 4x4 stride-2 conv with BatchNorm and
    LeakyReLU(0.2), then ``linear1`` (to 100) and ``linear2`` (to 1).
    Keys: ``conv0_0``, ``conv0_1``, ``bn0_1``, ``conv1_0``, ``bn1_0``, ..., ``linear1``, ``linear2``.

    Args:
        num_in_ch: image channels in.
        num_feat: base channels (64).
        input_size: patch size, 128 or 256.

    Shapes:
        ``(B, num_in_ch, input_size, input_size)`` -> ``(B, 1)`` logits. With
        ``return_features=True``: ``(logits, features)``, the activation after each conv
        (``conv0_0`` .. ``convN_1``) and after ``linear1``.

    Raises:
        ValueError: ``input_size`` not 128/256 (constructor), or an input of another size (forward).
    """

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, input_size: int = 128) -> None:
        super().__init__()
        if input_size not in (128, 256):
            raise ValueError(f"input_size: expected 128 or 256, got {input_size}")
        self.input_size = input_size
        nf = num_feat
        self.conv0_0 = nn.Conv2d(num_in_ch, nf, 3, 1, 1, bias=True)
        self.conv0_1 = nn.Conv2d(nf, nf, 4, 2, 1, bias=False)
        self.bn0_1 = nn.BatchNorm2d(nf, affine=True)
        chans = [(nf, nf * 2), (nf * 2, nf * 4), (nf * 4, nf * 8), (nf * 8, nf * 8)]
        if input_size == 256:
            chans.append((nf * 8, nf * 8))
        self.num_stages = len(chans)
        for i, (cin, cout) in enumerate(chans, start=1):
            setattr(self, f"conv{i}_0", nn.Conv2d(cin, cout, 3, 1, 1, bias=False))
            setattr(self, f"bn{i}_0", nn.BatchNorm2d(cout, affine=True))
            setattr(self, f"conv{i}_1", nn.Conv2d(cout, cout, 4, 2, 1, bias=False))
            setattr(self, f"bn{i}_1", nn.BatchNorm2d(cout, affine=True))
        self.linear1 = nn.Linear(nf * 8 * 4 * 4, 100)
        self.linear2 = nn.Linear(100, 1)

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        if x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(
                f"VGGStyleDiscriminator: expected {self.input_size}x{self.input_size} input, got {tuple(x.shape[-2:])}"
            )
        feats = [F.leaky_relu(self.conv0_0(x), _SLOPE)]
        feats.append(F.leaky_relu(self.bn0_1(self.conv0_1(feats[-1])), _SLOPE))
        for i in range(1, self.num_stages + 1):
            feats.append(F.leaky_relu(getattr(self, f"bn{i}_0")(getattr(self, f"conv{i}_0")(feats[-1])), _SLOPE))
            feats.append(F.leaky_relu(getattr(self, f"bn{i}_1")(getattr(self, f"conv{i}_1")(feats[-1])), _SLOPE))
        feats.append(F.leaky_relu(self.linear1(feats[-1].flatten(1)), _SLOPE))
        out = self.linear2(feats[-1])
        return (out, feats) if return_features else out
