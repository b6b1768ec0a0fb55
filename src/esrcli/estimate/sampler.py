"""Training patches with known single and combined degradations for the estimator.

Each sample is a clean HR crop degraded in the order of a camera/web pipeline: Gaussian blur with a
known sigma (or none), additive Gaussian noise with a known sigma (colour or gray, or none), JPEG at a
known IJG quality through libjpeg (:func:`esrcli.ops.jpeg.jpeg_roundtrip_uint8`, or none), rounded to
8 bits as a file would be. Labels are what was drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from esrcli.errors import ConfigError
from esrcli.estimate.net import BLUR_SCALE, NOISE_SCALE, PATCH
from esrcli.ops.jpeg import jpeg_roundtrip_uint8

__all__ = ["SamplerSettings", "held_out", "list_training_photos", "load_rgb8", "degrade_patch", "sample_batch"]


@dataclass(frozen=True)
class SamplerSettings:
    """Probabilities and ranges of the drawn degradations (see ``configs/esr-estimator.toml``)."""

    p_blur: float = 0.5
    blur_max: float = 3.0
    p_noise: float = 0.6
    noise_max: float = 25.0
    p_gray_noise: float = 0.2
    p_jpeg: float = 0.5
    jpeg_min: int = 15
    jpeg_max: int = 98

    def __post_init__(self) -> None:
        for name in ("p_blur", "p_noise", "p_gray_noise", "p_jpeg"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name}: must be in [0, 1]")  # the loader puts "sampler." in front
        if not 0.2 < self.blur_max <= 10.0:
            raise ConfigError("blur_max: must be in (0.2, 10]")
        if not 0.0 < self.noise_max <= 100.0:
            raise ConfigError("noise_max: must be in (0, 100]")
        if not 1 <= self.jpeg_min <= self.jpeg_max <= 100:
            raise ConfigError("jpeg_min/jpeg_max: need 1 <= jpeg_min <= jpeg_max <= 100")


def held_out(name: str, index: int) -> bool:
    """The fixed rule that keeps benchmark photos out of training: every 8th ``photo_*`` file (sorted)."""
    return name.startswith("photo_") and index % 8 == 0


def list_training_photos(folder: Path, exclude_held_out: bool = True) -> list[Path]:
    """Image files of ``folder`` (sorted), without the held-out benchmark photos."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp"))
    photos = [p for p in files if p.name.startswith("photo_")]
    held = {p for i, p in enumerate(photos) if held_out(p.name, i)}
    return [p for p in files if not (exclude_held_out and p in held)]


MIN_SIDE = 96  # PATCH + 2 margins


def held_out_photos(folder: Path) -> list[Path]:
    """The benchmark photos that training never sees."""
    photos = sorted(p for p in folder.iterdir() if p.name.startswith("photo_"))
    return [p for i, p in enumerate(photos) if held_out(p.name, i)]


def load_rgb8(path: Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of an 8-bit image file (gray expanded)."""
    from esrcli.data.imageio import quiet_opencv

    with quiet_opencv():  # the caller reports a bad file in its own line
        try:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        except cv2.error:
            bgr = None
    if bgr is None:
        raise ValueError(f"{path}: cannot read")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def degrade_patch(
    rgb: np.ndarray, blur: float, noise: float, gray_noise: bool, quality: int | None, rng: np.random.Generator
) -> np.ndarray:
    """Blur -> noise -> 8-bit -> JPEG of a uint8 RGB crop; returns uint8 RGB of the same size."""
    x = rgb.astype(np.float32)
    if blur > 0:
        k = 2 * int(np.ceil(3 * blur)) + 1
        x = cv2.GaussianBlur(x, (k, k), blur, borderType=cv2.BORDER_REFLECT)
    if noise > 0:
        n = rng.standard_normal(x.shape[:2] + ((1,) if gray_noise else (3,))).astype(np.float32) * noise
        x = x + n
    y = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    if quality is not None:
        y = jpeg_roundtrip_uint8(y, quality)
    return y


def sample_batch(
    images: list[np.ndarray], batch: int, s: SamplerSettings, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A batch of degraded patches and their labels.

    Returns:
        ``(B, 3, P, P)`` float32 in [0, 1] and ``(B, 5)`` float32 targets scaled as in
        :mod:`esrcli.estimate.net` (noise R, G, B / 25; (100 - q)/100 or 0; blur / 3).
    """
    margin = 16
    size = PATCH + 2 * margin
    xs = np.zeros((batch, 3, PATCH, PATCH), np.float32)
    ys = np.zeros((batch, 5), np.float32)
    for i in range(batch):
        img = images[int(rng.integers(len(images)))]
        h, w = img.shape[:2]
        # corners on the 8-pixel grid: the JPEG blocks sit at the same place in every patch, and
        # both 16-pixel phases of 4:2:0 chroma are seen (estimate() aligns to the detected 8-grid)
        top = int(rng.integers(0, (h - size) // 8 + 1)) * 8
        left = int(rng.integers(0, (w - size) // 8 + 1)) * 8
        crop = img[top : top + size, left : left + size]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        blur = float(rng.uniform(0.2, s.blur_max)) if rng.random() < s.p_blur else 0.0
        noise = float(rng.uniform(0.0, s.noise_max)) if rng.random() < s.p_noise else 0.0
        gray = bool(rng.random() < s.p_gray_noise)
        q = int(rng.integers(s.jpeg_min, s.jpeg_max + 1)) if rng.random() < s.p_jpeg else None
        out = degrade_patch(np.ascontiguousarray(crop), blur, noise, gray, q, rng)
        out = out[margin : margin + PATCH, margin : margin + PATCH]
        xs[i] = out.transpose(2, 0, 1).astype(np.float32) / 255.0
        ys[i, :3] = noise / NOISE_SCALE
        ys[i, 3] = 0.0 if q is None else (100 - q) / 100.0
        ys[i, 4] = blur / BLUR_SCALE
    return xs, ys
