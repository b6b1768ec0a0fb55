"""Tiled forward pass with feathered blending, so large images fit in memory without seams.

The low-resolution input is cut into equal ``tile x tile`` tiles that overlap by at least
``tile_overlap`` pixels. Near a tile's cut edge the network sees padding instead of the
real neighbourhood, so its output there is wrong. Each tile's output is therefore
multiplied by a weight window before accumulation: along an edge that faces another
tile, the outer 3/8 of the overlap get weight 0 (context only, 12 px at the default
overlap of 32), the middle quarter a linear ramp up to 1, where the neighbour's ramp goes
down; edges on the image border keep weight 1. The accumulated outputs are divided by the accumulated weights.

With a network whose influence decays with distance (RRDBNet, SRVGGNetCompact) the result
matches the whole-image pass to well above 50 dB PSNR (test: tile 48, overlap 16 on a
33-pixel receptive field: ~110 dB), where pasting cropped tiles side by side (the official
Real-ESRGAN script, ``tile_pad`` 10) leaves visible seams (about 44 dB at tile 128).

All tiles have the same size, so several can run as one batch.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from esrcli.errors import EsrError
from esrcli.infer.device import CHANNELS_LAST_DEVICES
from esrcli.memory import keep_freed_memory

__all__ = ["tiled_forward", "tile_starts", "ramp_window", "pad_to_multiple"]

#: ``notify(message)``: receives one-line notices such as "out of memory: tile 512 -> 256".
Notify = Callable[[str], None]
#: ``progress(done, total)``: called after each batch of tiles.
Progress = Callable[[int, int], None]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of equal tiles of ``tile`` pixels covering ``length`` with >= ``overlap`` overlap.

    The tiles are spread evenly: the first starts at 0, the last ends at ``length``.

    Args:
        length: image size along one axis (pixels).
        tile: tile size (clipped to ``length``).
        overlap: minimum overlap between neighbouring tiles (pixels, < ``tile``).

    Returns:
        Sorted start offsets.

    Example:
        >>> tile_starts(300, 128, 32)
        [0, 86, 172]
    """
    tile = min(tile, length)
    if tile >= length:
        return [0]
    stride = max(tile - overlap, 1)
    n = math.ceil((length - tile) / stride) + 1
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def ramp_window(size: int, ramp_lo: int, ramp_hi: int, margin: int = 0, device: torch.device | None = None) -> Tensor:
    """1-D feathering weights: at each end ``margin`` zeros, then a linear ramp of ``ramp_*`` samples.

    Ramp values are ``(i + 0.5) / ramp``; the middle is 1. An end with ramp 0 gets neither
    margin nor ramp (an image border).

    Returns:
        float32 tensor of shape ``(size,)``, values in ``[0, 1]``.
    """
    w = torch.ones(size, dtype=torch.float32, device=device)
    for ramp, flip in ((ramp_lo, False), (ramp_hi, True)):
        if ramp <= 0:
            continue
        head = torch.cat(
            [
                torch.zeros(margin, dtype=torch.float32, device=device),
                (torch.arange(ramp, dtype=torch.float32, device=device) + 0.5) / ramp,
            ]
        )[:size]
        n = head.numel()
        if flip:
            w[size - n :] = torch.minimum(w[size - n :], head.flip(0))
        else:
            w[:n] = torch.minimum(w[:n], head)
    return w


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pad ``(B, C, H, W)`` at the bottom/right so H and W are multiples of ``multiple``.

    Reflection padding where the image is large enough, edge replication otherwise.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def _is_oom(exc: BaseException) -> bool:
    """A device out-of-memory error (``torch.OutOfMemoryError``, raised by CUDA and others)."""
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(exc, oom)) or "CUDA out of memory" in str(exc)


def _to_cpu(t: Tensor) -> Tensor:
    """``t`` on the CPU; from a CUDA device through page-locked (pinned) memory.

    The copy engine writes pinned memory at full speed; into ordinary pageable memory the
    same copy crawled: a 4096x4096 float32 RGB output (201 MB) took 169 ms on an H200 machine
    (1.2 GB/s), 9x the compact model's whole forward pass (``benchmarks/gpu_profile.py``).
    """
    if t.device.type != "cuda":
        return t.cpu()
    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    host.copy_(t)
    return host


