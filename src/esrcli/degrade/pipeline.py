"""Real-ESRGAN's second-order degradation pipeline: ``degrade(gt, cfg, generator) -> (lq, params)``.

The order of operations is that of Real-ESRGAN's ``RealESRNetModel.feed_data`` (Wang et al.,
ICCVW 2021, Sec. 3 and Fig. 2):

1. first stage: blur (kernel1) -> random resize (up/down/keep, area/bilinear/bicubic, by a
   scale factor) -> Gaussian or Poisson noise (colour or gray, clipped) -> clamp -> JPEG;
2. second stage: blur (kernel2, skipped with probability 1 - ``blur_prob``) -> random resize
   to ``gt / scale * factor`` -> Gaussian or Poisson noise;
3. final step, in random order (``sinc_first_prob`` = 0.5): [resize to ``gt / scale`` + sinc
   filter] and [clamp + JPEG];
4. clamp and round to 8-bit levels.

Unlike Real-ESRGAN, which draws resize factors, interpolation modes, the noise type, the
second-blur decision and the final order once per batch, every parameter is drawn per
sample by default, so a batch mixes sizes freely and its samples are degraded one by one
(on the CPU's threads). With ``[degrade] per_batch_resize = true`` the resizes and the final
order are drawn once per batch, as Real-ESRGAN does; samples that share them keep one size
through the pipeline, and on a GPU they are degraded together (per-sample blur kernels as
one grouped convolution, one resize, one JPEG call per step). The parameters are returned as
JSON-serialisable dicts (one per sample) that rebuild the output with
:func:`degrade_with_params` (each carries the seed of its noise generator).

JPEG runs through libjpeg (OpenCV) by default, or with ``[degrade] jpeg_codec = "torch"``
through esr's torch implementation of the same codec on the images' device, which spares a
GPU pipeline two round trips through the host per sample.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from esrcli.config.degrade import DegradeConfig, StageConfig
from esrcli.degrade.draws import Draws
from esrcli.degrade.kernels import make_kernel, sample_blur_kernel, sample_final_sinc
from esrcli.errors import DataError
from esrcli.ops.filters import filter2d, filter_separable, gaussian_kernel1d, usm_sharpen
from esrcli.ops.jpeg import jpeg_compress, jpeg_compress_torch
from esrcli.ops.noise import add_gaussian_noise, add_poisson_noise
from esrcli.ops.resize import resize

__all__ = ["sample_params", "degrade", "degrade_with_params", "synthesize_pairs", "paired_random_crop"]


def _sample_resize(stage: StageConfig, draws: Draws) -> dict[str, Any]:
    direction = draws.choices(("up", "down", "keep"), stage.resize_prob)
    if direction == "up":
        factor = draws.uniform(1.0, stage.resize_range[1])
    elif direction == "down":
        factor = draws.uniform(stage.resize_range[0], 1.0)
    else:
        factor = 1.0
    return {"direction": direction, "factor": factor, "mode": draws.choice(stage.resize_modes)}


def _sample_noise(stage: StageConfig, draws: Draws) -> dict[str, Any]:
    if draws.random() < stage.gaussian_noise_prob:
        level = draws.uniform(*stage.noise_range)
        return {"type": "gaussian", "sigma": level, "gray": draws.random() < stage.gray_noise_prob}
    level = draws.uniform(*stage.poisson_scale_range)
    return {"type": "poisson", "scale": level, "gray": draws.random() < stage.gray_noise_prob}


def _sample_stage(stage: StageConfig, draws: Draws, resize: dict[str, Any] | None = None) -> dict[str, Any]:
    """One stage's draws; ``resize`` (a batch's shared draw) replaces the stage's own."""
    kernel = sample_blur_kernel(stage, draws)
    blur = draws.random() < stage.blur_prob
    resize = dict(resize) if resize is not None else _sample_resize(stage, draws)
    return {"blur": kernel if blur else None, "resize": resize, "noise": _sample_noise(stage, draws)}


def _quality(draws: Draws, lo: float, hi: float) -> int:
    return int(min(100, max(1, round(draws.uniform(lo, hi)))))


