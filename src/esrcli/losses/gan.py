"""Adversarial losses: vanilla (BCE), LSGAN, hinge and ESRGAN's relativistic average GAN.

Sources: Goodfellow et al. 2014 (vanilla, non-saturating generator loss); Mao et al. 2017
(LSGAN); Lim & Ye 2017 / Miyato et al. 2018 (hinge); Jolicoeur-Martineau 2018 and ESRGAN
(Wang et al., ECCVW 2018, Sec. 3.2, Eq. 1-2) for the relativistic average discriminator.
All functions take discriminator logits of any shape (``(B, 1)`` for the VGG-style
discriminator, ``(B, 1, H, W)`` for the U-Net one) and return scalar float32 tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["GAN_TYPES", "gan_target_loss", "generator_gan_loss", "discriminator_gan_loss", "feature_matching_loss"]

GAN_TYPES = ("vanilla", "lsgan", "hinge", "ragan")


def gan_target_loss(pred: Tensor, target_is_real: bool, gan_type: str, is_disc: bool = True) -> Tensor:
    """Loss pushing the logits ``pred`` toward "real" or "fake".

    Args:
        pred: discriminator logits, any shape.
        target_is_real: the label the loss pulls toward.
        gan_type: ``"vanilla"`` (binary cross-entropy on logits, also used by ``"ragan"``),
            ``"lsgan"`` (mean squared error to 1/0) or ``"hinge"``.
        is_disc: for hinge, the discriminator form ``relu(1 -+ pred)``; the generator form
            is ``-mean(pred)``.

    Raises:
        ValueError: an unknown ``gan_type``.
    """
    pred = pred.float()
    if gan_type in ("vanilla", "ragan"):
        target = torch.full_like(pred, 1.0 if target_is_real else 0.0)
        return F.binary_cross_entropy_with_logits(pred, target)
    if gan_type == "lsgan":
        return (pred - (1.0 if target_is_real else 0.0)).square().mean()
    if gan_type == "hinge":
        if not is_disc:
            return -pred.mean() if target_is_real else pred.mean()
        return F.relu(1.0 - pred).mean() if target_is_real else F.relu(1.0 + pred).mean()
    raise ValueError(f"gan_type: expected one of {', '.join(GAN_TYPES)}, got {gan_type!r}")


def generator_gan_loss(fake_pred: Tensor, real_pred: Tensor | None, gan_type: str) -> Tensor:
    """Adversarial loss of the generator (unweighted).

    Args:
        fake_pred: logits of the discriminator on the generator's output (gradients flow).
        real_pred: logits on the real images, needed by ``"ragan"`` only (detached here).
        gan_type: one of :data:`GAN_TYPES`.

    Returns:
        For ``"ragan"`` the symmetric relativistic loss
        ``(BCE(real - mean(fake), 0) + BCE(fake - mean(real), 1)) / 2`` (ESRGAN Eq. 2);
        otherwise the non-saturating / least-squares / hinge generator loss.

    Raises:
        ValueError: an unknown ``gan_type`` or ``"ragan"`` without ``real_pred``.
    """
    if gan_type == "ragan":
        if real_pred is None:
            raise ValueError("generator_gan_loss: 'ragan' needs real_pred")
        real_pred = real_pred.detach().float()
        fake_pred = fake_pred.float()
        l_real = gan_target_loss(real_pred - fake_pred.mean(), False, gan_type)
        l_fake = gan_target_loss(fake_pred - real_pred.mean(), True, gan_type)
        return (l_real + l_fake) / 2
    return gan_target_loss(fake_pred, True, gan_type, is_disc=False)


def discriminator_gan_loss(real_pred: Tensor, fake_pred: Tensor, gan_type: str) -> tuple[Tensor, Tensor]:
    """Adversarial losses of the discriminator, ``(l_d_real, l_d_fake)``.

    ``fake_pred`` must come from a detached generator output. For ``"ragan"`` each term is
    relative to the other set's (detached) mean and halved (ESRGAN Eq. 1); their sum is the
    discriminator loss.

    Raises:
        ValueError: an unknown ``gan_type``.
    """
    if gan_type == "ragan":
        real_pred, fake_pred = real_pred.float(), fake_pred.float()
        l_real = gan_target_loss(real_pred - fake_pred.detach().mean(), True, gan_type) * 0.5
        l_fake = gan_target_loss(fake_pred - real_pred.detach().mean(), False, gan_type) * 0.5
        return l_real, l_fake
    return gan_target_loss(real_pred, True, gan_type), gan_target_loss(fake_pred, False, gan_type)


def feature_matching_loss(fake_feats: list[Tensor], real_feats: list[Tensor]) -> Tensor:
    """Discriminator feature matching: the mean over layers of the L1 distance between the
    discriminator's intermediate activations on generated and on real images (unweighted).

    Source: Wang et al., "High-Resolution Image Synthesis and Semantic Manipulation with
    Conditional GANs" (pix2pixHD), CVPR 2018, Sec. 3.2, Eq. 4 (one discriminator; each
    layer's L1 is the mean over its elements, layers weigh equally). It needs no pretrained
    network, unlike the VGG perceptual loss.

    Args:
        fake_feats: activations on ``net_g``'s output (gradients flow to the generator).
        real_feats: activations on the ground truth, same shapes (detached here).

    Returns:
        A scalar float32 tensor: ``sum_i mean|fake_i - real_i| / len(fake_feats)``.

    Raises:
        ValueError: no features, or lists of different lengths or shapes.
    """
    if not fake_feats or len(fake_feats) != len(real_feats):
        raise ValueError(f"feature_matching_loss: expected two equal, non-empty lists, got {len(fake_feats)} and {len(real_feats)}")
    total = fake_feats[0].new_zeros((), dtype=torch.float32)
    for i, (f, r) in enumerate(zip(fake_feats, real_feats)):
        if f.shape != r.shape:
            raise ValueError(f"feature_matching_loss: layer {i} shapes differ, {tuple(f.shape)} vs {tuple(r.shape)}")
        total = total + F.l1_loss(f.float(), r.detach().float())
    return total / len(fake_feats)
