"""A degradation-prediction head on a generator's trunk features (CSRGAN-style joint model).

CSRGAN trains the generator to also predict the degradation parameters of its input (blur
sigma, noise level, scale), with ``L = L_SR + lambda * L_pred``. Here the prediction comes
from a separate small module, :class:`DegradationHead` (per-channel mean and standard
deviation pooled over the image, then a two-layer MLP), fed by the generator's trunk
features, which a forward hook (:class:`TrunkTap`) captures during the ordinary forward pass. The generator itself is unchanged: same
modules, same state-dict keys (BasicSR layout), same exports.

Trunk features: SRVGGNetCompact, the output of the last activation before the last conv
(``num_feat`` channels at the LQ size); RRDBNet, the output of ``conv_body`` (the residual
the RRDB trunk adds to the shallow features, ``num_feat`` channels at the LQ size, or
smaller with pixel-unshuffle).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from esrcli.archs.rrdbnet import RRDBNet
from esrcli.archs.srvgg import SRVGGNetCompact

__all__ = ["DegradationHead", "TrunkTap", "trunk_module"]


class DegradationHead(nn.Module):
    """Trunk features -> parameter vector: per-channel mean and std pooling, then an MLP.

    Args:
        num_feat: channels of the trunk features.
        num_out: length of the predicted vector
            (:data:`esrcli.degrade.vector.PARAM_NAMES`).
        hidden: width of the hidden layer.

    Shapes:
        ``(B, num_feat, h, w)`` float -> ``(B, num_out)`` float (unbounded; the targets are in
        about ``[0, 1]``).
    """

    def __init__(self, num_feat: int, num_out: int, hidden: int = 64) -> None:
        super().__init__()
        self.num_feat, self.num_out, self.hidden = num_feat, num_out, hidden
        self.fc1 = nn.Linear(2 * num_feat, hidden)
        self.act = nn.LeakyReLU(0.1)
        self.fc2 = nn.Linear(hidden, num_out)

    def forward(self, feat: Tensor) -> Tensor:
        # mean and standard deviation per channel: noise and blur show in the spread of the
        # features more than in their mean
        pooled = feat.float().flatten(2)
        stats = [pooled.mean(-1), pooled.std(-1, unbiased=False)]
        return self.fc2(self.act(self.fc1(torch.cat(stats, dim=1))))


def trunk_module(net: nn.Module) -> tuple[nn.Module, int]:
    """The submodule whose output is the generator's trunk features, and their channels.

    Raises:
        ValueError: a generator other than SRVGGNetCompact or RRDBNet.
    """
    if isinstance(net, SRVGGNetCompact):
        return net.body[-2], net.body[-1].in_channels
    if isinstance(net, RRDBNet):
        return net.conv_body, net.conv_body.out_channels
    raise ValueError(f"no trunk features known for {type(net).__name__}")


class TrunkTap:
    """Keeps the trunk features of the last forward pass of a generator (a forward hook).

    The hook holds a reference to the features of one forward pass (the graph stays alive
    for the prediction loss) until :meth:`pop` takes them.

    Args:
        net: the generator (not wrapped in DistributedDataParallel).

    Raises:
        ValueError: a generator without known trunk features.
    """

    def __init__(self, net: nn.Module) -> None:
        module, self.num_feat = trunk_module(net)
        self._feat: Tensor | None = None
        self._handle = module.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, args: tuple, output: Tensor) -> None:
        self._feat = output

    def pop(self) -> Tensor:
        """The features of the last forward pass (cleared afterwards).

        Raises:
            RuntimeError: no forward pass since the last call.
        """
        feat, self._feat = self._feat, None
        if feat is None:
            raise RuntimeError("TrunkTap: no forward pass of the generator since the last pop()")
        return feat

    def remove(self) -> None:
        """Detach the hook from the generator."""
        self._handle.remove()
        self._feat = None
