"""The upscale pipeline for one decoded image: gray, alpha, 16-bit and output size handled.

Steps (:func:`upscale_image`):

1. Gray images run through an RGB network as gray replicated to three channels and
   come back as gray (BT.601 luma of the output).
2. With an alpha channel, the colour under fully transparent pixels is replaced by a
   smooth fill diffused from nearby visible pixels (:func:`fill_transparent`), so the
   network never mixes hidden (often black) colour into visible edges: no dark or
   coloured fringes. The alpha is upscaled separately, through the network as a gray
   image (``alpha="network"``) or bicubically (``alpha="bicubic"``).
3. The network runs tiled with feathered blending (:func:`esrcli.infer.tiled.tiled_forward`),
   in float throughout: 16-bit inputs are never reduced to 8 bits.
4. For an output scale other than the network's, the result is resized with
   ``cv2.INTER_AREA`` (smaller) or Lanczos (larger), then clipped to ``[0, 1]``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np
import torch
from torch import nn

from esrcli.data.imageio import MAX_PIXELS, Image, to_tensor
from esrcli.errors import ConfigError, ImageError, WeightsError
from esrcli.infer.plan import DEFAULT_TILE_OVERLAP
from esrcli.infer.tiled import Notify, tiled_forward

__all__ = ["UpscaleOptions", "upscale_image", "upscale_frames", "fill_transparent", "output_size", "model_multiple", "working_memory"]

ALPHA_MODES = ("network", "bicubic")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as cv2's RGB2GRAY


@dataclass(frozen=True)
class UpscaleOptions:
    """How :func:`upscale_image` runs.

    Attributes:
        outscale: final size factor relative to the input (any float > 0); ``None`` =
            the network's native scale.
        tile: tile size in input pixels, 0 = whole image (``esr upscale`` and
            :class:`esrcli.Upscaler` take no tile below :data:`esrcli.infer.plan.MIN_TILE`).
        tile_overlap: overlap of neighbouring tiles in input pixels (feathering length).
        alpha: ``"network"`` (alpha upscaled by the network as a gray image) or
            ``"bicubic"``.
        batch: tiles per forward call.

    Raises:
        ConfigError: a value out of range, or ``tile``, ``tile_overlap`` or ``batch`` not a
            whole number (message names the field).
    """

    outscale: float | None = None
    tile: int = 0
    tile_overlap: int = DEFAULT_TILE_OVERLAP
    alpha: str = "network"
    batch: int = 1

    def __post_init__(self) -> None:
        o = self.outscale
        if o is not None and (isinstance(o, bool) or not isinstance(o, numbers.Real) or not (o > 0 and np.isfinite(float(o)))):
            raise ConfigError(f"outscale: must be a positive number, got {o!r}")
        if o is not None:
            object.__setattr__(self, "outscale", float(o))  # numpy scalars and fractions as plain floats
        for name in ("tile", "tile_overlap", "batch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise ConfigError(f"{name}: expected a whole number, got {v!r}")
        if self.tile < 0:
            raise ConfigError(f"tile: must be >= 0 (0 = whole image), got {self.tile}")
        if self.tile_overlap < 0:
            raise ConfigError(f"tile_overlap: must be >= 0, got {self.tile_overlap}")
        if self.tile and self.tile_overlap * 2 > self.tile:
            raise ConfigError(f"tile_overlap: must be at most half the tile ({self.tile // 2}), got {self.tile_overlap}")
        if self.alpha not in ALPHA_MODES:
            raise ConfigError(f"alpha: expected one of {', '.join(ALPHA_MODES)}, got {self.alpha!r}")
        if self.batch < 1:
            raise ConfigError(f"batch: must be >= 1, got {self.batch}")


def model_multiple(info: object) -> int:
    """Size multiple the network needs: RRDBNet x2 -> 2, x1 -> 4 (pixel-unshuffle), else 1."""
    if getattr(info, "arch", "") == "RRDBNet":
        return {1: 4, 2: 2}.get(int(getattr(info, "scale", 4)), 1)
    return 1


def output_size(height: int, width: int, net_scale: int, outscale: float | None) -> tuple[int, int]:
    """``(height, width)`` of the result: ``round(size * outscale)`` (at least 1 pixel)."""
    s = float(net_scale if outscale is None else outscale)
    return max(1, int(round(height * s))), max(1, int(round(width * s)))


def size_text(width: int, height: int) -> str:
    """``"WxH"`` for messages; sides past ten million pixels in three significant digits."""
    if max(width, height) >= 10_000_000:
        return f"{float(width):.3g}x{float(height):.3g}"
    return f"{width}x{height}"


def working_memory(image: Image, info: object, options: UpscaleOptions = UpscaleOptions()) -> int:
    """Estimated peak bytes that upscaling ``image`` and encoding the result take, beyond
    the loaded network (an estimate on the safe side, for deciding what fits in memory).

    Counts, per output pixel: the float32 RGB accumulator of each network pass (12 bytes
    at the network's scale; with ``alpha="network"`` the colour result stays while the alpha
    runs), the float32 gray conversions of one-channel passes (4), the resized float32
    image for an output scale other than the network's, and the quantised samples with their
    copies on the way to the encoder's buffer (3x channels x bytes per sample). Measured on
    the embedded x4 model as peak RSS above the process's 300 MB at rest: a 3000x2000 RGB
    photo 1.53 GB (estimate 2.02), a 1500x1000 RGBA one 0.90 GB (estimate 0.96).

    Args:
        image: the decoded input.
        info: the model's :class:`esrcli.weights.ModelInfo` (uses ``scale``).
        options: the :class:`UpscaleOptions` of the run.

    Returns:
        Bytes (an int).
    """
    scale = int(getattr(info, "scale", 4))
    h, w = image.size
    px_net = h * w * scale * scale
    out_h, out_w = output_size(h, w, scale, options.outscale)
    px_out = out_h * out_w
    channels = image.color.shape[2] + (image.alpha is not None)
    passes = [image.color.shape[2]] + ([1] if image.alpha is not None and options.alpha == "network" else [])
    total = sum(12 * px_net + (4 * px_net if c == 1 else 0) for c in passes)
    if px_out != px_net:
        total += 4 * channels * px_out
    return total + 3 * channels * (image.bit_depth // 8) * px_out


def fill_transparent(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Replace the colour of fully transparent pixels by a fill diffused from visible ones.

    A push-pull pyramid: colour premultiplied by alpha and alpha itself are averaged
    down to 1 pixel; going back up, each level keeps its own alpha-weighted mean colour
    where it has coverage and takes the upsampled coarser level elsewhere. Pixels with
    ``alpha > 0`` keep their colour exactly.

    Args:
        color: float32 ``(H, W, C)`` in ``[0, 1]``.
        alpha: float32 ``(H, W)`` in ``[0, 1]``.

    Returns:
        A new float32 ``(H, W, C)`` array (a copy of ``color`` when nothing is transparent
        or nothing is visible).
    """
    hidden = alpha <= 0
    if not hidden.any() or hidden.all():
        return color.copy()
    c = color.shape[2]
    w = alpha.astype(np.float32)
    p = color * w[:, :, None]
    levels = [(p, w)]
    while max(p.shape[:2]) > 1:
        h2, w2 = max(1, (p.shape[0] + 1) // 2), max(1, (p.shape[1] + 1) // 2)
        p = cv2.resize(p, (w2, h2), interpolation=cv2.INTER_AREA).reshape(h2, w2, c)
        w = cv2.resize(w, (w2, h2), interpolation=cv2.INTER_AREA).reshape(h2, w2)
        levels.append((p, w))
    p, w = levels[-1]
    fill = p / np.maximum(w, 1e-12)[:, :, None]
    for p, w in reversed(levels[:-1]):
        up = cv2.resize(fill, (p.shape[1], p.shape[0]), interpolation=cv2.INTER_LINEAR).reshape(p.shape)
        cover = np.clip(w * 4.0, 0.0, 1.0)[:, :, None]  # trust a level's own mean once it has some coverage
        own = p / np.maximum(w, 1e-12)[:, :, None]
        fill = cover * own + (1.0 - cover) * up
    out = color.copy()
    out[hidden] = np.clip(fill[hidden], 0.0, 1.0)
    return out


def _resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``(H, W[, C])`` float32 to ``size = (height, width)``: area down, Lanczos up."""
    h, w = a.shape[:2]
    if (h, w) == size:
        return a
    shrink = size[0] * size[1] < h * w
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LANCZOS4
    try:
        out = cv2.resize(a, (size[1], size[0]), interpolation=interp)
    except cv2.error as exc:  # OpenCV's own allocation failure (or limit): not a bug of ours
        raise MemoryError(f"cannot resize to {size[1]}x{size[0]}: {str(exc).strip().splitlines()[-1]}") from exc
    if a.ndim == 3 and out.ndim == 2:
        out = out[:, :, None]
    return np.clip(out, 0.0, 1.0)


def _net_io_channels(net: nn.Module, info: object) -> tuple[int, int]:
    params = getattr(info, "params", {}) or {}
    cin = int(params.get("num_in_ch", getattr(net, "num_in_ch", 3)))
    cout = int(params.get("num_out_ch", cin))
    return cin, cout


def _check_channels(net: nn.Module, info: object) -> tuple[int, int]:
    """``(in, out)`` channels of the network.

    Raises:
        WeightsError: neither 1 nor 3 in and out.
    """
    cin, cout = _net_io_channels(net, info)
    if cin not in (1, 3) or cout not in (1, 3):
        raise WeightsError(f"model with {cin} input / {cout} output channels cannot upscale images (need 1 or 3)")
    return cin, cout


def _through_net(
    a: np.ndarray,
    net: nn.Module,
    info: object,
    options: UpscaleOptions,
    notify: Notify | None,
    progress: Callable[[int, int], None] | None,
) -> np.ndarray:
    """``(N, H, W, C)`` float in ``[0, 1]`` -> ``(N, H*s, W*s, C)`` float32 through the network,
    tiled (:func:`esrcli.infer.tiled.tiled_forward`), the channel count adapted to the
    network's (gray replicated to RGB and back through BT.601 luma). May be a view of the
    result tensor's memory."""
    scale = int(getattr(info, "scale", 4))
    cin, _ = _check_channels(net, info)
    c = a.shape[3]
    if c != cin:
        a = np.repeat(a, 3, axis=3) if cin == 3 else (a @ _LUMA)[..., None]
    x = torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))).float()
    sr = tiled_forward(
        net, x, scale, options.tile, options.tile_overlap, mod=model_multiple(info), batch=options.batch, notify=notify, progress=progress
    )
    del x
    with torch.inference_mode():  # sr is an inference tensor of our own: clamp in place
        out = sr.clamp_(0, 1).permute(0, 2, 3, 1).numpy()
    del sr
    if out.shape[3] != c:
        out = np.ascontiguousarray(out @ _LUMA)[..., None] if c == 1 else np.repeat(out, 3, axis=3)
    return out


