"""VGG19 feature extractor for the perceptual loss, laid out like torchvision's ``vgg19``.

``features`` is an ``nn.Sequential`` with torchvision's indices (0..36: convs, ReLUs, max
pools), so the ImageNet file ``vgg19-dcbb9e9d.pth`` (keys ``features.N.weight/bias`` plus
``classifier.*``, which are ignored) loads without torchvision. Features are taken BEFORE
the activation at the named conv layers, as ESRGAN's perceptual loss does (Wang et al.,
ECCVW 2018, Sec. 3.3) and BasicSR's ``conv5_4`` naming implies.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from esrcli.errors import WeightsError

__all__ = ["VGG19FeatureExtractor", "VGG19_LAYER_NAMES", "VGG19_FILE_NAME", "vgg19_cache_path", "load_vgg19_weights"]

VGG19_FILE_NAME = "vgg19-dcbb9e9d.pth"
_CFG = ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512))
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def _layer_names() -> tuple[str, ...]:
    names: list[str] = []
    for b, block in enumerate(_CFG, start=1):
        for i in range(1, len(block) + 1):
            names += [f"conv{b}_{i}", f"relu{b}_{i}"]
        names.append(f"pool{b}")
    return tuple(names)


VGG19_LAYER_NAMES = _layer_names()
"""Names of torchvision ``vgg19.features`` children in index order (``conv1_1`` is 0, ``pool5`` 36)."""


def vgg19_cache_path() -> Path:
    """Where torchvision would cache the ImageNet VGG19 weights.

    Returns:
        ``<torch.hub.get_dir()>/checkpoints/vgg19-dcbb9e9d.pth`` (by default
        ``~/.cache/torch/hub/checkpoints/vgg19-dcbb9e9d.pth``; honours ``TORCH_HOME``).
    """
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE_NAME


class VGG19FeatureExtractor(nn.Module):
    """Frozen VGG19 returning pre-activation features at named conv layers.

    Args:
        layer_names: conv layers to return, e.g. ``("conv1_2", "conv5_4")``; the network is
            truncated after the deepest one.
        use_input_norm: normalise the input with the ImageNet mean/std (non-persistent buffers).
        range_norm: map an input in ``[-1, 1]`` to ``[0, 1]`` first.

    Shapes:
        ``(B, 3, H, W)`` RGB in ``[0, 1]`` -> ``dict[name, Tensor (B, C_l, H_l, W_l)]``.

    Raises:
        ValueError: an unknown layer name or an empty ``layer_names``.

    Note:
        The weights start random; load ImageNet weights with :func:`load_vgg19_weights`.
        All parameters have ``requires_grad=False``; gradients still flow to the input.
    """

    def __init__(
        self,
        layer_names: tuple[str, ...] | list[str] = ("conv1_2", "conv2_2", "conv3_4", "conv4_4", "conv5_4"),
        use_input_norm: bool = True,
        range_norm: bool = False,
    ) -> None:
        super().__init__()
        layer_names = tuple(layer_names)
        if not layer_names:
            raise ValueError("layer_names: at least one layer is needed")
        unknown = [n for n in layer_names if n not in VGG19_LAYER_NAMES]
        if unknown:
            raise ValueError(f"layer_names: unknown VGG19 layer(s) {', '.join(unknown)}")
        self.layer_names = layer_names
        self.use_input_norm = use_input_norm
        self.range_norm = range_norm
        last = max(VGG19_LAYER_NAMES.index(n) for n in layer_names)
        layers: list[nn.Module] = []
        in_ch = 3
        for name in VGG19_LAYER_NAMES[: last + 1]:
            if name.startswith("conv"):
                b, i = (int(v) for v in name[4:].split("_"))
                out_ch = _CFG[b - 1][i - 1]
                layers.append(nn.Conv2d(in_ch, out_ch, 3, 1, 1))
                in_ch = out_ch
            elif name.startswith("relu"):
                # In-place is safe only when the conv output before it is not returned.
                prev = "conv" + name[4:]
                layers.append(nn.ReLU(inplace=prev not in layer_names))
            else:
                layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self._index = {VGG19_LAYER_NAMES.index(n): n for n in layer_names}
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if self.range_norm:
            x = (x + 1) / 2
        if self.use_input_norm:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out: dict[str, Tensor] = {}
        for idx, layer in enumerate(self.features):
            x = layer(x)
            name = self._index.get(idx)
            if name is not None:
                out[name] = x
        return out


def load_vgg19_weights(module: VGG19FeatureExtractor, path: str | os.PathLike) -> None:
    """Load torchvision's ImageNet VGG19 file into ``module`` (``classifier.*`` ignored).

    Only the ``features.N`` layers the (possibly truncated) module has are loaded; every
    one of them must be present with the right shape.

    Args:
        module: the extractor to fill in place.
        path: ``vgg19-dcbb9e9d.pth`` or any state dict with torchvision's ``features.N`` keys.

    Raises:
        WeightsError: missing, unreadable, corrupt or truncated file, missing keys, or a
            tensor of the wrong shape (the message names the file and the key).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(
            f"{path}: VGG19 weights not found",
            hint=f"place torchvision's {VGG19_FILE_NAME} there (default location {vgg19_cache_path()})",
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise WeightsError(f"{path}: not a readable VGG19 weights file ({type(exc).__name__})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: not a VGG19 state dict")
    own = module.state_dict()
    new: dict[str, Tensor] = {}
    for key, ref in own.items():
        t = state.get(key)
        if t is None:
            t = state.get("module." + key)
        if not isinstance(t, Tensor):
            raise WeightsError(f"{path}: not a VGG19 weights file (missing {key})")
        if tuple(t.shape) != tuple(ref.shape):
            raise WeightsError(f"{path}: {key} has shape {tuple(t.shape)}, VGG19 expects {tuple(ref.shape)}")
        new[key] = t.to(ref.dtype)
    module.load_state_dict(new, strict=True)