def sample_params(cfg: DegradeConfig, batch: int, generator: torch.Generator) -> list[dict[str, Any]]:
    """Draw the degradation parameters of ``batch`` samples.

    Args:
        cfg: the degradation configuration.
        batch: number of samples.
        generator: random generator (any device); the same state gives the same parameters.

    Returns:
        One JSON-serialisable dict per sample with keys ``scale``, ``seed`` (of the noise
        generator), ``first``, ``second`` (each ``blur`` (kernel dict or ``None``), ``resize``
        (``direction``, ``factor``, ``mode``), ``noise`` (``type`` gaussian/poisson, ``sigma``
        (1/255 units) or ``scale``, ``gray``)), ``first.jpeg_quality`` and ``final``
        (``order`` ``"sinc_first"``/``"jpeg_first"``, ``resize_mode``, ``sinc`` (dict or
        ``None``), ``jpeg_quality``); ``jpeg_codec`` (``"torch"``) only when the configuration
        asks for that codec instead of libjpeg. With ``cfg.per_batch_resize`` every sample
        carries the first sample's ``first.resize``, ``second.resize``, ``final.order`` and
        ``final.resize_mode`` (the first sample's draws are those of the per-sample mode).
    """
    draws = Draws(generator)
    out: list[dict[str, Any]] = []
    for _ in range(batch):
        shared = out[0] if out and cfg.per_batch_resize else None
        first = _sample_stage(cfg.first, draws, shared and shared["first"]["resize"])
        first["jpeg_quality"] = _quality(draws, *cfg.first.jpeg_range)
        second = _sample_stage(cfg.second, draws, shared and shared["second"]["resize"])
        if shared is None:
            order = "sinc_first" if draws.random() < cfg.final.sinc_first_prob else "jpeg_first"
            resize_mode = draws.choice(cfg.final.resize_modes)
        else:
            order, resize_mode = shared["final"]["order"], shared["final"]["resize_mode"]
        final = {
            "order": order,
            "resize_mode": resize_mode,
            "sinc": sample_final_sinc(cfg.final, draws),
            "jpeg_quality": _quality(draws, *cfg.second.jpeg_range),
        }
        sample = {"scale": cfg.scale, "seed": draws.seed(), "first": first, "second": second, "final": final}
        if cfg.jpeg_codec != "libjpeg":
            sample["jpeg_codec"] = cfg.jpeg_codec
        out.append(sample)
    return out


def _noise(x: torch.Tensor, p: dict[str, Any], gen: torch.Generator) -> torch.Tensor:
    if p["type"] == "gaussian":
        return add_gaussian_noise(x, p["sigma"], p["gray"], gen, clip=True)
    return add_poisson_noise(x, p["scale"], p["gray"], gen, clip=True)


def _blur_group(x: torch.Tensor, kernels: list[dict[str, Any] | None]) -> torch.Tensor:
    """Blur each sample of ``x`` with its kernel (``None``: unchanged).

    Isotropic Gaussians are separable (2k instead of k^2 operations per pixel). Samples whose
    kernels run the same way (separable or full 2-D, of one size) are filtered together: one
    grouped convolution each on a GPU.
    """
    groups: dict[tuple[bool, int], list[int]] = {}
    for i, k in enumerate(kernels):
        if k is not None:
            groups.setdefault((k["type"] == "iso", int(k["size"])), []).append(i)
    out = x
    for (separable, size), idx in groups.items():
        whole = len(idx) == len(kernels)
        sel = None if whole else torch.tensor(idx, device=x.device)
        src = x if whole else x[sel]
        if separable:
            k1 = torch.stack([gaussian_kernel1d(size, float(kernels[i]["sigma_x"]), dtype=torch.float64) for i in idx])
            blurred = filter_separable(src, k1, k1)
        else:
            blurred = filter2d(src, torch.stack([make_kernel(kernels[i], device=x.device, dtype=x.dtype) for i in idx]))
        if whole:
            return blurred
        if out is x:
            out = x.clone()
        out[sel] = blurred
    return out


def _noise_group(x: torch.Tensor, noises: list[dict[str, Any]], gens: list[torch.Generator]) -> torch.Tensor:
    """Each sample's noise from its own generator (as one sample alone draws it)."""
    if len(noises) == 1:
        return _noise(x, noises[0], gens[0])
    return torch.cat([_noise(x[i : i + 1], noises[i], gens[i]) for i in range(len(noises))])


_JPEG_CODECS = {"libjpeg": jpeg_compress, "torch": jpeg_compress_torch}


def _shape_key(p: dict[str, Any]) -> tuple[Any, ...]:
    """What fixes a sample's sizes and steps: samples with equal keys can run as one batch."""
    r1, r2, fin = p["first"]["resize"], p["second"]["resize"], p["final"]
    return (r1["factor"], r1["mode"], r2["factor"], r2["mode"], fin["order"], fin["resize_mode"], p.get("jpeg_codec", "libjpeg"))


