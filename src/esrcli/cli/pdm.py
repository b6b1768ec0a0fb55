"""``esr train-pdm``: learn the degradation of a target domain from unpaired HR and LR images.

Reads a TOML config (``--print-config`` prints the complete default), writes into an output
folder (``runs/<config name>`` by default) and resumes from its latest checkpoint. The
learned model is ``RUN/pdm.safetensors`` (for ``esr degrade --pdm`` and train-net's
``[degrade] source = "pdm"``); with an ``[sr]`` table an SR generator trains on its pairs at
the same time (``RUN/net_g_ema.safetensors``). Progress on stderr, the summary on stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from esrcli.cli import console
from esrcli.cli.train import _Reporter, parse_duration
from esrcli.config import load_toml, to_toml
from esrcli.config.pdm import PdmConfig
from esrcli.errors import ConfigError


_SHOWN = ("loss_adv", "loss_d", "noise_std", "k_sigma_major", "k_sigma_minor", "k_theta", "loss_sr_pix")


def _short(losses: dict[str, float]) -> str:
    return " ".join(f"{k.removeprefix('loss_')}={losses[k]:.4g}" for k in _SHOWN if k in losses)


class _PdmReporter(_Reporter):
    def step(self, info) -> None:
        losses = {"l_" + k.removeprefix("loss_"): info.losses[k] for k in _SHOWN if k in info.losses}  # _Reporter shows l_*
        super().step(type(info)(info.iteration, info.total, losses, info.lr, None, info.checkpoint))


def _run(config: Optional[Path], output: Optional[Path], resume: Optional[bool], time_limit: Optional[str], print_config: bool) -> None:
    if print_config:
        cfg = load_toml(PdmConfig, config) if config is not None else PdmConfig()
        typer.echo(to_toml(cfg))
        return
    if config is None:
        raise typer.BadParameter("a config file is needed (see --print-config)", param_hint="CONFIG")
    limit = parse_duration(time_limit) if time_limit else None
    cfg = load_toml(PdmConfig, config)
    for key in ("hr", "lr"):
        if not getattr(cfg.data, key):
            raise ConfigError(f"{config}: data.{key}: no folder given")
    out = output if output is not None else Path("runs") / config.stem
    from esrcli.train.pdm import train_pdm  # heavy imports only when training

    with _PdmReporter(cfg.train.total_iter, cfg.train.log_interval) as rep, console.stop_requests() as requested:
        result = train_pdm(cfg, out, resume=resume, time_limit=limit, on_step=rep.step, on_message=rep.message, stop_requested=requested)
    console.out.print(f"stopped: {result.stopped} at iteration {result.iteration}/{result.total}")
    console.out.print(f"speed: {result.iters_per_s:.3f} it/s, {result.seconds:.1f} s")
    if result.losses:
        console.out.print("last: " + _short(result.losses))
    if result.skipped:
        console.out.print(f"skipped files: {len(result.skipped)}")
    console.out.print(f"checkpoint: {result.checkpoint}")
    console.out.print(f"model: {result.export}")
    if result.sr_export is not None:
        console.out.print(f"SR model: {result.sr_export}")
    if result.stopped == "interrupted":  # saved, but not finished: say so to scripts
        console.interrupted_cleanly(result.iteration)


def register(app: typer.Typer) -> None:
    """Add ``train-pdm`` to the root app."""

    @app.command("train-pdm", help="Learn a target domain's degradation (PDM) from unpaired HR and LR images.")
    def train_pdm_command(
        config: Optional[Path] = typer.Argument(None, help="TOML config: tables data (hr, lr), model, train, optional sr.", show_default=False, metavar="CONFIG"),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="Run folder (default runs/<config name>)."),
        resume: Optional[bool] = typer.Option(
            None, "--resume/--no-resume", help="Continue from the latest checkpoint (default: when the folder has one)."
        ),
        time_limit: Optional[str] = typer.Option(None, "--time-limit", help="Stop cleanly after this wall time, e.g. 30m."),
        print_config: bool = typer.Option(False, "--print-config", help="Print the complete config (defaults, or CONFIG's) and exit."),
    ) -> None:
        _run(config, output, resume, time_limit, print_config)
