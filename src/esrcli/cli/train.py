"""``esr train-net`` and ``esr train-gan``: the two training stages of Real-ESRGAN.

Both read a TOML config (``--print-config`` prints the complete default), write into an
output folder (``runs/<config name>`` by default) and resume automatically from its latest
checkpoint. Progress (it/s, ETA, losses) goes to stderr; the end-of-run summary to stdout.
``torchrun --nproc-per-node N -m esrcli train-net cfg.toml`` trains with DistributedDataParallel.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from esrcli.cli import console
from esrcli.config import load_toml, to_toml
from esrcli.config.train import TrainGanConfig, TrainNetConfig
from esrcli.errors import ConfigError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms]?)", re.I)
_UNIT = {"d": 86400, "h": 3600, "m": 60, "s": 1, "": 1}


def parse_duration(text: str) -> float:
    """``"2h30m"``, ``"90m"``, ``"1.5h"``, ``"45s"`` or plain seconds -> seconds.

    Raises:
        typer.BadParameter: not a duration.
    """
    s = text.strip().replace(" ", "")
    pos, total = 0, 0.0
    for m in _DURATION.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT[m.group(2).lower()]
        pos = m.end()
    if not s or pos != len(s) or total <= 0:
        raise typer.BadParameter(f"{text!r} is not a duration (e.g. 2h30m, 90m, 45s)")
    return total


def _short(losses: dict[str, float]) -> str:
    keys = [k for k in losses if k.startswith("l_")]
    return " ".join(f"{k[2:]}={losses[k]:.4g}" for k in keys)


class _Reporter:
    """Turns library callbacks into a rich bar on a terminal, or periodic lines otherwise."""

    def __init__(self, total: int, every: int) -> None:
        self.total, self.every = total, max(1, every)
        self.bar: Progress | None = None
        self.task = None

    def __enter__(self) -> "_Reporter":
        if console.err.is_terminal:
            self.bar = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[losses]}"),
                console=console.err, redirect_stdout=False, redirect_stderr=False,
            )
            self.bar.__enter__()
            self.task = self.bar.add_task("train", total=self.total, rate="", losses="")
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def message(self, text: str) -> None:
        if text.startswith("warning: "):
            console.warn(text[len("warning: "):])
        else:
            console.info(text)

    def step(self, info) -> None:  # info: esrcli.train.loop.StepInfo
        val = "  " + " ".join(f"{k[4:]}={v:.4f}" for k, v in info.val.items()) if info.val else ""
        if self.bar is not None:
            self.bar.update(self.task, completed=info.iteration, losses=_short(info.losses) + val)
            t = self.bar.tasks[0]
            if t.speed:
                self.bar.update(self.task, rate=f"{t.speed:.2f} it/s")
            if info.val:
                self.bar.console.print(f"iter {info.iteration}: {val.strip()}")
        elif info.iteration % self.every == 0 or info.val or info.iteration == info.total:
            console.info(f"iter {info.iteration}/{info.total} lr={info.lr:.3g} {_short(info.losses)}{val}")


def _run(stage: str, config: Optional[Path], output: Optional[Path], resume: Optional[bool], time_limit: Optional[str], print_config: bool) -> None:
    cls = TrainGanConfig if stage == "gan" else TrainNetConfig
    if print_config:
        cfg = load_toml(cls, config) if config is not None else cls()
        typer.echo(to_toml(cfg))
        return
    if config is None:
        raise typer.BadParameter("a config file is needed (see --print-config)", param_hint="CONFIG")
    limit = parse_duration(time_limit) if time_limit else None
    cfg = load_toml(cls, config)
    if not cfg.data.folders:
        raise ConfigError(f"{config}: data.folders: no training folder given")
    out = output if output is not None else Path("runs") / config.stem
    from esrcli.train.loop import train  # heavy imports only when training

    with _Reporter(cfg.train.total_iter, cfg.train.log_interval) as rep, console.stop_requests() as requested:
        result = train(cfg, out, resume=resume, time_limit=limit, on_step=rep.step, on_message=rep.message, stop_requested=requested)
    if result.export is None:  # a rank other than 0 under torchrun
        if result.stopped == "interrupted":
            console.interrupted_cleanly(None)  # rank 0 says how to go on
        return
    console.out.print(f"stopped: {result.stopped} at iteration {result.iteration}/{result.total}")
    console.out.print(f"speed: {result.iters_per_s:.3f} it/s ({result.precision}), {result.seconds:.1f} s")
    if result.losses:
        console.out.print("losses: " + " ".join(f"{k}={v:.5g}" for k, v in result.losses.items()))
    if result.val:
        console.out.print("validation: " + " ".join(f"{k[4:]}={v:.4f}" for k, v in result.val.items()))
    console.out.print(f"checkpoint: {result.checkpoint}")
    console.out.print(f"model: {result.export}")
    if result.stopped == "interrupted":  # saved, but the run did not finish: say so to scripts
        console.interrupted_cleanly(result.iteration)


def register(app: typer.Typer) -> None:
    """Add ``train-net`` and ``train-gan`` to the root app."""

    def make(stage: str, doc: str):
        def command(
            config: Optional[Path] = typer.Argument(None, help="TOML training config.", show_default=False, metavar="CONFIG"),
            output: Optional[Path] = typer.Option(None, "--output", "-o", help="Run folder (default runs/<config name>)."),
            resume: Optional[bool] = typer.Option(
                None, "--resume/--no-resume", help="Continue from the latest checkpoint (default: when the folder has one)."
            ),
            time_limit: Optional[str] = typer.Option(None, "--time-limit", help="Stop cleanly after this wall time, e.g. 2h30m."),
            print_config: bool = typer.Option(False, "--print-config", help="Print the complete config (defaults, or CONFIG's) and exit."),
        ) -> None:
            _run(stage, config, output, resume, time_limit, print_config)

        command.__doc__ = doc
        return command

    app.command("train-net", help="Stage 1, Real-ESRNet: train a generator with the L1 loss on synthetic degradations.")(
        make("net", "Train Real-ESRNet.")
    )
    app.command("train-gan", help="Stage 2, Real-ESRGAN: L1 + perceptual + GAN from a train-net result.")(
        make("gan", "Train Real-ESRGAN.")
    )


