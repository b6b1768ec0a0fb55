"""Training of the estimator CNN (``esr train-estimator``): config, checkpoints, resume, JSONL metrics.

The run folder holds ``config.toml`` (the resolved config), ``metrics.jsonl`` (one JSON object per
logged step: iteration, loss, per-target MAE in natural units), ``checkpoint.pt`` (model, optimiser,
iteration, RNG state; written atomically every ``checkpoint_every`` iterations and at the end) and
``esr-estimator.safetensors`` (the weights with metadata, ready to embed).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from esrcli.errors import ConfigError, DataError, TrainingError, folder_failure
from esrcli.estimate.sampler import MIN_SIDE, SamplerSettings, list_training_photos, load_rgb8, sample_batch

__all__ = ["EstimatorTrainConfig", "EstimatorTrainResult", "TrainSettings", "train_estimator"]


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings.

    Attributes:
        data: folder of clean HR photos (held-out ``photo_*`` files are skipped); required.
        iterations: optimiser steps.
        batch: patches per step.
        lr: Adam learning rate (cosine decay to 1 %).
        width: channels of the first CNN stage.
        threads: torch CPU threads (0 = torch's default).
        seed: RNG seed of the sampler and the initialisation.
        log_every: iterations between metrics lines.
        checkpoint_every: iterations between checkpoints.
        init: optional starting weights (an ``esr-estimator`` safetensors file, e.g. the embedded
            one) for a fine-tune; ignored when a checkpoint is resumed.
    """

    data: Path | None = None
    iterations: int = 3000
    batch: int = 64
    lr: float = 2e-3
    width: int = 16
    threads: int = 1
    seed: int = 0
    log_every: int = 50
    checkpoint_every: int = 250
    init: Path | None = None

    def __post_init__(self) -> None:
        for name in ("iterations", "batch", "width", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1")  # the loader puts "train." in front
        if not self.lr > 0:
            raise ConfigError("lr: must be > 0")


@dataclass(frozen=True)
class EstimatorTrainConfig:
    """``configs/esr-estimator.toml``: ``[train]`` and ``[sampler]`` tables."""

    train: TrainSettings = field(default_factory=TrainSettings)
    sampler: SamplerSettings = field(default_factory=SamplerSettings)


def _mae(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from esrcli.estimate.net import BLUR_SCALE, NOISE_SCALE

    d = np.abs(pred - y)
    return {
        "noise_mae": float(d[:, :3].mean() * NOISE_SCALE),
        "jpeg_mae": float(d[:, 3].mean() * 100.0),
        "blur_mae": float(d[:, 4].mean() * BLUR_SCALE),
    }


@dataclass(frozen=True)
class EstimatorTrainResult:
    """How :func:`train_estimator` ended.

    Attributes:
        iteration: the iteration reached (saved in the checkpoint and the weights).
        total: ``train.iterations``.
        stopped: ``"done"``, ``"time-limit"`` or ``"interrupted"`` (``stop_requested``).
        metrics: the last logged metrics (``iteration``, ``loss``, ``noise_mae``,
            ``jpeg_mae``, ``blur_mae``, ``lr``, ``elapsed_s``); empty when none was logged.
        weights: the exported ``esr-estimator.safetensors``.
    """

    iteration: int
    total: int
    stopped: str
    metrics: dict[str, float]
    weights: Path


def train_estimator(
    cfg: EstimatorTrainConfig,
    out_dir: Path,
    time_limit: float | None = None,
    resume: bool | None = None,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    notify: Callable[[str], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
) -> EstimatorTrainResult:
    """Train the estimator CNN and write the run folder.

    A resumed run takes the schedule from the config: with more ``iterations`` (or another
    ``lr``) the cosine decay is stretched from where it stands, not restarted.

    Args:
        cfg: the config.
        out_dir: the run folder (created).
        time_limit: seconds after which training stops cleanly (checkpoint + weights), or ``None``.
        resume: ``None`` continues from ``out_dir/checkpoint.pt`` when it exists, ``True``
            requires it, ``False`` refuses a folder that has one (as ``esr train-net``).
        progress: called as ``progress(iteration, total, metrics)`` at each log step.
        notify: receives one-line warnings (training files that cannot be read, skipped).
        stop_requested: polled after every iteration; ``True`` stops as ``time_limit``
            does (the CLI sets it on Ctrl-C or SIGTERM).

    Returns:
        An :class:`EstimatorTrainResult`.

    Raises:
        DataError: no usable photos in ``cfg.train.data``.
        TrainingError: a NaN/inf loss, an incompatible checkpoint, or ``resume`` against
            what the folder holds.
    """
    import torch

    from esrcli.atomic import atomic_output
    from esrcli.config import to_toml
    from esrcli.estimate.net import EstimatorNet

    t = cfg.train
    if t.data is None:
        raise ConfigError("train.data: no training folder given")
    if not t.data.is_dir():
        raise DataError(f"{t.data}: training folder not found")
    images, skipped = [], []
    for p in list_training_photos(t.data):
        try:
            im = load_rgb8(p)
        except ValueError as exc:
            skipped.append(str(exc))
            continue
        if min(im.shape[:2]) >= MIN_SIDE:
            images.append(im)
    if skipped and notify is not None:
        notify(f"{len(skipped)} training file(s) skipped, e.g. {skipped[0]}")
    if not images:
        raise DataError(f"{t.data}: no 8-bit photos of at least {MIN_SIDE}x{MIN_SIDE}")
    ckpt = out_dir / "checkpoint.pt"
    if resume is False and ckpt.exists():
        raise TrainingError(
            f"{out_dir}: holds a checkpoint ({ckpt.name}) and --no-resume was given",
            hint="choose another output folder, or drop --no-resume to continue from it",
        )
    if resume is True and not ckpt.exists():
        raise TrainingError(f"{out_dir}: --resume given but there is no checkpoint here")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrainingError(folder_failure(out_dir, exc, "the run folder"), hint="-o names the run folder") from None
    (out_dir / "config.toml").write_text(to_toml(cfg))
    torch.manual_seed(t.seed)
    net = EstimatorNet(t.width)
    opt = torch.optim.Adam(net.parameters(), lr=t.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, t.iterations, eta_min=t.lr * 0.01)
    if t.init is not None:
        _load_init(net, t.init)
    rng = np.random.default_rng(t.seed)
    start = 0
    if ckpt.exists():
        try:
            state = torch.load(ckpt, map_location="cpu", weights_only=False)
            net.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            rng.bit_generator.state = state["rng"]
            start = int(state["iteration"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise TrainingError(f"{ckpt}: incompatible checkpoint ({str(exc).splitlines()[0]})") from None
        # the config's schedule, continued from here (cosine from lr to 1 % over `iterations`)
        floor = t.lr * 0.01
        sched.T_max, sched.eta_min, sched.base_lrs = t.iterations, floor, [t.lr]
        for group in opt.param_groups:
            group["initial_lr"] = t.lr
            group["lr"] = floor + (t.lr - floor) * (1 + math.cos(math.pi * min(start, t.iterations) / t.iterations)) / 2
    # metrics: the lines up to the checkpoint stay; later ones (after a kill) are written again
    metrics = out_dir / "metrics.jsonl"
    kept = ""
    if start and metrics.exists():
        for line in metrics.read_text().splitlines(keepends=True):
            try:
                if int(json.loads(line)["iteration"]) <= start:
                    kept += line if line.endswith("\n") else line + "\n"
            except (ValueError, KeyError, TypeError):
                continue
    with atomic_output(metrics) as fh:
        fh.write(kept.encode())

    def save(it: int) -> None:
        with atomic_output(ckpt) as fh:
            torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                        "rng": rng.bit_generator.state, "iteration": it}, fh)

    t0 = time.monotonic()
    last: dict[str, float] = {}
    acc: list[dict[str, float]] = []
    it, stopped = start, "done"
    threads_before = torch.get_num_threads()  # train.threads is this run's, not the caller's for good
    if t.threads > 0:
        torch.set_num_threads(t.threads)
    try:
        with open(metrics, "a") as log:
            while it < t.iterations:
                xs, ys = sample_batch(images, t.batch, cfg.sampler, rng)
                x, y = torch.from_numpy(xs), torch.from_numpy(ys)
                pred = net(x)
                loss = torch.nn.functional.smooth_l1_loss(pred, y, beta=0.02)
                if not torch.isfinite(loss):
                    raise TrainingError(f"non-finite loss at iteration {it + 1}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                it += 1
                acc.append({"loss": float(loss.detach()), **_mae(pred.detach().numpy(), ys)})
                if it % t.log_every == 0 or it == t.iterations:
                    last = {"iteration": it, **{k: float(np.mean([a[k] for a in acc])) for k in acc[0]},
                            "lr": sched.get_last_lr()[0], "elapsed_s": time.monotonic() - t0}
                    acc = []
                    log.write(json.dumps(last) + "\n")
                    log.flush()
                    if progress is not None:
                        progress(it, t.iterations, last)
                if it % t.checkpoint_every == 0:
                    save(it)
                if stop_requested is not None and stop_requested() and it < t.iterations:
                    stopped = "interrupted"
                elif time_limit is not None and time.monotonic() - t0 > time_limit and it < t.iterations:
                    stopped = "time-limit"
                if stopped != "done":
                    break
    finally:
        torch.set_num_threads(threads_before)
    save(it)
    weights = out_dir / "esr-estimator.safetensors"
    export_weights(net, weights, {"iterations": str(it), "width": str(t.width)})
    return EstimatorTrainResult(it, t.iterations, stopped, last, weights)


def _load_init(net, path: Path) -> None:
    """Load starting weights from an ``esr-estimator`` safetensors file into ``net``.

    Raises:
        ConfigError: the file is missing, not estimator weights, or of another width.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not path.is_file():
        raise ConfigError(f"train.init: {path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        sd = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad file
        raise ConfigError(f"train.init: {path}: not a safetensors file ({exc})") from None
    if meta.get("format") != "esr-estimator":
        raise ConfigError(f"train.init: {path}: not esr-estimator weights (format={meta.get('format')!r})")
    try:
        net.load_state_dict(sd)
    except RuntimeError:
        raise ConfigError(f"train.init: {path}: width {meta.get('width')} does not match train.width = {net.width}") from None


def export_weights(net, path: Path, extra: dict[str, str]) -> None:
    """Write the CNN's weights as safetensors with the metadata the loader checks."""
    from safetensors.torch import save

    from esrcli.atomic import atomic_output

    meta = {"format": "esr-estimator", "arch": "EstimatorNet", **extra}
    sd = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    with atomic_output(path) as fh:
        fh.write(save(sd, metadata=meta))
