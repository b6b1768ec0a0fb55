"""PDM: a learned, probabilistic degradation model ``y = (x * k)↓s + n``.

Luo et al., "Learning the Degradation Distribution for Blind Image Super-Resolution",
CVPR 2022 (Sec. 3; official code ``greatlog/UnpairedSR``, ``codes/config/PDM-SR``):

- kernel module: a random code z_k ~ N(0, I) (one per image, or one per LR pixel when
  ``spatial``) goes through convolutions and residual blocks to a k x k kernel normalised by
  a softmax; the HR image is filtered with it (reflect padding) and subsampled by s in one
  strided step;
- noise module: the blurred, subsampled image (gradient stopped, as in the official code)
  and a per-pixel code z_n go through 3x3 convolutions and residual blocks to additive noise;
- a PatchGAN discriminator tells the degraded HR patches from real LR patches (LSGAN).

Two kernel parameterisations (``PdmModelConfig.kernel``): ``"free"`` is the paper's k*k
logits; ``"gaussian"`` predicts the Cholesky factor of a 2x2 covariance and builds the kernel
as ``softmax(-0.5 p^T Sigma^-1 p)`` over the k x k grid: centred (no shift ambiguity) and
smooth (no lattices of spikes), which is what converges in minutes on a CPU.

:func:`load_pdm` / :func:`save_pdm` read and write ``.safetensors`` files with metadata
``format = "esr-pdm"``, ``scale``, ``kernel_size`` and ``config`` (the JSON of
:class:`~esrcli.config.pdm.PdmModelConfig`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from esrcli.atomic import atomic_output
from esrcli.config.loader import from_dict
from esrcli.config.pdm import PdmModelConfig
from esrcli.errors import ConfigError, WeightsError, read_failure

__all__ = [
    "PDM_FORMAT",
    "KernelNet",
    "NoiseNet",
    "PatchDiscriminator",
    "PdmModel",
    "apply_kernels",
    "highpass",
    "kernel_moments",
    "save_pdm",
    "load_pdm",
    "read_pdm_metadata",
    "pdm_sheet",
]

PDM_FORMAT = "esr-pdm"
PDM_FORMAT_VERSION = "1"
_FREE_CENTER_LOGIT = 12.0  # softmax(12 at the centre, 0 elsewhere): 441 taps, centre weight > 0.997
_MIN_SIGMA = 0.3  # pixels: the narrowest Gaussian kernel (its off-centre taps still carry a gradient)
_CODE_GAIN = 0.1  # scale of the code-dependent part of the kernel parameters


class _ResBlock(nn.Module):
    """conv-ReLU-conv with an identity shortcut (no normalisation, so eval == train).

    The second convolution starts at zero (each block starts as the identity), which keeps
    the features of a deep stack without normalisation at the scale of the head's output.
    """

    def __init__(self, num_feat: int, ksize: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_feat, ksize, 1, ksize // 2)
        self.conv2 = nn.Conv2d(num_feat, num_feat, ksize, 1, ksize // 2)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


def _grid(ksize: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    ax = torch.arange(ksize, device=device, dtype=dtype) - ksize // 2
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    return xx, yy


class KernelNet(nn.Module):
    """Code z_k -> blur kernels.

    Args:
        cfg: the model configuration (``kernel_size``, ``kernel``, ``init_sigma``,
            ``code_channels``, ``spatial``, ``kernel_feat``, ``kernel_blocks``).

    Shapes:
        input ``(B, code_channels, h, w)`` (``h = w = 1`` unless spatial); output
        ``(B, k*k, h, w)``, non-negative, summing to 1 over dim 1.
    """

    def __init__(self, cfg: PdmModelConfig) -> None:
        super().__init__()
        self.ksize = cfg.kernel_size
        self.kind = cfg.kernel
        ks = 3 if cfg.spatial else 1
        self.head = nn.Conv2d(cfg.code_channels, cfg.kernel_feat, ks, 1, ks // 2)
        self.body = nn.Sequential(*[_ResBlock(cfg.kernel_feat, ks) for _ in range(cfg.kernel_blocks)])
        out = 3 if cfg.kernel == "gaussian" else cfg.kernel_size**2
        self.tail = nn.Conv2d(cfg.kernel_feat, out, 1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)
        # The mean kernel is a parameter of its own; the code only adds a (scaled) residual,
        # so Adam's per-weight steps on the tail do not add up to large jumps of every kernel.
        self.base = nn.Parameter(torch.zeros(out))
        if cfg.kernel == "free":
            with torch.no_grad():
                self.base[cfg.kernel_size**2 // 2] = _FREE_CENTER_LOGIT
        self.init_sigma = cfg.init_sigma

    def logits(self, z: Tensor) -> Tensor:
        """Pre-softmax kernel logits ``(B, k*k, h, w)``."""
        f = self.base.reshape(1, -1, 1, 1) + _CODE_GAIN * self.tail(self.body(F.relu(self.head(z))))
        if self.kind == "free":
            return f
        # Cholesky factor L = [[l11, 0], [l21, l22]] of Sigma = L L^T (pixels); the diagonal
        # stays above _MIN_SIGMA so the gradient never vanishes at a delta.
        span = self.init_sigma - _MIN_SIGMA
        l11 = _MIN_SIGMA + span * torch.exp(f[:, 0:1])
        l22 = _MIN_SIGMA + span * torch.exp(f[:, 1:2])
        l21 = f[:, 2:3]
        s11, s12, s22 = l11 * l11, l11 * l21, l21 * l21 + l22 * l22
        det = (l11 * l22) ** 2  # = s11 * s22 - s12**2, without the cancellation
        xx, yy = _grid(self.ksize, z.device, z.dtype)
        xx = xx.reshape(1, -1, 1, 1)
        yy = yy.reshape(1, -1, 1, 1)
        quad = (s22 * xx * xx - 2 * s12 * xx * yy + s11 * yy * yy) / det
        return -0.5 * quad

    def forward(self, z: Tensor) -> Tensor:
        return torch.softmax(self.logits(z), dim=1)


class NoiseNet(nn.Module):
    """(blurred LR image, per-pixel code z_n) -> additive noise.

    The output is multiplied by ``gain`` (a buffer, one factor per noise channel, 1 during
    training): ``esr train-pdm`` sets it in the exported EMA model so that the noise's
    high-frequency energy matches the live model's (weight averaging of an oscillating
    adversarial generator shrinks its output; measured 10-20% too little noise without it,
    see :func:`esrcli.train.pdm.calibrated_export`).

    Args:
        cfg: the model configuration (``code_channels``, ``noise_channels``, ``noise_feat``,
            ``noise_blocks``).

    Shapes:
        ``x`` ``(B, 3, h, w)`` in [0, 1], ``z`` ``(B, code_channels, h, w)``; output
        ``(B, noise_channels, h, w)`` (same units as the image).
    """

    def __init__(self, cfg: PdmModelConfig) -> None:
        super().__init__()
        self.head = nn.Conv2d(3 + cfg.code_channels, cfg.noise_feat, 3, 1, 1)
        self.body = nn.Sequential(*[_ResBlock(cfg.noise_feat, 3) for _ in range(cfg.noise_blocks)])
        self.tail = nn.Conv2d(cfg.noise_feat, cfg.noise_channels, 3, 1, 1)
        nn.init.normal_(self.tail.weight, 0.0, 1e-3)  # the official non-zero init: small noise at first
        nn.init.zeros_(self.tail.bias)
        self.register_buffer("gain", torch.ones(cfg.noise_channels))

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        out = self.tail(self.body(F.relu(self.head(torch.cat([x, z], dim=1)))))
        return out * self.gain.reshape(1, -1, 1, 1)


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator of the LR domain (the official ``PatchGANDiscriminator``).

    conv3x3 (3 -> f), then ``num_layers - 1`` stride-2 conv3x3 doubling the features, a
    stride-1 conv3x3, and a conv3x3 to one score per patch; LeakyReLU 0.2 and instance
    normalisation after every inner convolution, as the official code.

    With ``highpass`` the input is first reduced to its high frequencies, ``4 (x - B x)`` with
    B the 5x5 binomial blur (reflect padding), as in the frequency-separation discriminator
    of Fritsche et al., "Frequency Separation for Real-World Super-Resolution" (ICCVW 2019):
    the discriminator judges blur, aliasing and noise instead of content and colour. Measured
    on the synthetic domain of ``benchmarks/pdm_recovery.py``: LSGAN loss 0.03 after 120
    iterations against 0.20-0.27 for the plain input.

    Args:
        num_feat: features of the first layer (paper 64).
        num_layers: as the official ``nb`` (paper 3).
        highpass: judge the high-pass image.

    Shapes:
        ``(B, 3, h, w)`` -> ``(B, 1, h / 2**(num_layers-1), w / 2**(num_layers-1))``.
    """

    def __init__(self, num_feat: int = 64, num_layers: int = 3, highpass: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, num_feat, 3, 1, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, num_layers):
            prev, mult = mult, min(2**n, 8)
            c = num_feat * mult
            layers += [nn.Conv2d(num_feat * prev, c, 3, 2, 1), nn.InstanceNorm2d(c, affine=True), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2**num_layers, 8)
        c = num_feat * mult
        layers += [nn.Conv2d(num_feat * prev, c, 3, 1, 1), nn.InstanceNorm2d(c, affine=True), nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(c, 1, 3, 1, 1)]
        self.body = nn.Sequential(*layers)
        self.highpass = highpass

    def forward(self, x: Tensor) -> Tensor:
        return self.body(highpass(x) if self.highpass else x)