def upscale_frames(
    frames: np.ndarray,
    net: nn.Module,
    info: object,
    options: UpscaleOptions = UpscaleOptions(),
    notify: Notify | None = None,
    progress: Callable[[int, int], None] | None = None,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Upscale several frames of one size in one tiled pass (e.g. a video's frames).

    The frames go through the network together (a batch of ``N``), then each is resized to
    ``output_size(...)`` as in :func:`upscale_image`. No alpha.

    Args:
        frames: float32 ``(N, H, W, C)``, ``C`` 1 (gray) or 3 (RGB), values in ``[0, 1]``.
        net: the generator on its device and compute dtype.
        info: the model's :class:`esrcli.weights.ModelInfo`.
        options: :class:`UpscaleOptions` (``alpha`` unused).
        notify: receives one-line notices (out-of-memory tile halving).
        progress: ``progress(done, total)`` in tiles.
        size: ``(height, width)`` of the result instead of ``output_size(...)`` (e.g. a
            video encoder's even size).

    Returns:
        float32 ``(N, H', W', C)`` in ``[0, 1]``.

    Raises:
        ValueError: ``frames`` is not 4-D.
        WeightsError: a network whose channels are neither 1 nor 3 in and out.
    """
    if frames.ndim != 4:
        raise ValueError(f"frames: expected shape (N, H, W, C), got {frames.shape}")
    n, h, w, _ = frames.shape
    size = size or output_size(h, w, int(getattr(info, "scale", 4)), options.outscale)
    out = _through_net(frames, net, info, options, notify, progress)
    if out.shape[1:3] == size:
        return out
    return np.stack([_resize(f, size) for f in out])


def upscale_image(
    image: Image,
    net: nn.Module,
    info: object,
    options: UpscaleOptions = UpscaleOptions(),
    notify: Notify | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Image:
    """Upscale one image with ``net``, keeping gray, alpha, bit depth and ICC profile.

    Args:
        image: the decoded input (:func:`esrcli.data.imageio.read_image`).
        net: the generator, already on its device and compute dtype
            (:func:`esrcli.infer.device.prepare_model`); ``(B, C, h, w)`` in ``[0, 1]``
            -> ``(B, C, h*scale, w*scale)``.
        info: the model's :class:`esrcli.weights.ModelInfo` (uses ``arch``, ``scale``,
            ``params["num_in_ch"/"num_out_ch"]``).
        options: :class:`UpscaleOptions`.
        notify: receives one-line notices (out-of-memory tile halving).
        progress: ``progress(done, total)`` in tiles, over the colour pass (and the
            alpha pass when the alpha goes through the network).

    Returns:
        An :class:`Image` of ``output_size(...)`` with the input's channels layout,
        ``bit_depth``, ``icc_profile`` and ``exif``.

    Raises:
        WeightsError: a network whose channels are neither 1 nor 3 in and out, or an output
            with NaN values (broken weights, or an overflow in half precision).
        MemoryError: the output (or OpenCV's resize to ``outscale``) does not fit in memory.
        ImageError: the output would have more than :data:`esrcli.data.imageio.MAX_PIXELS`
            pixels (checked before the network runs).
    """
    scale = int(getattr(info, "scale", 4))
    h, w = image.size
    size = output_size(h, w, scale, options.outscale)
    if size[0] * size[1] > MAX_PIXELS:
        raise ImageError(f"the output would be {size_text(size[1], size[0])} pixels, over the limit of {MAX_PIXELS:,}", "ask for a smaller outscale")

    cin, _ = _check_channels(net, info)
    mod = model_multiple(info)

    def run(a: np.ndarray) -> np.ndarray:
        """``(H, W, C)`` float -> ``(H*s, W*s, C)`` through the network (channel count adapted).

        (Kept apart from :func:`_through_net`'s batched form: with two images in flight, this
        exact sequence of allocations took half the page faults in ``esr upscale``.)
        """
        c = a.shape[2]
        if c != cin:
            a = np.repeat(a, 3, axis=2) if cin == 3 else (a @ _LUMA)[:, :, None]
        sr = tiled_forward(
            net, to_tensor(a), scale, options.tile, options.tile_overlap, mod=mod, batch=options.batch, notify=notify, progress=progress
        )
        with torch.inference_mode():  # sr is an inference tensor of our own: clamp in place
            out = sr[0].clamp_(0, 1).permute(1, 2, 0).cpu().numpy()
        del sr
        if np.isnan(out).any():
            param = next(net.parameters(), None)
            if param is None or param.dtype == torch.float32:
                raise WeightsError("the model's output has NaN (not-a-number) values in fp32: its weights are broken")
            raise WeightsError(
                "the model's output has NaN (not-a-number) values: its weights are broken, or it overflowed in this precision (try --precision fp32)"
            )
        if out.shape[2] != c:
            out = np.ascontiguousarray(out @ _LUMA)[:, :, None] if c == 1 else np.repeat(out, 3, axis=2)
        return out

    color = image.color
    alpha = image.alpha
    if alpha is not None and (alpha < 1).any():
        color = fill_transparent(color, alpha)
    out_color = _resize(run(color), size)
    out_alpha = None
    if alpha is not None:
        if (alpha >= 1).all():
            out_alpha = np.ones(size, np.float32)
        elif options.alpha == "bicubic":
            out_alpha = np.clip(cv2.resize(alpha, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC), 0, 1)
            out_alpha = _resize(out_alpha, size)
        else:
            out_alpha = _resize(run(alpha[:, :, None]), size)[:, :, 0]
        out_alpha = np.ascontiguousarray(out_alpha)
    return Image(out_color, out_alpha, image.bit_depth, image.icc_profile, image.exif)

