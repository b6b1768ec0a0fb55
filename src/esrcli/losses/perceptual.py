"""VGG19 perceptual loss (ESRGAN / Real-ESRGAN): L1 between pre-activation features.

Source: Wang et al., ESRGAN (ECCVW 2018), Sec. 3.3: features before activation; Real-ESRGAN
(ICCVW 2021) uses conv1_2, conv2_2, conv3_4, conv4_4 and conv5_4 with weights 0.1, 0.1, 1, 1, 1,
ImageNet input normalisation and an L1 criterion. The ImageNet weights are torchvision's
``vgg19-dcbb9e9d.pth``; training never silently falls back to random features.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from esrcli.archs import VGG19FeatureExtractor
from esrcli.archs.vgg import VGG19_FILE_NAME, load_vgg19_weights, vgg19_cache_path
from esrcli.errors import TrainingError, WeightsError

__all__ = ["PerceptualLoss", "resolve_vgg_weights"]


def resolve_vgg_weights(path: Path | None, config_key: str = "loss.vgg_weights") -> Path:
    """The VGG19 weight file to use: ``path`` when given, else the torch hub cache.

    ``config_key`` is the setting named in the message (``sr.vgg_weights`` for train-pdm).

    Raises:
        TrainingError: the file does not exist; the message says where to put it.
    """
    candidate = Path(path) if path is not None else vgg19_cache_path()
    if not candidate.is_file():
        where = config_key if path is not None else "the torch hub cache"
        raise TrainingError(
            f"{candidate}: VGG19 weights for the perceptual loss not found ({where})",
            hint=f"download torchvision's {VGG19_FILE_NAME} "
            f"(https://download.pytorch.org/models/{VGG19_FILE_NAME}) and set {config_key} to it "
            f"or copy it to {vgg19_cache_path()}; or train without it: "
            f"{config_key.rsplit('.', 1)[0]}.perceptual_weight = 0 (docs/training.md, GAN stage without ImageNet weights)",
        )
    return candidate


class PerceptualLoss(nn.Module):
    """Weighted L1 distance between VGG19 features of ``sr`` and ``gt``.

    Args:
        weights_path: torchvision VGG19 file; ``None`` means the torch hub cache.
        layer_names: conv layers (features before activation).
        layer_weights: one weight per layer.
        criterion: ``"l1"`` (Real-ESRGAN) or ``"l2"``.
        config_key: the setting that names the weight file, for messages.

    Shapes:
        ``sr``, ``gt``: ``(B, 3, H, W)`` RGB in ``[0, 1]`` -> scalar float32 tensor.

    Raises:
        TrainingError: the weight file is missing or unusable (a message with the remedy).
        ValueError: mismatched ``layer_names`` / ``layer_weights``.
    """

    def __init__(
        self,
        weights_path: Path | None = None,
        layer_names: tuple[str, ...] = ("conv1_2", "conv2_2", "conv3_4", "conv4_4", "conv5_4"),
        layer_weights: tuple[float, ...] = (0.1, 0.1, 1.0, 1.0, 1.0),
        criterion: str = "l1",
        config_key: str = "loss.vgg_weights",
    ) -> None:
        super().__init__()
        if len(layer_names) != len(layer_weights):
            raise ValueError("layer_weights: needs one weight per layer")
        if criterion not in ("l1", "l2"):
            raise ValueError(f"criterion: expected 'l1' or 'l2', got {criterion!r}")
        self.layer_weights = dict(zip(layer_names, layer_weights))
        self.criterion = criterion
        self.vgg = VGG19FeatureExtractor(layer_names=tuple(layer_names), use_input_norm=True)
        path = resolve_vgg_weights(weights_path, config_key)
        try:
            load_vgg19_weights(self.vgg, path)
        except WeightsError as exc:
            raise TrainingError(str(exc), exc.hint) from None
        self.vgg.eval()

    def train(self, mode: bool = True) -> "PerceptualLoss":
        """The VGG stays in eval mode (no dropout/BN there, but keep it explicit)."""
        super().train(mode)
        self.vgg.eval()
        return self

    def forward(self, sr: Tensor, gt: Tensor) -> Tensor:
        feats_sr = self.vgg(sr)
        with torch.no_grad():
            feats_gt = self.vgg(gt.detach())
        total = sr.new_zeros((), dtype=torch.float32)
        for name, w in self.layer_weights.items():
            d = feats_sr[name].float() - feats_gt[name].float()
            total = total + w * (d.abs().mean() if self.criterion == "l1" else d.square().mean())
        return total