def _run(net: nn.Module, x: Tensor, dtype: torch.dtype, mod: int, scale: int) -> Tensor:
    """One forward pass of ``x`` (float32) in ``dtype``; returns float32 of size ``(H*scale, W*scale)``."""
    h, w = x.shape[-2:]
    xp = pad_to_multiple(x, mod)
    if xp.device.type in CHANNELS_LAST_DEVICES and xp.shape[1] in (3, 4):
        xp = xp.contiguous(memory_format=torch.channels_last)
    y = net(xp.to(dtype))
    return y[..., : h * scale, : w * scale].float()


def tiled_forward(
    net: nn.Module,
    lq: Tensor,
    scale: int,
    tile: int = 0,
    tile_overlap: int = 32,
    *,
    mod: int = 1,
    batch: int = 1,
    dtype: torch.dtype | None = None,
    notify: Notify | None = None,
    progress: Progress | None = None,
    accumulate: str = "auto",
) -> Tensor:
    """Run ``net`` over ``lq`` whole or in overlapping, feather-blended tiles.

    On an out-of-memory error (CUDA) the tile is halved (whole image: tiles of half its
    longer side) and the pass restarts; ``notify`` is told each time. The pass gives up
    below 32-pixel tiles.

    Args:
        net: image-to-image network, ``(B, C, h, w)`` -> ``(B, C', h*scale, w*scale)``,
            already on the target device and in its compute dtype.
        lq: ``(B, C, H, W)`` float32 input in ``[0, 1]`` (any device; moved to the net's).
        scale: the network's integer upscaling factor.
        tile: tile size in input pixels; 0 = the whole image in one pass.
        tile_overlap: minimum overlap between neighbouring tiles, input pixels
            (the feathering ramp length); clipped to ``tile // 2``.
        mod: the network needs H and W divisible by this (RRDBNet x2: 2, x1: 4);
            inputs are padded by reflection and the output cropped.
        batch: tiles per forward call (all tiles have the same size).
        dtype: compute dtype of the network input (default: dtype of the net's parameters).
        notify: receives one-line notices (out-of-memory retries).
        progress: ``progress(done, total)`` in tiles.
        accumulate: where the tiles are blended: ``"cpu"``, ``"device"`` (the network's
            device), or ``"auto"``: on a GPU when the float32 output takes at most a quarter
            of its free memory (no copy back and no wait per tile: one copy at the end),
            else on the CPU.

    Freed memory stays in the process heap during the pass (:func:`esrcli.memory.keep_freed_memory`:
    on the CPU, an RRDBNet forward is 4-6% faster without its page faults).

    Returns:
        ``(B, C', H*scale, W*scale)`` float32 tensor on the CPU (not clamped). With
        ``accumulate="cpu"`` the full-size output never has to fit in GPU memory.

    Raises:
        ValueError: ``lq`` is not 4-D or an argument is out of range.
        EsrError: out of memory even with 32-pixel tiles.
    """
    if lq.dim() != 4:
        raise ValueError(f"lq: expected shape (B, C, H, W), got {tuple(lq.shape)}")
    if tile < 0 or tile_overlap < 0 or batch < 1 or mod < 1 or scale < 1:
        raise ValueError("tiled_forward: tile, tile_overlap >= 0 and batch, mod, scale >= 1 required")
    if accumulate not in ("auto", "cpu", "device"):
        raise ValueError(f"accumulate: expected auto, cpu or device, got {accumulate!r}")
    param = next(net.parameters(), None)
    device = param.device if param is not None else lq.device
    if dtype is None:
        dtype = param.dtype if param is not None else torch.float32
    lq = lq.to(device=device, dtype=torch.float32)
    h, w = lq.shape[-2:]
    while True:
        try:
            with torch.inference_mode(), keep_freed_memory():
                if tile == 0 or (tile >= h and tile >= w):
                    out = _to_cpu(_run(net, lq, dtype, mod, scale))
                    if progress is not None:
                        progress(1, 1)
                    return out
                acc = _accumulation_device(accumulate, device, lq.shape, scale)
                return _to_cpu(_tiled(net, lq, scale, tile, tile_overlap, mod, batch, dtype, progress, acc))
        except RuntimeError as exc:
            if not _is_oom(exc):
                raise
            if device.type == "cuda":
                torch.cuda.empty_cache()
            new_tile = min(tile if tile > 0 else max(h, w), max(h, w)) // 2
            if new_tile < 32:
                raise EsrError(f"out of memory on {device} even with 32-pixel tiles", "try --device cpu") from None
            if notify is not None:
                notify(f"out of memory on {device}: tile {tile or 'whole image'} -> {new_tile}")
            tile = new_tile


