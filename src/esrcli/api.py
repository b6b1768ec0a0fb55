"""The Python API: :class:`Upscaler`, a model loaded once that upscales arrays, PIL images and files.

Exported as ``esrcli.Upscaler``. It runs the same code as ``esr upscale`` (model loading
through :func:`esrcli.infer.load_upscale_model`, :func:`esrcli.infer.upscale_image` with the
same tiling), so its results equal the command's.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np

from esrcli.data.imageio import Image, read_image
from esrcli.errors import ConfigError, ImageError
from esrcli.infer.batch import DEFAULT_TILE
from esrcli.infer.model import ModelSpec, load_upscale_model, round_strength
from esrcli.infer.plan import DEFAULT_TILE_OVERLAP, MIN_TILE, is_video
from esrcli.infer.upscale import UpscaleOptions, upscale_image

__all__ = ["Upscaler"]

_FLOAT_SLACK = 0.1  # float inputs a little outside [0, 1] (filter overshoot) are clipped

ImageLike = Union[np.ndarray, "os.PathLike[str]", str, Any]  # Any: a PIL.Image.Image


def _from_array(a: np.ndarray) -> tuple[Image, tuple[str, ...]]:
    """An :class:`Image` from a numpy array, and what the output should look like: its
    ``ndim``-shape kind (``"2d"`` or ``"3d"``) and dtype name."""
    if not isinstance(a, np.ndarray):
        raise ImageError(f"expected a numpy array, a PIL image or a path, got {type(a).__name__}")
    if a.ndim == 2:
        a3 = a[:, :, None]
    elif a.ndim == 3 and a.shape[2] in (1, 2, 3, 4):
        a3 = a
    else:
        raise ImageError(f"array of shape {a.shape}: expected (H, W) gray, (H, W, 1), (H, W, 2) gray+alpha, (H, W, 3) RGB or (H, W, 4) RGBA")
    if a3.shape[0] < 1 or a3.shape[1] < 1:
        raise ImageError(f"array of shape {a.shape}: empty image")
    if a.dtype == np.uint8:
        f, depth = a3.astype(np.float32) * np.float32(1 / 255), 8
    elif a.dtype == np.uint16:
        f, depth = a3.astype(np.float32) * np.float32(1 / 65535), 16
    elif a.dtype in (np.float32, np.float64):
        if not np.isfinite(a3).all():
            raise ImageError("array contains NaN or infinite values")
        lo, hi = float(a3.min()), float(a3.max())
        if lo < -_FLOAT_SLACK or hi > 1 + _FLOAT_SLACK:
            hint = " (8-bit values? divide by 255)" if hi > 2 else ""
            raise ImageError(f"float array values must lie in [0, 1], got {lo:g} to {hi:g}{hint}")
        f, depth = np.clip(a3, 0, 1).astype(np.float32), 16
    else:
        raise ImageError(f"array of dtype {a.dtype}: expected uint8, uint16, or float32/float64 in [0, 1]")
    c = f.shape[2]
    color = np.ascontiguousarray(f[:, :, :1] if c in (1, 2) else f[:, :, :3])
    alpha = np.ascontiguousarray(f[:, :, -1]) if c in (2, 4) else None
    return Image(color, alpha, depth), ("2d" if a.ndim == 2 else "3d", a.dtype.name)


def _from_pil(im: Any) -> tuple[Image, tuple[str, ...]]:
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        a = np.asarray(im).astype(np.uint16)
    elif mode == "I":  # 32-bit integers: 16-bit data as PIL often opens it
        a = np.asarray(im)
        if a.size and (int(a.min()) < 0 or int(a.max()) > 65535):
            raise ImageError(f"PIL image of mode I with values {int(a.min())} to {int(a.max())}: expected 0 to 65535 (16-bit)")
        a = a.astype(np.uint16)
    elif mode == "F":  # 32-bit float, values in [0, 1]
        a = np.asarray(im, dtype=np.float32)
    elif mode in ("RGBa", "La"):  # premultiplied alpha
        a = np.asarray(im.convert("RGBA" if mode == "RGBa" else "LA"))
    elif mode in ("L", "LA", "RGB", "RGBA"):
        a = np.asarray(im)
    elif mode == "1":
        a = np.asarray(im.convert("L"))
    elif mode in ("P", "PA") and ("transparency" in im.info or mode == "PA"):
        a = np.asarray(im.convert("RGBA"))
    else:  # P, CMYK, YCbCr, LAB, HSV...
        a = np.asarray(im.convert("RGB"))
    return _from_array(a)


def _to_array(image: Image, layout: tuple[str, ...]) -> np.ndarray:
    kind, dtype = layout
    planes = image.color if image.alpha is None else np.concatenate([image.color, image.alpha[:, :, None]], axis=2)
    if dtype in ("float32", "float64"):
        out = np.clip(planes, 0, 1).astype(dtype, copy=False)
    else:
        maxv = np.float32(65535 if dtype == "uint16" else 255)
        q = np.clip(planes, 0, 1) * maxv
        out = np.rint(q, out=q).astype(dtype)
    return out[:, :, 0] if kind == "2d" else out


def _auto_denoise(color: np.ndarray) -> float:
    from esrcli.estimate.strength import auto_denoise

    return auto_denoise(color)


def _denoise_mode(denoise: Any) -> tuple[float | None, Callable[[np.ndarray], float] | None]:
    """``(fixed strength, per-image callback)`` for :class:`Upscaler`'s ``denoise``.

    Raises:
        ConfigError: a number outside ``[0, 1]``, or neither a number, ``"auto"`` nor a callable.
    """
    if denoise is None:
        return None, None
    if isinstance(denoise, str):
        if denoise.strip().lower() == "auto":
            return None, _auto_denoise
        raise ConfigError(f"denoise: expected a number in [0, 1], 'auto' or a callable, got {denoise!r}")
    if callable(denoise):
        return None, denoise
    if isinstance(denoise, numbers.Real) and not isinstance(denoise, bool):  # numpy scalars too
        if not 0.0 <= float(denoise) <= 1.0:
            raise ConfigError(f"denoise: must be in [0, 1], got {denoise}")
        return float(denoise), None
    raise ConfigError(f"denoise: expected a number in [0, 1], 'auto' or a callable, got {type(denoise).__name__}")


def _to_image(image: ImageLike) -> tuple[Image, tuple[str, ...]]:
    """The :class:`Image` of a path, numpy array or PIL image, and the layout to give back.

    Raises:
        ImageError: an unreadable file, an unsupported array or PIL mode, or another type.
    """
    if isinstance(image, (str, os.PathLike)):
        if is_video(Path(image)):
            raise ImageError(f"{image}: a video; Upscaler takes images (videos: esrcli.infer.run_batch or esr upscale)")
        img = read_image(Path(image))
        return img, ("2d" if img.alpha is None and img.color.shape[2] == 1 else "3d", "uint16" if img.bit_depth == 16 else "uint8")
    if isinstance(image, np.ndarray):
        return _from_array(image)
    if hasattr(image, "mode") and hasattr(image, "size") and hasattr(image, "convert"):
        return _from_pil(image)
    raise ImageError(f"expected a numpy array, a PIL image or a path, got {type(image).__name__}")


class Upscaler:
    """A generator loaded once, for upscaling many images from Python.

    Args:
        model: a model file (``.safetensors`` / ``.pth``) or an embedded model name
            (``esr model list``); ``None`` = the embedded default.
        device: ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (as ``esr upscale --precision``;
            under ``auto``, 16-bit and float inputs run in fp32).
        tile: tile size in input pixels; ``None`` = 512 (as ``esr upscale``), 0 = the
            whole image in one pass, else at least 32.
        tile_overlap: overlap of neighbouring tiles in input pixels (feathered); ``None`` =
            32, or half the tile when that is less (as ``esr upscale``).
        alpha: ``"network"`` (alpha upscaled through the network as gray) or ``"bicubic"``.
        sharpness: ``None`` for the model as stored; else ``0..1`` (as ``esr upscale
            --sharpness S``): an embedded model blended with its partner of the other
            training stage, ``(1 - S) * PSNR stage + S * GAN stage`` (ESRGAN network
            interpolation, once at load).
        denoise: ``None`` for the model as stored; a strength in ``[0, 1]`` (as
            ``esr upscale --denoise S``: ``S * model + (1 - S) * weak-denoise partner``);
            ``"auto"`` for a strength per image from :func:`esrcli.estimate.estimate`; or a
            callable ``f(color) -> strength`` given each image's float32 ``(H, W, C)`` samples
            in ``[0, 1]`` (strengths are clipped to ``[0, 1]`` and rounded to 0.05).

    Raises:
        WeightsError: no such model, an unreadable file or not an image generator;
            ``denoise`` for a model without a weak-denoise partner; ``sharpness`` for a
            model without a sharpness partner.
        ConfigError: an unknown device or precision, a tile or tile overlap that is not a
            whole number, a tile below 32, a tile overlap over half the tile, ``denoise`` outside ``[0, 1]`` or neither a number, ``"auto"``
            nor a callable; ``sharpness`` not a number in ``[0, 1]``, or given with ``denoise``.

    Thread safety: one instance may be used from several threads at once. The calls share
    the loaded network (read only) and each holds its own activations, so memory grows with
    the calls in flight; on a CPU they also share its threads (see
    :class:`esrcli.infer.workers.WorkerPool` for splitting them).

    Example:
        >>> import numpy as np
        >>> from esrcli import Upscaler
        >>> up = Upscaler(precision="fp32")
        >>> up.scale
        4
        >>> up.upscale(np.zeros((24, 32, 3), np.uint8)).shape
        (96, 128, 3)
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        device: str = "auto",
        precision: str = "auto",
        tile: int | None = None,
        tile_overlap: int | None = None,
        alpha: str = "network",
        sharpness: float | None = None,
        denoise: float | str | Callable[[np.ndarray], float] | None = None,
    ) -> None:
        if sharpness is not None:
            if isinstance(sharpness, bool) or not isinstance(sharpness, numbers.Real) or not 0.0 <= float(sharpness) <= 1.0:
                raise ConfigError(f"sharpness: expected a number in [0, 1], got {sharpness!r}")
            if denoise is not None:
                raise ConfigError("sharpness and denoise: give one of them (no model has both partners yet)")
            sharpness = float(sharpness)
        tile = DEFAULT_TILE if tile is None else tile
        for name, v in (("tile", tile), ("tile_overlap", tile_overlap)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral)):
                raise ConfigError(f"{name}: expected a whole number, got {v!r}")
        tile = int(tile)
        tile_overlap = None if tile_overlap is None else int(tile_overlap)
        if 0 < tile < MIN_TILE:
            raise ConfigError(f"tile: must be 0 (whole image) or at least {MIN_TILE}, got {tile} (a smaller tile shows its seams)")
        if tile_overlap is None:  # as esr upscale: 32, or half a smaller tile
            tile_overlap = min(DEFAULT_TILE_OVERLAP, tile // 2) if tile else DEFAULT_TILE_OVERLAP
        self.options = UpscaleOptions(tile=tile, tile_overlap=tile_overlap, alpha=alpha)
        fixed, self._strength = _denoise_mode(denoise)
        self.model = load_upscale_model(ModelSpec(model, device, precision, sharpness=sharpness, denoise=fixed))
        if self._strength is not None:
            self.model.check_denoise()

    @property
    def scale(self) -> int:
        """The network's upscaling factor (e.g. 4)."""
        return int(getattr(self.model.info, "scale", 4))

    @property
    def device(self) -> str:
        """Where the network runs, e.g. ``"cpu"`` or ``"cuda:0"``."""
        return str(self.model.device)

    @property
    def precision(self) -> str:
        """The compute precision chosen: ``"fp32"``, ``"bf16"`` or ``"fp16"``."""
        return self.model.precision.name

    def __repr__(self) -> str:
        return f"Upscaler(model={self.model.name!r}, scale={self.scale}, device={self.device!r}, precision={self.precision!r})"

    def upscale(self, image: ImageLike, *, outscale: float | None = None) -> np.ndarray:
        """Upscale one image.

        Args:
            image: a numpy array ``(H, W)`` gray, ``(H, W, 1)``, ``(H, W, 2)`` gray+alpha,
                ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA (RGB order, not OpenCV's BGR), of
                dtype uint8, uint16 or float32/float64 in ``[0, 1]`` (values up to 0.1 outside
                are clipped); a PIL image (any mode; 16-bit gray and mode ``I`` stay 16-bit,
                mode ``F`` is float32 in ``[0, 1]``, premultiplied ``RGBa``/``La`` are
                un-premultiplied); or the path of an image file (EXIF orientation applied).
            outscale: output size factor (any number > 0); ``None`` = the network's scale.

        Returns:
            A numpy array with the input's layout (same number of dimensions and channels)
            and dtype, ``round(H * outscale)`` by ``round(W * outscale)`` pixels. For a PIL
            image, the layout of ``numpy.asarray`` of it (16-bit modes and ``I``: uint16;
            mode ``1``: uint8 0/255; ``P``: RGB or RGBA; ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``
            and ``RGBX``: RGB); for a path,
            what the file holds: uint8 or uint16, gray ``(H, W)``, gray+alpha, RGB or RGBA.

        Raises:
            ImageError: an unreadable file, an unsupported array shape or dtype, NaN values,
                float values outside ``[-0.1, 1.1]``, a mode ``I`` image outside 0..65535.
            ConfigError: ``outscale`` not a finite number > 0.
            ImageError: the output would have more than 178,956,970 pixels (Pillow's limit
                for a readable image), raised before the network runs.
        """
        img, kind = _to_image(image)
        options = dataclasses.replace(self.options, outscale=outscale) if outscale is not None else self.options
        strength = None if self._strength is None else round_strength(self._strength(img.color))
        out = upscale_image(img, self.model.net_for(img.bit_depth, denoise=strength), self.model.info, options)
        return _to_array(out, kind)

    def denoise_strength(self, image: ImageLike) -> float | None:
        """The denoise strength that :meth:`upscale` uses for ``image`` (rounded to 0.05):
        the fixed ``denoise``, the per-image choice under ``"auto"`` or a callable, or
        ``None`` without ``denoise``.

        Raises:
            ImageError: as :meth:`upscale`.
        """
        if self._strength is None:
            return self.model.spec.denoise
        img, _ = _to_image(image)
        return round_strength(self._strength(img.color))