def highpass(x: Tensor) -> Tensor:
    """``4 (x - B x)`` per channel, B the 5x5 binomial blur with reflect padding.

    What the discriminator of :class:`PatchDiscriminator` sees with ``highpass``: white
    noise of standard deviation sigma comes out with about ``3.57 sigma``.

    Args:
        x: ``(B, C, h, w)`` float.

    Returns:
        ``(B, C, h, w)``, same dtype.
    """
    b = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=x.device, dtype=x.dtype) / 16
    c = x.shape[1]
    blur = (b[:, None] * b[None]).expand(c, 1, 5, 5)
    return 4 * (x - F.conv2d(_pad(x, 2), blur, groups=c))


def _pad(x: Tensor, p: int) -> Tensor:
    mode = "reflect" if min(x.shape[-2:]) > p else "replicate"
    return F.pad(x, (p, p, p, p), mode=mode)


def apply_kernels(hr: Tensor, kernels: Tensor, scale: int) -> Tensor:
    """Blur with per-image (or per-LR-pixel) kernels and subsample by ``scale`` in one step.

    Output pixel ``(i, j)`` is the kernel centred on HR pixel ``(i*s, j*s)``; borders are
    reflect-padded (replicated for images smaller than half the kernel).

    Args:
        hr: ``(B, C, H, W)`` float.
        kernels: ``(B, k*k, 1, 1)`` (one kernel per image) or ``(B, k*k, H//s, W//s)``.
        scale: subsampling factor s.

    Returns:
        ``(B, C, H // s, W // s)``.
    """
    b, c, h, w = hr.shape
    kk = kernels.shape[1]
    k = math.isqrt(kk)
    oh, ow = h // scale, w // scale
    x = _pad(hr, k // 2)
    if kernels.shape[-2:] == (1, 1):
        weight = kernels.reshape(b, 1, k, k).repeat_interleave(c, dim=0)
        out = F.conv2d(x.reshape(1, b * c, *x.shape[-2:]), weight, stride=scale, groups=b * c)
        return out.reshape(b, c, *out.shape[-2:])[..., :oh, :ow]
    cols = F.unfold(x.reshape(b * c, 1, *x.shape[-2:]), kernel_size=k, stride=scale)
    gh = (x.shape[-2] - k) // scale + 1
    gw = (x.shape[-1] - k) // scale + 1
    cols = cols.reshape(b, c, kk, gh, gw)[..., :oh, :ow]
    return (cols * kernels[:, None]).sum(dim=2)


def kernel_moments(kernels: Tensor) -> tuple[Tensor, Tensor]:
    """Centroid and covariance of kernels.

    Args:
        kernels: ``(N, k, k)`` non-negative, each summing to 1.

    Returns:
        ``(mean, cov)``: ``(N, 2)`` centroid ``(x, y)`` in pixels from the centre (x along
        columns, y down the rows) and ``(N, 2, 2)`` second central moments.
    """
    k = kernels.shape[-1]
    xx, yy = _grid(k, kernels.device, kernels.dtype)
    w = kernels / kernels.sum(dim=(-2, -1), keepdim=True)
    mx = (w * xx).sum(dim=(-2, -1))
    my = (w * yy).sum(dim=(-2, -1))
    dx = xx - mx[:, None, None]
    dy = yy - my[:, None, None]
    cxx = (w * dx * dx).sum(dim=(-2, -1))
    cyy = (w * dy * dy).sum(dim=(-2, -1))
    cxy = (w * dx * dy).sum(dim=(-2, -1))
    cov = torch.stack([torch.stack([cxx, cxy], -1), torch.stack([cxy, cyy], -1)], -2)
    return torch.stack([mx, my], -1), cov


class PdmModel(nn.Module):
    """The learned degradation: kernel module, optional noise module.

    Args:
        cfg: the model configuration.

    Attributes:
        cfg: the configuration.
        scale: subsampling factor s.
        kernel_size: side k of the kernels.
    """

    def __init__(self, cfg: PdmModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.scale = cfg.scale
        self.kernel_size = cfg.kernel_size
        self.kernel_net = KernelNet(cfg)
        self.noise_net = NoiseNet(cfg) if cfg.noise else None

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _randn(self, shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
        dev = self._device()
        gen_dev = generator.device if generator is not None else dev
        return torch.randn(shape, generator=generator, device=gen_dev).to(dev)

    def draw_codes(self, batch: int, lr_size: tuple[int, int], generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
        """Draw z_k then (when there is a noise module) z_n, in that order.

        Returns:
            ``(z_k, z_n)``: ``(B, code, 1, 1)`` (or ``(B, code, h, w)`` when spatial) and
            ``(B, code, h, w)`` or ``None``.
        """
        c = self.cfg.code_channels
        zk_shape = (batch, c, *lr_size) if self.cfg.spatial else (batch, c, 1, 1)
        zk = self._randn(zk_shape, generator)
        zn = self._randn((batch, c, *lr_size), generator) if self.noise_net is not None else None
        return zk, zn

    def forward(self, hr: Tensor, zk: Tensor, zn: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        """Degrade with given codes (training path, differentiable).

        Args:
            hr: ``(B, 3, H, W)`` RGB in [0, 1].
            zk, zn: codes from :meth:`draw_codes`.

        Returns:
            ``(lr, kernels, noise)``: ``(B, 3, H//s, W//s)``, ``(B, k*k, h', w')`` and the noise
            ``(B, 1|3, H//s, W//s)`` (or ``None`` when ``zn`` is ``None``).
        """
        kernels = self.kernel_net(zk)
        blurred = apply_kernels(hr, kernels, self.scale)
        if zn is None or self.noise_net is None:
            return blurred, kernels, None
        noise = self.noise_net(blurred.detach(), zn)
        return blurred + noise, kernels, noise

    @torch.no_grad()
    def sample_kernels(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` kernels from the learned distribution.

        For a spatially variant model each kernel is the one of a single-pixel code map.

        Returns:
            ``(n, k, k)`` float32, non-negative, each summing to 1.
        """
        zk = self._randn((n, self.cfg.code_channels, 1, 1), generator)
        k = self.kernel_net(zk)
        return k.reshape(n, self.kernel_size, self.kernel_size).float()

    @torch.no_grad()
    def degrade(self, hr: Tensor, *, noise: bool = True, generator: torch.Generator | None = None) -> Tensor:
        """Synthesise LR images from HR images.

        Codes are drawn kernel first, so with equally seeded generators
        ``degrade(x, noise=False)`` equals ``degrade(x, noise=True)`` minus the noise.

        Args:
            hr: ``(B, 3, H, W)`` RGB in [0, 1] (float).
            noise: add the learned noise.
            generator: source of the random codes (its device may differ from the model's).

        Returns:
            ``(B, 3, H // s, W // s)`` float32, not clamped.

        Raises:
            ValueError: not a ``(B, 3, H, W)`` tensor, or a side below the scale.
        """
        if hr.dim() != 4 or hr.shape[1] != 3:
            raise ValueError(f"degrade: expected (B, 3, H, W) RGB, got {tuple(hr.shape)}")
        if min(hr.shape[-2:]) < self.scale:
            raise ValueError(f"degrade: image {hr.shape[-1]}x{hr.shape[-2]} is smaller than the scale {self.scale}")
        hr = hr.to(self._device(), torch.float32)
        lr_size = (hr.shape[-2] // self.scale, hr.shape[-1] // self.scale)
        zk, zn = self.draw_codes(hr.shape[0], lr_size, generator)
        out, _, _ = self.forward(hr, zk, zn if noise else None)
        return out


def save_pdm(path: str | os.PathLike, model: PdmModel, extra_metadata: dict[str, str] | None = None) -> Path:
    """Write a PDM model as ``.safetensors`` atomically.

    Metadata: ``format`` ``"esr-pdm"``, ``format_version``, ``scale``, ``kernel_size``,
    ``config`` (JSON of the model configuration), ``esr_version``, plus ``extra_metadata``.

    Raises:
        WeightsError: the destination cannot be written.
    """
    from safetensors.torch import save

    from esrcli import __version__

    path = Path(path)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in model.state_dict().items()}
    meta = {
        **(extra_metadata or {}),
        "format": PDM_FORMAT,
        "format_version": PDM_FORMAT_VERSION,
        "scale": str(model.scale),
        "kernel_size": str(model.kernel_size),
        "config": json.dumps(model.cfg.to_dict()),
        "esr_version": __version__,
    }
    data = save(tensors, metadata=meta)
    try:
        with atomic_output(path) as fh:
            fh.write(data)
    except OSError as exc:
        raise WeightsError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return path


def read_pdm_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The safetensors metadata of a PDM file, checked to be one.

    Raises:
        WeightsError: missing/unreadable file, not safetensors, or not an esr PDM file
            (e.g. a generator); one line naming the file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise WeightsError(read_failure(path, exc, "a PDM file")) from None
    if len(head) < 9 or head[8:9] != b"{":
        raise WeightsError(f"{path}: not a PDM file (not safetensors; esr train-pdm writes RUN/pdm.safetensors)")
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = dict(fh.metadata() or {})
    except Exception as exc:  # noqa: BLE001 - any header problem means a bad file
        raise WeightsError(f"{path}: corrupt or truncated safetensors file ({type(exc).__name__})") from None
    fmt = meta.get("format")
    if fmt != PDM_FORMAT:
        what = "an esr generator (super-resolution model)" if fmt == "esr-model" or "arch" in meta else "not an esr PDM file"
        raise WeightsError(f"{path}: {what}, not a PDM degradation model (esr train-pdm writes RUN/pdm.safetensors)")
    return meta


def load_pdm(path: str | os.PathLike, *, scale: int | None = None, device: str | torch.device = "cpu") -> PdmModel:
    """Load a PDM model written by :func:`save_pdm` (or ``esr train-pdm``), in eval mode.

    Args:
        path: the ``.safetensors`` file.
        scale: when given, the scale the model must have.
        device: where to put the model.

    Returns:
        The :class:`PdmModel` (``scale``, ``kernel_size``, ``sample_kernels``, ``degrade``).

    Raises:
        WeightsError: not a PDM file (a generator, another file), a corrupt file, weights
            that do not match the stored configuration, or a model of another scale.
    """
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_pdm_metadata(path)
    try:
        cfg = from_dict(PdmModelConfig, json.loads(meta.get("config", "{}")))
    except (json.JSONDecodeError, ConfigError, TypeError) as exc:
        raise WeightsError(f"{path}: bad PDM configuration in metadata ({exc})") from None
    if scale is not None and cfg.scale != scale:
        raise WeightsError(f"{path}: PDM model for scale {cfg.scale}, expected {scale}")
    model = PdmModel(cfg)
    try:
        sd = load_file(str(path))
        if model.noise_net is not None:  # files of esr 0.x before the calibrated noise gain
            sd.setdefault("noise_net.gain", torch.ones(cfg.noise_channels))
        model.load_state_dict(sd, strict=True)
    except Exception as exc:  # noqa: BLE001 - missing/unexpected keys, shape mismatch, bad bytes
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"{path}: weights do not match the PDM configuration ({first})") from None
    return model.eval().requires_grad_(False).to(device)


def pdm_sheet(hr: Tensor, lrs: Tensor, kernels: Tensor, noises: Tensor | None, title: str = "") -> Tensor:
    """A picture of a learned degradation: per sample, the LR image, its kernel and its noise.

    Row layout: the HR crop; then one row per sample with the LR image enlarged ``s`` x
    (nearest), the kernel (enlarged, scaled to its maximum, captioned with its widths and
    orientation) and the noise map (``0.5 + 8 * noise``, gray when one channel).

    Args:
        hr: ``(3, H, W)`` HR crop in [0, 1].
        lrs: ``(N, 3, H/s, W/s)`` LR samples.
        kernels: ``(N, k, k)`` their kernels.
        noises: ``(N, 1|3, H/s, W/s)`` their noise, or ``None``.
        title: caption of the HR tile.

    Returns:
        ``(rows, cols, 3)`` float32 RGB sheet in [0, 1] (numpy-compatible tensor layout).
    """
    from PIL import Image, ImageDraw

    from esrcli.degrade.sheet import _font, text_width

    _, h, w = hr.shape
    s = h // lrs.shape[-2]
    n, k = kernels.shape[0], kernels.shape[-1]
    pad, cap = 6, 16
    kz = max(1, min(h, w) // k)
    cols = 3 if noises is not None else 2
    font = _font(11)
    # as wide as the longest caption (e.g. "kernel 1.23/0.98 px 145 deg"): a small crop's captions would overlap
    cell_w = max(w, k * kz, text_width(["kernel 88.88/88.88 px 188 deg"], font))
    sheet = Image.new("RGB", (cols * (cell_w + pad) + pad, (n + 1) * (h + cap + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)

    def paste(img: Tensor, col: int, row: int, caption: str) -> None:
        a = (img.clamp(0, 1).permute(1, 2, 0).expand(-1, -1, 3) * 255).round().to(torch.uint8).cpu().numpy()
        x0, y0 = pad + col * (cell_w + pad), pad + row * (h + cap + pad)
        sheet.paste(Image.fromarray(a), (x0, y0))
        draw.text((x0, y0 + img.shape[1] + 2), caption, fill=(0, 0, 0), font=font)

    paste(hr, 0, 0, title or "HR crop")
    for i in range(n):
        big = lrs[i].repeat_interleave(s, 1).repeat_interleave(s, 2)
        paste(big, 0, i + 1, f"LR sample {i + 1} (x{s} nearest)")
        ki = kernels[i] / kernels[i].max()
        st = kernel_moments(kernels[i : i + 1].double())[1][0]
        ev, evec = torch.linalg.eigh(st)
        ang = math.degrees(math.atan2(float(evec[1, 1]), float(evec[0, 1]))) % 180
        paste(ki.repeat_interleave(kz, 0).repeat_interleave(kz, 1)[None], 1, i + 1,
              f"kernel {float(ev[1].clamp_min(0).sqrt()):.2f}/{float(ev[0].clamp_min(0).sqrt()):.2f} px {ang:.0f} deg")
        if noises is not None:
            nz = noises[i]
            big_n = (0.5 + 8 * nz).repeat_interleave(s, 1).repeat_interleave(s, 2)
            paste(big_n, 2, i + 1, f"noise x8, std {float(nz.std()) * 255:.1f}/255")
    return torch.from_numpy(np.asarray(sheet, dtype=np.float32) / 255.0)
