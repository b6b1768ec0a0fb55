"""``esr interp A B --alpha 0.5 -o OUT``: ESRGAN network interpolation of two models (files or names)."""

from __future__ import annotations

from pathlib import Path

import typer

from esrcli.cli import console


def interp_cmd(
    # str, not Path: "./name" (a run folder) must not become "name" (an embedded model)
    model_a: str = typer.Argument(..., help="Model file, run folder or name at alpha=0 (e.g. the PSNR-oriented net, esr-general-x4-net).", show_default=False, metavar="MODEL_A"),
    model_b: str = typer.Argument(..., help="Model file, run folder or name at alpha=1 (e.g. the GAN net, esr-general-x4).", show_default=False, metavar="MODEL_B"),
    alpha: float = typer.Option(0.5, "--alpha", "-a", help="Weight of B, 0..1: (1-alpha)*A + alpha*B."),
    output: Path = typer.Option(..., "--output", "-o", help="Output .safetensors file.", show_default=False),
    half: bool = typer.Option(False, "--half", help="Store weights as float16."),
) -> None:
    """Blend two models of the same architecture: theta = (1 - alpha) * theta_A + alpha * theta_B."""
    from esrcli.errors import EsrError
    from esrcli.weights import interpolate_files, params_text, resolve_model  # loads torch: not for --help

    console.check_unit_interval(alpha, "--alpha")
    if output.suffix.lower() != ".safetensors":
        raise typer.BadParameter(f"{output}: the output must end in .safetensors", param_hint="--output")
    for src in (model_a, model_b):
        try:
            with resolve_model(src) as real:  # what a run folder or a name stands for
                if console.same_path(output, Path(real)):
                    raise typer.BadParameter(f"{output}: the output would overwrite the input model ({real})", param_hint="--output")
        except EsrError:
            pass  # an unusable input: interpolate_files says so in one line
    with console.output_parent(output):
        info = interpolate_files(model_a, model_b, alpha, output, half=half)
    typer.echo(f"{output}: {info.arch} x{info.scale} ({params_text(info.params)}), alpha={alpha:g}")


def register(app: typer.Typer) -> None:
    """Add ``esr interp`` to the root app."""
    app.command("interp")(interp_cmd)
