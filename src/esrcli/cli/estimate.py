"""``esr estimate IMG...`` and ``esr train-estimator CFG``: how images were degraded, and the CNN behind it.

``esr estimate`` prints, per image, the noise sigma (8-bit levels, per channel), the JPEG quality
(exact from the quantisation tables for JPEG files), the blur sigma (pixels) and the recommended
``--denoise`` strength: a table by default, ``--json`` (an array of objects) or ``--csv``. A file
that cannot be estimated is reported on stderr and skipped; the command then exits 1.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from esrcli.cli import console
from esrcli.cli.niqe import each_image, output_format
from esrcli.cli.train import parse_duration

__all__ = ["register"]

_CSV_COLUMNS = ["path", "noise_sigma", "noise_sigma_r", "noise_sigma_g", "noise_sigma_b", "jpeg_quality", "blur_sigma", "denoise"]


def _record(path: Path, est) -> dict:
    return {
        "path": str(path),
        "noise_sigma": [round(v, 2) for v in est.noise_sigma],
        "jpeg_quality": est.jpeg_quality,
        "blur_sigma": round(est.blur_sigma, 2),
        "denoise": round(est.denoise, 2),
    }


def _emit(records: list[dict], fmt: str) -> None:
    if fmt == "json":
        typer.echo(json.dumps(records, indent=2))
        return
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(_CSV_COLUMNS)
        for r in records:
            n = r["noise_sigma"]
            rgb = n if len(n) == 3 else ["", "", ""]
            q = "" if r["jpeg_quality"] is None else r["jpeg_quality"]
            w.writerow([r["path"], round(sum(n) / len(n), 2), *rgb, q, r["blur_sigma"], r["denoise"]])
        typer.echo(buf.getvalue(), nl=False)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("image", no_wrap=True)
    for title in ("noise σ (levels)", "JPEG q", "blur σ (px)", "denoise"):
        table.add_column(title, justify="right", no_wrap=True)
    for r in records:
        n = r["noise_sigma"]
        noise = f"{n[0]:.1f}" if len(n) == 1 else " ".join(f"{v:.1f}" for v in n)
        q = "-" if r["jpeg_quality"] is None else str(r["jpeg_quality"])
        table.add_row(r["path"], noise, q, f"{r['blur_sigma']:.2f}", f"{r['denoise']:.2f}")
    needed = max([5] + [len(r["path"]) for r in records]) + 60
    Console(highlight=False, width=max(console.out.width, needed)).print(table)


def estimate_cmd(
    paths: List[Path] = typer.Argument(..., help="Image files and/or folders.", show_default=False, metavar="PATH"),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array (one object per image) on stdout."),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV on stdout."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Estimator weights from esr train-estimator (RUN/esr-estimator.safetensors); default: the embedded ones.", dir_okay=False),
) -> None:
    """Estimate how images were degraded: noise sigma, JPEG quality, blur sigma, and the denoise strength to use."""
    from esrcli.estimate import estimate
    from esrcli.estimate.core import _load_net

    fmt = output_format(as_json, as_csv)
    if weights is not None:
        _load_net(str(weights))  # a bad file: one line before any image
    results, skipped = each_image("estimate", paths, recursive, lambda p: estimate(p, weights=weights))
    records = [_record(path, est) for path, est in results]
    _emit(records, fmt)
    if skipped:
        console.info(f"estimate: {len(records)} image(s) estimated, {len(skipped)} failed")
        raise typer.Exit(1)


def train_estimator_cmd(
    config: Optional[Path] = typer.Argument(None, help="TOML config (configs/esr-estimator.toml).", show_default=False, metavar="CONFIG"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Run folder (default runs/<config name>)."),
    resume: Optional[bool] = typer.Option(None, "--resume/--no-resume", help="Continue from the folder's checkpoint (default: when it has one)."),
    time_limit: Optional[str] = typer.Option(None, "--time-limit", help="Stop cleanly after this wall time, e.g. 30m."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the complete config (defaults, or CONFIG's) and exit."),
) -> None:
    """Train the estimator CNN on clean photos degraded with known noise, JPEG and blur."""
    from esrcli.config import load_toml, to_toml
    from esrcli.estimate.train import EstimatorTrainConfig, train_estimator

    if print_config:
        cfg = load_toml(EstimatorTrainConfig, config) if config is not None else EstimatorTrainConfig()
        typer.echo(to_toml(cfg))
        return
    if config is None:
        raise typer.BadParameter("a config file is needed (see --print-config)", param_hint="CONFIG")
    limit = parse_duration(time_limit) if time_limit else None
    cfg = load_toml(EstimatorTrainConfig, config)
    out = output if output is not None else Path("runs") / config.stem

    def report(it: int, total: int, m: dict[str, float]) -> None:
        console.info(
            f"iter {it}/{total} loss={m['loss']:.4f} noise_mae={m['noise_mae']:.2f} "
            f"jpeg_mae={m['jpeg_mae']:.1f} blur_mae={m['blur_mae']:.2f}"
        )

    with console.stop_requests() as requested:
        result = train_estimator(cfg, out, time_limit=limit, resume=resume, progress=report, notify=console.warn, stop_requested=requested)
    console.out.print(f"stopped: {result.stopped} at iteration {result.iteration}/{result.total}")
    last = result.metrics
    if last:
        console.out.print(f"iteration {int(last['iteration'])}: noise MAE {last['noise_mae']:.2f} levels, "
                          f"JPEG MAE {last['jpeg_mae']:.1f}, blur MAE {last['blur_mae']:.2f} px (training patches)")
    console.out.print(f"model: {result.weights}")
    if result.stopped == "interrupted":  # saved, but not finished: say so to scripts
        console.interrupted_cleanly(result.iteration)


def register(app: typer.Typer) -> None:
    """Add ``esr estimate`` and ``esr train-estimator`` to the root app."""
    app.command("estimate")(estimate_cmd)
    app.command("train-estimator")(train_estimator_cmd)