def _degrade_group(x: torch.Tensor, ps: list[dict[str, Any]]) -> torch.Tensor:
    """Degrade ``(G, 3, H, W)`` images whose parameter dicts share :func:`_shape_key`."""
    p = ps[0]
    codec = p.get("jpeg_codec", "libjpeg")
    if codec not in _JPEG_CODECS:
        raise ValueError(f"jpeg_codec: expected one of {', '.join(_JPEG_CODECS)}, got {codec!r}")
    jpeg_compress = _JPEG_CODECS[codec]
    scale = int(p["scale"])
    ori_h, ori_w = x.shape[-2:]
    gens = []
    for q in ps:
        gen = torch.Generator(device=x.device)
        gen.manual_seed(int(q["seed"]))
        gens.append(gen)

    def quality(step: str) -> list[int]:
        return [q[step]["jpeg_quality"] for q in ps]

    # first stage: blur, resize by a factor, noise, JPEG
    out = _blur_group(x, [q["first"]["blur"] for q in ps])
    out = resize(out, scale_factor=p["first"]["resize"]["factor"], mode=p["first"]["resize"]["mode"])
    out = _noise_group(out, [q["first"]["noise"] for q in ps], gens)
    out = jpeg_compress(out.clamp_(0, 1), quality("first"))

    # second stage: blur (maybe skipped), resize to gt/scale*factor, noise
    out = _blur_group(out, [q["second"]["blur"] for q in ps])
    f2 = p["second"]["resize"]["factor"]
    size = (max(1, int(ori_h / scale * f2)), max(1, int(ori_w / scale * f2)))
    out = resize(out, size=size, mode=p["second"]["resize"]["mode"])
    out = _noise_group(out, [q["second"]["noise"] for q in ps], gens)

    # final step: [resize back + sinc] and [JPEG] in random order
    fin = p["final"]
    lq_size = (ori_h // scale, ori_w // scale)
    sincs = [q["final"]["sinc"] for q in ps]
    if fin["order"] == "sinc_first":
        out = _blur_group(resize(out, size=lq_size, mode=fin["resize_mode"]), sincs)
        out = jpeg_compress(out.clamp_(0, 1), quality("final"))
    else:
        out = jpeg_compress(out.clamp_(0, 1), quality("final"))
        out = _blur_group(resize(out, size=lq_size, mode=fin["resize_mode"]), sincs)
    return torch.clamp((out * 255.0).round(), 0, 255) / 255.0


def _check_gt(gt: torch.Tensor, scale: int) -> None:
    if not isinstance(gt, torch.Tensor) or gt.dim() != 4 or gt.shape[1] != 3 or not gt.is_floating_point():
        shape = tuple(gt.shape) if isinstance(gt, torch.Tensor) else type(gt).__name__
        raise ValueError(f"expected a float RGB batch (B, 3, H, W), got {shape}")
    h, w = gt.shape[-2:]
    if h < scale or w < scale:
        raise DataError(f"image of {w}x{h} pixels is smaller than the scale factor {scale}")


GPU_DEGRADE_THREADS = 1  # samples degraded at once on a GPU (see degrade_with_params)


def degrade_with_params(gt: torch.Tensor, params: list[dict[str, Any]], *, batched: bool | None = None) -> torch.Tensor:
    """Apply given degradation parameters (from :func:`sample_params`) to a batch.

    Deterministic: the same ``gt`` and ``params`` give the same ``lq`` on the same device and
    path. Sample by sample, on ``torch.get_num_threads()`` threads on a CPU; batched, samples
    that share their resizes and final order (``[degrade] per_batch_resize``) go through
    each step together, each sample with its own kernels, noise generator and qualities. On
    a CPU both paths give the same output bit for bit (tests/test_degrade.py); on a GPU the
    grouped convolutions may round differently from one sample's, and Poisson noise, which
    quantises its input, can turn such a difference into another noise draw.

    Args:
        gt: ``(B, 3, H, W)`` float32 RGB in ``[0, 1]``, any device.
        params: ``B`` parameter dicts, all with the same ``scale``.
        batched: degrade samples with equal sizes and steps together; ``None`` (default): on
            GPUs (and other non-CPU devices) only.

    Returns:
        ``lq``: ``(B, 3, H // scale, W // scale)`` float32 in ``[0, 1]`` on 8-bit levels.

    Raises:
        ValueError: a malformed batch, a parameter count that does not match it or mixed scales.
        DataError: images smaller than the scale factor.
    """
    if len(params) != gt.shape[0]:
        raise ValueError(f"got {len(params)} parameter sets for a batch of {gt.shape[0]}")
    scales = {int(p["scale"]) for p in params}
    if len(scales) != 1:
        raise ValueError(f"parameter sets mix scales {sorted(scales)}")
    _check_gt(gt, scales.pop())
    if batched is None:
        batched = gt.device.type != "cpu"
    if batched:
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, p in enumerate(params):
            groups.setdefault(_shape_key(p), []).append(i)
        if len(groups) < len(params):
            with torch.no_grad():
                if len(groups) == 1:
                    return _degrade_group(gt, params)
                out = None
                for idx in groups.values():
                    sel = torch.tensor(idx, device=gt.device)
                    lq = _degrade_group(gt[sel], [params[i] for i in idx])
                    if out is None:
                        out = lq.new_empty((len(params), *lq.shape[1:]))
                    out[sel] = lq
                return out
    # On the CPU the samples run on torch's threads. On a GPU one after another: threads
    # there were slower (an H200, batch 48 of 400 px: 14.9 pairs/s on 8 threads against 20.2
    # serially; docs/gpu.md), the libjpeg round trips do not overlap the kernels that way.
    workers = min(torch.get_num_threads() if gt.device.type == "cpu" else GPU_DEGRADE_THREADS, len(params))

    def one(i: int) -> torch.Tensor:
        with torch.no_grad():
            return _degrade_group(gt[i : i + 1], [params[i]])

    if workers <= 1:
        return torch.cat([one(i) for i in range(len(params))])
    # Samples are independent (each has its own noise generator), so they run on a few
    # threads: OpenCV, libjpeg and most torch kernels release the GIL. Same result as serial.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return torch.cat(list(pool.map(one, range(len(params)))))


def degrade(gt: torch.Tensor, cfg: DegradeConfig, generator: torch.Generator) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Synthesise low-quality images with Real-ESRGAN's high-order degradation model.

    Args:
        gt: ``(B, 3, H, W)`` float32 RGB in ``[0, 1]`` (CPU or CUDA); ``H`` and ``W`` should be
            multiples of ``cfg.scale`` (otherwise the LQ size is rounded down).
        cfg: the degradation configuration.
        generator: random generator; the same seed gives the same output.

    Returns:
        ``(lq, params)``: ``lq`` is ``(B, 3, H // scale, W // scale)`` float32 in ``[0, 1]``
        rounded to 8-bit levels; ``params`` one JSON-serialisable dict per sample
        (see :func:`sample_params`).

    Raises:
        ValueError: ``gt`` is not a float ``(B, 3, H, W)`` tensor.
        DataError: images smaller than the scale factor.
    """
    _check_gt(gt, cfg.scale)
    params = sample_params(cfg, gt.shape[0], generator)
    return degrade_with_params(gt, params), params


def paired_random_crop(
    gts: list[torch.Tensor], lq: torch.Tensor, gt_size: int, scale: int, generator: torch.Generator
) -> tuple[list[torch.Tensor], torch.Tensor, list[tuple[int, int]]]:
    """Crop aligned ``gt_size`` GT and ``gt_size // scale`` LQ patches, one position per sample.

    Args:
        gts: GT-sized tensors ``(B, C, H, W)`` cropped at the same place (e.g. gt and gt_usm).
        lq: ``(B, C, H // scale, W // scale)``.
        gt_size: GT patch side (a multiple of ``scale``).
        scale: SR factor.
        generator: random generator for the positions.

    Returns:
        ``(cropped gts, cropped lq, [(top, left)])`` with positions in LQ pixels.

    Raises:
        DataError: the LQ image is smaller than the patch, or GT and LQ sizes disagree.
    """
    b, _, h_lq, w_lq = lq.shape
    lq_size = gt_size // scale
    if h_lq < lq_size or w_lq < lq_size:
        raise DataError(f"LQ images ({w_lq}x{h_lq}) are smaller than the LQ patch size {lq_size} (gt_size {gt_size} / scale {scale})")
    for g in gts:
        if g.shape[-2] < h_lq * scale or g.shape[-1] < w_lq * scale:
            raise DataError(f"GT size {tuple(g.shape[-2:])} does not match LQ size {(h_lq, w_lq)} x scale {scale}")
    draws = Draws(generator, block=2 * b)
    pos = [(draws.randint(0, h_lq - lq_size), draws.randint(0, w_lq - lq_size)) for _ in range(b)]
    lq_out = torch.stack([lq[i, :, t : t + lq_size, l : l + lq_size] for i, (t, l) in enumerate(pos)])
    gts_out = [
        torch.stack([g[i, :, t * scale : t * scale + gt_size, l * scale : l * scale + gt_size] for i, (t, l) in enumerate(pos)])
        for g in gts
    ]
    return gts_out, lq_out, pos


def _usm(gt: torch.Tensor, cfg: DegradeConfig) -> torch.Tensor:
    return usm_sharpen(gt, cfg.usm_radius, cfg.usm_weight, cfg.usm_threshold)


def _usm_crops(gt: torch.Tensor, pos: list[tuple[int, int]], cfg: DegradeConfig) -> torch.Tensor:
    """USM of the GT crops only, each computed on its crop plus a margin of two blur radii.

    USM at a pixel depends on the image within two Gaussian radii (the blur, then the blur
    of the mask), so with that margin (clipped at the image border, where the reflection is
    then the same) the result equals cropping the USM of the whole image, at less cost.
    """
    ksize = cfg.usm_radius + 1 if cfg.usm_radius % 2 == 0 else cfg.usm_radius
    margin = 2 * (ksize // 2)
    h, w = gt.shape[-2:]
    out = []
    for i, (t, l) in enumerate(pos):
        top, left = t * cfg.scale, l * cfg.scale
        y0, x0 = max(0, top - margin), max(0, left - margin)
        y1, x1 = min(h, top + cfg.gt_size + margin), min(w, left + cfg.gt_size + margin)
        region = _usm(gt[i : i + 1, :, y0:y1, x0:x1], cfg)
        out.append(region[0, :, top - y0 : top - y0 + cfg.gt_size, left - x0 : left - x0 + cfg.gt_size])
    return torch.stack(out)


def synthesize_pairs(
    gt: torch.Tensor,
    cfg: DegradeConfig,
    generator: torch.Generator,
    gt_usm: bool,
    *,
    degrade_usm: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[dict[str, Any]]]:
    """Make training pairs the way Real-ESRGAN's ``feed_data`` does: USM, degrade, paired crop.

    Args:
        gt: ``(B, 3, H, W)`` float32 RGB in ``[0, 1]`` source crops (Real-ESRGAN: 400x400),
            ``H, W >= cfg.gt_size``.
        cfg: the degradation configuration (``gt_size``, ``scale``, ``usm_*``).
        generator: random generator; the same seed gives the same pairs.
        gt_usm: also return the unsharp-masked GT (Real-ESRGAN+ trains its pixel and perceptual
            losses against it); when false the returned ``gt_usm`` is the plain GT crop.
        degrade_usm: degrade the sharpened GT instead of the plain one; ``None`` (default)
            follows ``gt_usm``, as Real-ESRGAN does (both ``RealESRNetModel`` with ``gt_usm`` and
            ``RealESRGANModel`` blur the USM GT in the first stage). With ``False`` the USM is
            computed only around the crops.

    Returns:
        ``(gt, gt_usm, lq, params)``: ``(B, 3, gt_size, gt_size)`` crops of the GT and of its
        USM version, the ``(B, 3, gt_size/scale, gt_size/scale)`` LQ crop, and the per-sample
        parameter dicts with ``crop`` (``top``, ``left`` in LQ pixels) added.

    Raises:
        ValueError: ``gt`` is not a float ``(B, 3, H, W)`` tensor.
        DataError: ``gt`` smaller than ``cfg.gt_size``.
    """
    _check_gt(gt, cfg.scale)
    h, w = gt.shape[-2:]
    if h < cfg.gt_size or w < cfg.gt_size:
        raise DataError(f"GT images ({w}x{h}) are smaller than gt_size {cfg.gt_size}")
    h, w = h - h % cfg.scale, w - w % cfg.scale
    gt = gt[:, :, :h, :w]
    if degrade_usm is None:
        degrade_usm = gt_usm
    with torch.no_grad():
        if degrade_usm:
            usm = _usm(gt, cfg)
            lq, params = degrade(usm, cfg, generator)
            crops = [gt, usm] if gt_usm else [gt]
            crops, lq, pos = paired_random_crop(crops, lq, cfg.gt_size, cfg.scale, generator)
        else:
            lq, params = degrade(gt, cfg, generator)
            (gt_crop,), lq, pos = paired_random_crop([gt], lq, cfg.gt_size, cfg.scale, generator)
            crops = [gt_crop, _usm_crops(gt, pos, cfg)] if gt_usm else [gt_crop]
    for p, (t, l) in zip(params, pos):
        p["crop"] = {"top": t, "left": l}
    gt_out = crops[0]
    usm_out = crops[1] if gt_usm else gt_out
    return gt_out, usm_out, lq, params
