"""Validation during training: PSNR/SSIM on Y (BasicSR conventions) and NIQE of the EMA generator.

The LR input of each HR validation image is its MATLAB-style bicubic downscale
(:func:`esrcli.data.dataset.load_validation_image`), as in BasicSR's paired validation sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from esrcli.config.train import ValConfig
from esrcli.data.dataset import load_validation_image
from esrcli.data.imageio import IMAGE_EXTENSIONS, Image, write_image
from esrcli.errors import DataError, ImageError, MetricError

__all__ = ["ValImage", "load_validation_set", "validate"]


@dataclass(frozen=True)
class ValImage:
    """One validation pair: ``lq`` ``(1, 3, h, w)`` and ``gt`` ``(1, 3, h*scale, w*scale)``, float32 [0, 1]."""

    name: str
    lq: Tensor
    gt: Tensor


def load_validation_set(cfg: ValConfig, scale: int) -> tuple[list[ValImage], list[tuple[Path, str]]]:
    """Read the validation folders (not recursive). Returns ``(images, skipped)``.

    Raises:
        DataError: a folder that does not exist or holds no readable image.
    """
    images, skipped = [], []
    for folder in cfg.folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(f"{folder}: no such validation folder")
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
        for f in files:
            try:
                lq, gt = load_validation_image(f, scale)
            except (ImageError, DataError) as exc:
                skipped.append((f, str(exc)))
                continue
            images.append(ValImage(f"{folder.name}/{f.stem}" if len(cfg.folders) > 1 else f.stem, lq, gt))
    if cfg.folders and not images:
        raise DataError(f"{', '.join(str(f) for f in cfg.folders)}: no readable validation image")
    return images, skipped


def _to_uint8_hwc(t: Tensor) -> np.ndarray:
    """``(1, 3, H, W)`` [0, 1] -> ``(H, W, 3)`` float64 in [0, 255], rounded like BasicSR's tensor2img."""
    a = t[0].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    return np.round(a * 255.0).astype(np.float64)


@torch.no_grad()
def validate(
    net: nn.Module,
    images: list[ValImage],
    cfg: ValConfig,
    device: torch.device,
    save_dir: Path | None = None,
) -> dict[str, float]:
    """Mean metrics of ``net`` (float32, eval mode) over ``images``.

    Args:
        net: the generator (usually the EMA copy).
        images: the validation pairs.
        cfg: ``[val]`` (metrics, crop_border, save_images).
        device: where to run.
        save_dir: where to write the first ``cfg.save_images`` SR images as PNG (``None``: don't).

    Returns:
        ``{"val/psnr_y": dB, "val/ssim_y": ..., "val/niqe": ...}`` for the configured metrics,
        each the mean over the images it could be computed on (NIQE needs 96x96 pixels).
    """
    from esrcli import metrics

    was_training = net.training
    net.eval()
    sums = {m: 0.0 for m in cfg.metrics}
    counts = {m: 0 for m in cfg.metrics}
    for i, item in enumerate(images):
        sr = net(item.lq.to(device)).float()
        sr_np, gt_np = _to_uint8_hwc(sr), _to_uint8_hwc(item.gt)
        for name in cfg.metrics:
            try:
                if name == "niqe":
                    value = metrics.niqe(sr_np, crop_border=cfg.crop_border)
                else:
                    fn = metrics.psnr if name == "psnr_y" else metrics.ssim
                    value = fn(sr_np, gt_np, crop_border=cfg.crop_border, test_y_channel=True)
            except MetricError:  # e.g. an image below NIQE's 96x96 minimum: left out of that mean
                continue
            sums[name] += float(value)
            counts[name] += 1
        if save_dir is not None and i < cfg.save_images:
            save_dir.mkdir(parents=True, exist_ok=True)
            color = sr[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy().astype(np.float32)
            write_image(save_dir / f"{item.name.replace('/', '_')}.png", Image(np.ascontiguousarray(color)))
    net.train(was_training)
    return {f"val/{k}": v / counts[k] for k, v in sums.items() if counts[k]}
