"""``esr model``: inspect, convert and list model files.

* ``esr model info FILE...``  what was detected: architecture, hyper-parameters, scale,
  parameter count, metadata (``--json`` for one JSON object per line).
* ``esr model convert IN OUT.safetensors [--half]``  official ``.pth`` (or any loadable
  file) to an esr safetensors file with metadata.
* ``esr model list [--all]``  the embedded models (``--all``: and the cached and
  downloadable ones).
* ``esr model fetch NAME...``  download official / user-catalogue models into the cache.
* ``esr model export MODEL --format onnx|ncnn -o OUT``  for ONNX Runtime and ncnn apps.
* ``esr model import NAME.param NAME.bin -o OUT.safetensors``  ncnn models back to esr.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer

from esrcli.cli import console
from esrcli.errors import EsrError, WeightsError

if TYPE_CHECKING:  # esrcli.weights loads torch: imported in the commands, so --help stays fast
    from esrcli.weights import ModelInfo

model_app = typer.Typer(
    name="model",
    help="Inspect, convert, list, fetch, export (ONNX, ncnn) and import (ncnn) models.",
    no_args_is_help=True,
    add_completion=False,
)


def _num_params(sd: dict) -> int:
    return sum(int(t.numel()) for t in sd.values() if t.is_floating_point())


def _info_lines(path: Path, sd: dict, info: ModelInfo) -> list[str]:
    from esrcli.weights import params_text

    lines = [
        f"file:       {path}",
        f"arch:       {info.arch}",
        f"scale:      x{info.scale}",
        f"params:     {params_text(info.params)}",
        f"parameters: {_num_params(sd):,}",
    ]
    meta = {k: v for k, v in info.metadata.items() if k not in ("arch", "params", "scale")}
    if meta:
        lines.append("metadata:")
        lines += [f"  {k}: {v}" for k, v in sorted(meta.items())]
    return lines


def _pdm_record(path: Path) -> dict | None:
    """``esr model info`` of a PDM degradation model (esr train-pdm), or ``None`` for other files."""
    if not path.is_file():
        return None
    from esrcli.degrade.pdm import load_pdm, read_pdm_metadata

    try:
        meta = read_pdm_metadata(path)
    except EsrError:
        return None
    model = load_pdm(path)
    kind = json.loads(meta["config"])
    return {"file": str(path), "arch": "PDM (learned degradation)", "scale": model.scale, "params": kind,
            "parameters": sum(p.numel() for p in model.parameters()), "metadata": meta}


def _estimator_record(path: Path) -> dict | None:
    """``esr model info`` of degradation-estimator weights (esr train-estimator), or ``None``."""
    if not path.is_file() or path.suffix.lower() != ".safetensors":
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != "esr-estimator":
                return None
            parameters = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    except Exception:  # noqa: BLE001 - not readable as safetensors: the generator path reports it
        return None
    return {"file": str(path), "arch": "EstimatorNet (degradation estimator: noise, JPEG, blur)", "scale": None,
            "params": {"width": meta.get("width")}, "parameters": parameters, "metadata": meta}


@model_app.command("info")
def info_cmd(
    files: List[str] = typer.Argument(  # str, not Path: "./name" (a run folder) must not become "name" (a model)
        ..., help="Model files (.pth or .safetensors) or embedded model names.", show_default=False, metavar="MODEL"
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per file on stdout."),
) -> None:
    """Show the detected architecture, hyper-parameters, scale and metadata of model files."""
    from esrcli.weights import read_model_info, resolve_model

    failed = 0
    for i, path in enumerate(files):
        try:
            pdm = _pdm_record(Path(path))
        except EsrError as exc:
            console.error(str(exc), exc.hint)
            failed += 1
            continue
        estimator = _estimator_record(Path(path)) if pdm is None else None
        if estimator is not None:
            if as_json:
                typer.echo(json.dumps(estimator))
            else:
                typer.echo(("\n" if i else "") + "\n".join([
                    f"file:       {path}", f"arch:       {estimator['arch']}", f"parameters: {estimator['parameters']:,}",
                    *(f"  {k}: {v}" for k, v in sorted(estimator["metadata"].items())),
                    f"  (use it with: esr estimate --weights {path} IMAGES)",
                ]))
            continue
        if pdm is not None:
            if as_json:
                typer.echo(json.dumps(pdm))
            else:
                cfg = pdm["params"]
                typer.echo(("\n" if i else "") + "\n".join([
                    f"file:       {path}", f"arch:       {pdm['arch']}", f"scale:      x{pdm['scale']}",
                    f"kernel:     {cfg['kernel']} {cfg['kernel_size']}x{cfg['kernel_size']}{', spatially variant' if cfg['spatial'] else ''}",
                    f"noise:      {'%d channel(s)' % cfg['noise_channels'] if cfg['noise'] else 'none'}",
                    f"parameters: {pdm['parameters']:,}",
                    *(f"  {k}: {v}" for k, v in sorted(pdm["metadata"].items()) if k not in ("config",)),
                ]))
            continue
        try:
            with resolve_model(path) as real:
                sd, info = read_model_info(real)
        except EsrError as exc:
            console.error(str(exc), exc.hint)
            failed += 1
            continue
        if as_json:
            record = {
                "file": str(path),
                "arch": info.arch,
                "scale": info.scale,
                "params": info.params,
                "parameters": _num_params(sd),
                "metadata": info.metadata,
            }
            typer.echo(json.dumps(record))
        else:
            if i:
                typer.echo("")
            typer.echo("\n".join(_info_lines(path, sd, info)))
    if failed:
        if len(files) > 1:
            console.info(f"{failed} of {len(files)} files failed")
        raise typer.Exit(1)


@model_app.command("convert")
def convert_cmd(
    src: str = typer.Argument(..., help="Input model file (.pth or .safetensors), run folder or model name.", show_default=False, metavar="SRC"),
    dst: Path = typer.Argument(..., help="Output .safetensors file.", show_default=False, metavar="DST"),
    half: bool = typer.Option(False, "--half", help="Store weights as float16 (half the size; loads as float32)."),
) -> None:
    """Convert a model file (e.g. an official Real-ESRGAN .pth) to an esr .safetensors file."""
    from esrcli.weights import params_text, read_model_info, resolve_model, save_model

    if dst.suffix.lower() != ".safetensors":
        raise typer.BadParameter(f"{dst}: the output must end in .safetensors", param_hint="DST")
    with resolve_model(src) as real:
        if console.same_path(dst, Path(real)):  # a file is itself; a run folder stands for its export
            raise typer.BadParameter(f"{dst}: the output would overwrite the input ({real})", param_hint="DST")
        sd, info = read_model_info(real)
    notes = [info.metadata.get(k) for k in ("source_key", "layout")]
    detail = ", ".join(n for n in notes if n)
    provenance = info.metadata.get("provenance")
    if not provenance or info.metadata.get("source_format") == "pth":
        provenance = f"converted from {Path(src).name}" + (f" ({detail})" if detail else "")
    with console.output_parent(dst):
        save_model(dst, sd, info, extra_metadata={"provenance": provenance}, half=half)
    dtype = "float16" if half else "float32"
    typer.echo(f"{dst}: {info.arch} x{info.scale} ({params_text(info.params)}), {_num_params(sd):,} parameters, {dtype}")


def _size_text(size: int | None) -> str:
    if size is None:
        return "?"
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"


@model_app.command("list")
def list_cmd(
    show_all: bool = typer.Option(False, "--all", "-a", help="Also the cached and downloadable models (official and user catalogue)."),
) -> None:
    """List the models embedded in esr (--all: and those a name downloads)."""
    from esrcli.weights import catalogue, default_model_name

    try:
        entries = catalogue()
    except WeightsError as exc:
        console.error(str(exc))
        raise typer.Exit(1)
    if show_all:
        _list_all(default_model_name())
        return
    if not entries:
        typer.echo("no embedded models yet")
        return
    default = default_model_name()
    for e in entries:
        mark = " (default)" if e.name == default else ""
        typer.echo(f"{e.name}{mark}: {e.arch or '?'} x{e.scale or '?'}  {e.description}".rstrip())
        if e.official:
            typer.echo(f"  official name: {e.official}")
        if e.origin:
            typer.echo(f"  origin:        {e.origin}")
        if e.license:
            typer.echo(f"  licence:       {e.license}")
        partners = [e.partner] if e.partner else [g.name for g in entries if g.partner == e.name]
        if partners:
            typer.echo(f"  partner:       {', '.join(partners)} (--sharpness 0..1 blends the two)")
        if e.denoise_partner:
            typer.echo(f"  weak denoise:  {e.denoise_partner} (--denoise 0..1|auto blends the two)")
        elif normal := next((n.name for n in entries if n.denoise_partner == e.name), None):
            typer.echo(f"  weak denoise partner of {normal} (use --model {normal} --denoise 0..1|auto)")
        if e.training_data:
            typer.echo(f"  training data: {e.training_data}")
        if e.iterations is not None:
            typer.echo(f"  iterations:    {e.iterations:,}")
        for k, v in e.figures.items():
            typer.echo(f"  {k}: {v}")


def _list_all(default: str | None) -> None:
    from esrcli.weights.remote import cache_dir, list_models, user_catalogue_path

    rows = list_models()
    width = max([len(r.name) for r in rows] + [4])
    for r in rows:
        mark = " (default)" if r.name == default else ""
        arch = f"{r.arch or '?'} x{r.scale or '?'}"
        typer.echo(f"{r.name:<{width}}  {r.kind:<8}  {arch:<19}  {_size_text(r.size):>8}  {r.description}{mark}".rstrip())
    console.info(f"cache: {cache_dir()}  (ESR_CACHE_DIR)")
    console.info(f"user catalogue: {user_catalogue_path()}  (ESR_MODELS_FILE)")


@model_app.command("fetch")
def fetch_cmd(
    names: List[str] = typer.Argument(..., help="Model names (case-insensitive, .pth optional), see `esr model list --all`.", show_default=False, metavar="NAME"),
    original: bool = typer.Option(False, "--original", help="Download the official file even where an embedded model stands for it."),
) -> None:
    """Download official or user-catalogue models into the cache (verified; resumes after an interruption)."""
    from esrcli.weights.remote import find_remote, unknown_name_error
    from esrcli.weights.download import fetch_model, file_sha256
    from esrcli.weights.embedded import find_embedded, catalogue

    failed = 0
    for name in names:
        try:
            entry = None if original else find_embedded(name)
            if entry is not None:
                typer.echo(f"{name}: embedded as {entry.name}, nothing to download (--original downloads the official file)")
                continue
            model = find_remote(name)
            if model is None:
                raise unknown_name_error(name, [e.name for e in catalogue()])
            with console.download_progress(f"fetch {model.name}") as progress:
                path = fetch_model(model, progress=progress)
            note = "" if model.sha256 else f"  (no published hash; sha256 {file_sha256(path)})"
            typer.echo(f"{model.name}: {path}{note}")
        except EsrError as exc:
            console.error(str(exc), exc.hint)
            failed += 1
    if failed:
        raise typer.Exit(1)


def _model_stem(model: str) -> str:
    """A file name for exports of ``model`` (a path's stem or a model name without .pth);
    a training run's ``net_g_ema`` export is named after its run folder (``runs/gan/...`` ->
    ``gan``), so that two runs' exports do not overwrite each other in one ncnn folder."""
    p = Path(model)
    if p.exists():  # ".", "..", "../net_g_ema.safetensors": the names they stand for
        p = Path(os.path.abspath(p))
    if p.stem == "net_g_ema" and p.parent.name not in ("", "exports"):
        return p.parent.name
    if p.is_dir():
        return p.name
    name = p.name
    for suffix in (".safetensors", ".pth", ".pt", ".ckpt"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


@model_app.command("export")
def export_cmd(
    model: str = typer.Argument(..., help="Model file or name (embedded, official or user catalogue).", show_default=False, metavar="MODEL"),
    fmt: str = typer.Option(..., "--format", "-f", help="onnx or ncnn.", show_default=False),
    out: Path = typer.Option(..., "--output", "-o", help="onnx: the .onnx file (or a folder); ncnn: the folder for NAME.param + NAME.bin.", show_default=False),
    fp16: bool = typer.Option(False, "--fp16", help="onnx: float16 weights, input and output (GPU runtimes). ncnn always stores float16 weights."),
    name: Optional[str] = typer.Option(None, "--name", "-n", help="ncnn: the model name (file names); default: the model's name."),
    opset: Optional[int] = typer.Option(None, "--opset", help="onnx: opset version, 11 to the newest this torch writes (default 17).", show_default=False),
    check: bool = typer.Option(True, "--check/--no-check", help="Run the export in onnxruntime / ncnn against PyTorch (needs esrcli[export])."),
) -> None:
    """Export a model to ONNX or ncnn (realesrgan-ncnn-vulkan, Upscayl) and check it against PyTorch."""
    from esrcli.export import MissingExtraError, check_ncnn, check_onnx, export_ncnn, export_onnx
    from esrcli.export.onnx import DEFAULT_OPSET
    from esrcli.weights import load_model

    fmt = fmt.lower()
    if fmt not in ("onnx", "ncnn"):
        raise typer.BadParameter(f"{fmt}: expected onnx or ncnn", param_hint="--format")
    if fmt == "onnx" and opset is not None:
        from esrcli.export.onnx import max_opset

        if not 11 <= opset <= max_opset():
            raise typer.BadParameter(f"expected 11 to {max_opset()} (what this torch's ONNX exporter writes), got {opset}", param_hint="--opset")
    if fmt == "ncnn" and opset is not None:
        raise typer.BadParameter("--opset is for onnx exports", param_hint="--opset")
    with contextlib.ExitStack() as stack:
        stem = name or _model_stem(model)
        net, info = load_model(model, device="cpu")
        if fmt == "onnx":
            if name is not None:
                raise typer.BadParameter("--name is for ncnn exports (an ONNX file is named by -o)", param_hint="--name")
            folder = out.is_dir() or (not out.exists() and out.suffix == "")  # a new folder, as ncnn's -o
            target = out / f"{stem}.onnx" if folder else out
            if target.suffix.lower() != ".onnx":
                raise typer.BadParameter(f"{out}: the output must end in .onnx (or be a folder)", param_hint="-o")
            stack.enter_context(console.output_parent(target))  # a new folder goes again if the export fails
            export_onnx(net, info, target, fp16=fp16, opset=DEFAULT_OPSET if opset is None else opset)
            dtype = "float16" if fp16 else "float32"
            typer.echo(f"{target}: ONNX {info.arch} x{info.scale}, {dtype}, input 'input' (B, C, H, W) RGB in [0, 1], output 'output'")
            results = _checked(lambda: check_onnx(target, net), check, MissingExtraError)
        else:
            if fp16:
                raise typer.BadParameter("ncnn exports always store float16 weights; --fp16 is for onnx", param_hint="--fp16")
            if out.suffix.lower() in (".param", ".bin") or out.is_file():
                raise typer.BadParameter(f"{out}: ncnn writes two files (NAME.param, NAME.bin); give their folder, and the name with --name", param_hint="-o")
            param, bin_ = export_ncnn(net, info, out, stem)
            typer.echo(f"{param} + {bin_.name}: ncnn {info.arch} x{info.scale}, float16 weights, blobs 'data' -> 'output'")
            results = _checked(lambda: check_ncnn(param, bin_, net), check, MissingExtraError)
        if results:
            figures = ", ".join(f"{h}x{w}: {r.psnr:.1f} dB" for (h, w), r in ((r.size, r) for r in results))
            if _failed(results):
                for f in (target,) if fmt == "onnx" else (param, bin_):
                    f.unlink(missing_ok=True)
                raise WeightsError(f"{model}: the {fmt} export does not reproduce the model ({figures}); removed")
            typer.echo(f"check against PyTorch fp32 (PSNR): {figures}")


#: Below this PSNR against PyTorch fp32 an export or import is broken, not rounded (float16
#: weights give 70 dB and more).
_CHECK_MIN_PSNR = 40.0


def _failed(results: list) -> bool:
    return any(not r.psnr >= _CHECK_MIN_PSNR for r in results)  # NaN fails too


def _checked(run, enabled: bool, missing: type[Exception]) -> list:
    """The check's results, or ``[]`` (with a warning) when its runtime is not installed."""
    if not enabled:
        return []
    try:
        return run()
    except missing as exc:
        console.warn(f"written, not checked: {exc} ({getattr(exc, 'hint', '')})")
        return []


@model_app.command("import")
def import_cmd(
    param: Path = typer.Argument(..., help="The ncnn NAME.param file.", show_default=False, metavar="PARAM"),
    bin_: Path = typer.Argument(..., metavar="BIN", help="The ncnn NAME.bin file.", show_default=False),
    out: Path = typer.Option(..., "--output", "-o", help="The .safetensors file to write.", show_default=False),
    half: bool = typer.Option(False, "--half", help="Store float16 (ncnn models hold float16 weights anyway)."),
    check: bool = typer.Option(True, "--check/--no-check", help="Run the ncnn files with the ncnn package and compare (needs esrcli[export])."),
) -> None:
    """Import a realesrgan-ncnn-vulkan / Upscayl ncnn model (RRDBNet or SRVGGNetCompact) as an esr .safetensors file."""
    from esrcli.archs import build_generator
    from esrcli.export import MissingExtraError, check_ncnn, import_ncnn
    from esrcli.weights import params_text, save_model

    if out.suffix.lower() != ".safetensors":
        raise typer.BadParameter(f"{out}: the output must end in .safetensors", param_hint="-o")
    result = import_ncnn(param, bin_)
    info = result.info
    results = []
    if check and not result.notes:  # checked before anything is written
        net = build_generator(info.arch, info.params)
        net.load_state_dict(result.state_dict)
        net.eval()
        results = _checked(lambda: check_ncnn(param, bin_, net, sizes=((48, 64),)), True, MissingExtraError)
    figures = ", ".join(f"{h}x{w}: {r.psnr:.1f} dB" for (h, w), r in ((r.size, r) for r in results))
    if results and _failed(results):
        raise WeightsError(f"{param}: ncnn and the imported weights disagree ({figures}); nothing written")
    save_model(out, result.state_dict, info, extra_metadata={"ncnn_storage": result.storage}, half=half)
    typer.echo(f"{out}: {info.arch} x{info.scale} ({params_text(info.params)}), {_num_params(result.state_dict):,} parameters, from {result.storage} ncnn weights")
    for note in result.notes:
        console.warn(note)
    if results:
        typer.echo(f"check: ncnn vs the imported model in PyTorch (PSNR): {figures}")


def register(app: typer.Typer) -> None:
    """Add ``esr model`` (info, convert, list, fetch, export, import) to the root app."""
    app.add_typer(model_app, name="model")
