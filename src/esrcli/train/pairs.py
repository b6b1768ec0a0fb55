"""Training pairs on the fly: degradation of HR crops, paired crop, training-pair pool, USM GT.

Real-ESRGAN (``RealESRGANModel.feed_data``): the batch of HR crops is sharpened (USM), degraded
by the second-order model with per-sample random parameters, paired-cropped to ``gt_size``,
then swapped through a pool of 180 pairs so that a batch mixes degradations from several
earlier batches. The pool carries the sharpened GT crop along with the pair (Real-ESRGAN
sharpens the pooled GT again, which equals this away from the crop borders). With
``model.predict_degradation`` each pair also carries its normalised degradation parameters
(:func:`esrcli.degrade.vector.param_vector`) through the pool as ``"deg"``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from esrcli.config.train import TrainGanConfig, TrainNetConfig
from esrcli.degrade import PairPool, synthesize_pairs
from esrcli.degrade.vector import param_vector
from esrcli.errors import ConfigError

__all__ = ["PairMaker"]


class PairMaker:
    """Makes ``{"lq", "gt", "gt_usm"[, "deg"]}`` training batches from HR crops (one per call).

    Args:
        cfg: the training config (``degrade``, ``train.pool_size``, ``train.gt_usm``,
            ``train.channels_last``, ``model.predict_degradation``).
        device: where the degradation runs (the training device).
        seed: seed of :attr:`generator`, the only source of randomness of the degradation.

    Attributes:
        generator: the ``torch.Generator`` of the degradation (saved in checkpoints).
    """

    def __init__(self, cfg: TrainNetConfig | TrainGanConfig, device: torch.device, seed: int) -> None:
        self.cfg = cfg.degrade
        self.gt_usm = cfg.train.gt_usm
        self.device = device
        self.channels_last = cfg.train.channels_last
        # Degrading on the CPU threads while the network trains on a GPU: the JPEG steps use
        # libjpeg on the CPU anyway, and many cores beat per-sample round trips.
        self.degrade_device = torch.device("cpu") if cfg.train.degrade_on_cpu else device
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.pool = PairPool(cfg.train.pool_size, cfg.train.batch_size) if cfg.train.pool_size else None
        self.with_params = cfg.model.predict_degradation
        self.pdm = None
        if self.cfg.source != "second-order":
            if self.with_params:
                raise ConfigError(
                    f"degrade.source: {self.cfg.source!r} cannot be used with model.predict_degradation "
                    "(its targets are the second-order parameters)"
                )
            from esrcli.degrade.pdm import load_pdm

            self.pdm = load_pdm(self.cfg.pdm, scale=self.cfg.scale, device=self.degrade_device)

    def _pdm_pairs(self, crops: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(gt, gt_usm, lq)`` with the learned degradation of the plain GT crop."""
        from esrcli.degrade import paired_random_crop
        from esrcli.ops.filters import usm_sharpen

        s, g = self.cfg.scale, self.cfg.gt_size
        h, w = crops.shape[-2] // s * s, crops.shape[-1] // s * s
        crops = crops[..., :h, :w]
        lq_full = crops[..., ::s, ::s]  # only its shape is used for the positions
        (gt,), _, _ = paired_random_crop([crops], lq_full, g, s, self.generator)
        lq = self.pdm.degrade(gt, generator=self.generator).clamp(0, 1).mul(255).round().div(255)
        c = self.cfg
        gt_usm = usm_sharpen(gt, c.usm_radius, c.usm_weight, c.usm_threshold) if self.gt_usm else gt
        return gt, gt_usm, lq

    def make(self, crops: Tensor) -> dict[str, Tensor]:
        """HR crops ``(B, 3, S, S)`` in [0, 1] -> ``lq (B, 3, g/s, g/s)``, ``gt``/``gt_usm (B, 3, g, g)``
        and, with ``model.predict_degradation``, ``deg (B, len(PARAM_NAMES))`` float32."""
        crops = crops.to(self.degrade_device, non_blocking=True)
        with torch.no_grad():
            # Both Real-ESRGAN stages degrade the USM-sharpened GT when gt_usm is on.
            if self.cfg.source == "pdm":
                gt, gt_usm, lq = self._pdm_pairs(crops)
                params = None
            else:
                gt, gt_usm, lq, params = synthesize_pairs(crops, self.cfg, self.generator, gt_usm=self.gt_usm, degrade_usm=self.gt_usm)
                if self.cfg.source == "mix":
                    pick = torch.rand(gt.shape[0], generator=self.generator) < self.cfg.pdm_prob
                    if bool(pick.any()):
                        lq = lq.clone()
                        lq[pick.to(lq.device)] = self.pdm.degrade(gt[pick.to(gt.device)], generator=self.generator).clamp(0, 1).mul(255).round().div(255)
            batch = {"lq": lq, "gt": gt}
            if self.gt_usm:
                batch["gt_usm"] = gt_usm
            if self.with_params:
                batch["deg"] = param_vector(params).to(lq.device)
            if self.pool is not None:
                batch = self.pool.exchange_batch(batch, generator=self.generator)
            batch.setdefault("gt_usm", batch["gt"])
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        out = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        return {k: v.contiguous(memory_format=fmt) if v.dim() == 4 else v for k, v in out.items()}

    def state_dict(self) -> dict[str, Any]:
        """The pool's contents (the generator state is saved with the other RNG states)."""
        return {"pool": self.pool.state_dict() if self.pool is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the pool of a checkpoint.

        Raises:
            ValueError: its pool or batch size differs, or its pairs are of another
                ``data.gt_size`` than this run's.
        """
        if self.pool is not None and state.get("pool") is not None:
            gt = dict(state["pool"].get("tensors", {})).get("gt")
            if gt is not None and tuple(gt.shape[-2:]) != (self.cfg.gt_size, self.cfg.gt_size):
                raise ValueError(f"its pooled pairs have {gt.shape[-1]} px GT crops, data.gt_size is {self.cfg.gt_size}")
            self.pool.load_state_dict(state["pool"])