def _accumulation_device(accumulate: str, device: torch.device, shape: torch.Size, scale: int) -> torch.device:
    """Where :func:`_tiled` blends: see ``tiled_forward``'s ``accumulate``."""
    if accumulate == "cpu" or device.type == "cpu":
        return torch.device("cpu")
    if accumulate == "device":
        return device
    if device.type != "cuda":
        return torch.device("cpu")
    b, _, h, w = shape
    need = 4 * b * 4 * h * w * scale * scale  # float32 output of up to 4 channels
    free, _ = torch.cuda.mem_get_info(device)
    return device if need <= free // 4 else torch.device("cpu")


def _fit_tile(length: int, tile: int, overlap: int) -> int:
    """The smallest tile <= ``tile`` that covers ``length`` with as few tiles (less wasted overlap)."""
    n = len(tile_starts(length, tile, overlap))
    return min(length, tile, -(-(length + (n - 1) * overlap) // n))


def _tiled(
    net: nn.Module,
    lq: Tensor,
    scale: int,
    tile: int,
    overlap: int,
    mod: int,
    batch: int,
    dtype: torch.dtype,
    progress: Progress | None,
    acc: torch.device,
) -> Tensor:
    b, _, h, w = lq.shape
    overlap = min(overlap, tile // 2)
    th, tw = _fit_tile(h, tile, overlap), _fit_tile(w, tile, overlap)
    # The outer 3/8 of the overlap is context only (weight 0: the network saw padding
    # there); the weight then ramps up over the middle quarter, where the neighbour ramps down.
    margin = (overlap * scale * 3) // 8
    ramp = overlap * scale - 2 * margin
    ys, xs = tile_starts(h, th, overlap), tile_starts(w, tw, overlap)
    out: Tensor | None = None
    # The tiles form a grid and each window is a product of a row and a column ramp, so
    # the summed weights are the outer product of 1-D sums: no 2-D weight buffer needed.
    wy_sum = torch.zeros(h * scale, dtype=torch.float32, device=acc)
    wx_sum = torch.zeros(w * scale, dtype=torch.float32, device=acc)
    wys = {y: ramp_window(th * scale, ramp if y > 0 else 0, ramp if y + th < h else 0, margin, acc) for y in ys}
    wxs = {x: ramp_window(tw * scale, ramp if x > 0 else 0, ramp if x + tw < w else 0, margin, acc) for x in xs}
    for y, wy in wys.items():
        wy_sum[y * scale : (y + th) * scale] += wy
    for x, wx in wxs.items():
        wx_sum[x * scale : (x + tw) * scale] += wx
    boxes = [(y, x) for y in ys for x in xs]
    total = len(boxes)
    for i in range(0, total, batch):
        group = boxes[i : i + batch]
        x_in = torch.cat([lq[:, :, y : y + th, x : x + tw] for y, x in group], dim=0)
        y_out = _run(net, x_in, dtype, mod, scale)
        if y_out.device != acc:
            y_out = _to_cpu(y_out)
        if out is None:
            out = torch.zeros((b, y_out.shape[1], h * scale, w * scale), dtype=torch.float32, device=acc)
        for k, (y, x) in enumerate(group):
            # Only edges that face another tile fade out; image borders keep full weight.
            win = wys[y][:, None] * wxs[x][None, :]
            sl = (slice(None), slice(None), slice(y * scale, (y + th) * scale), slice(x * scale, (x + tw) * scale))
            out[sl] += y_out[k * b : (k + 1) * b] * win
        del y_out
        if progress is not None:
            progress(min(i + batch, total), total)
    if out is None:  # pragma: no cover - there is always at least one tile
        raise ValueError("tiled_forward: no tiles")
    return out.div_(wy_sum.view(-1, 1)).div_(wx_sum.view(1, -1))
