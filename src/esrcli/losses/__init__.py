"""Training losses: pixel (L1/L2/Charbonnier), sub-pixel phase, patch texture, VGG19 perceptual and adversarial (GAN) losses.

``PerceptualLoss`` lives in :mod:`esrcli.losses.perceptual` (it needs the VGG19 weights).
"""

from esrcli.losses.gan import GAN_TYPES, discriminator_gan_loss, feature_matching_loss, gan_target_loss, generator_gan_loss
from esrcli.losses.pixel import PIXEL_CRITERIA, phase_loss, pixel_loss
from esrcli.losses.texture import texture_loss

__all__ = [
    "GAN_TYPES",
    "PIXEL_CRITERIA",
    "discriminator_gan_loss",
    "feature_matching_loss",
    "gan_target_loss",
    "generator_gan_loss",
    "phase_loss",
    "pixel_loss",
    "texture_loss",
]
