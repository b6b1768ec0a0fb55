"""``esr degrade``: synthesise LQ images with Real-ESRGAN's degradation model, or show it.

Three modes:

* ``esr degrade HR_IN... OUT [--per-image K] [--crop N]`` writes ``OUT/lq/*.png`` (and the
  matching ``OUT/gt/*.png`` crops with ``--crop``) plus ``OUT/params.jsonl``, one line of
  sampled parameters per output;
* ``esr degrade --show [IMG] [-o sheet.png] [--n 12]`` draws a contact sheet of the HR crop
  and ``n`` LQ samples (built-in test chart without IMG);
* ``esr degrade --print-config`` prints the configuration as TOML.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional

import numpy as np
import typer

from esrcli.cli import console
from esrcli.config import load_toml, to_toml
from esrcli.config.degrade import DegradeConfig
from esrcli.data.imageio import Image, atomic_write_bytes, from_tensor, list_images, read_image, to_tensor, write_image
from esrcli.errors import EsrError, ImageError, folder_failure

if TYPE_CHECKING:  # torch is imported where it is used, so `esr --help` need not load it
    import torch

HELP = """Synthesise low-quality images with Real-ESRGAN's second-order degradation model.

esr degrade HR_IN... OUT [--per-image K] [--crop 256]: degrade images into OUT/lq (and OUT/gt), with OUT/params.jsonl.

esr degrade --show [IMG] [-o sheet.png] [--n 12]: a contact sheet of what the model does (built-in test chart without IMG).

esr degrade --print-config: the settings as TOML (a \\[degrade] table).

--pdm FILE: use a learned degradation model (esr train-pdm's pdm.safetensors) instead; with --show, the sheet draws sampled kernels and noise maps beside the LR images.
"""


_PDM_SHEET_MAX = 8  # rows of esrcli.degrade.pdm.pdm_sheet that fit a screen


class _TooSmall(Exception):
    """An image smaller than ``--crop``: skipped with a warning, not a failure."""


def _load_config(config: Path | None, scale: int | None) -> DegradeConfig:
    cfg = load_toml(DegradeConfig, config, table="degrade") if config is not None else DegradeConfig()
    if scale is not None and scale != cfg.scale:
        if not 1 <= scale <= 16:
            raise typer.BadParameter(f"must be in [1, 16], got {scale}", param_hint="--scale")
        gt_size = max(scale, cfg.gt_size // scale * scale)
        if gt_size != cfg.gt_size and config is not None:
            console.warn(f"--scale {scale}: {config}'s degrade.gt_size {cfg.gt_size} is not a multiple of it; using {gt_size}")
        # gt_size goes down to a multiple of the new scale (the default 256: 255 for x3)
        cfg = dataclasses.replace(cfg, scale=scale, gt_size=gt_size)
    return cfg


def _pick_device(name: str) -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise typer.BadParameter("CUDA is not available on this machine", param_hint="--device")
    try:
        return torch.device(name)
    except RuntimeError:
        raise typer.BadParameter(f"unknown device {name!r}", param_hint="--device") from None


def _rgb(img: Image) -> np.ndarray:
    """Colour plane as ``(H, W, 3)``: gray is replicated, alpha is ignored."""
    return np.repeat(img.color, 3, axis=2) if img.is_gray else img.color


def _seed_for(seed: int, name: str) -> int:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _inside(path: Path, folder: Path) -> bool:
    """True when ``path`` is ``folder`` or lies inside it (links resolved)."""
    try:
        path.resolve().relative_to(folder.resolve())
    except (ValueError, OSError):
        return False
    return True


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageError(folder_failure(folder, exc, "output folder")) from None


def _read_log(path: Path) -> list[dict[str, Any]]:
    """Entries of an earlier run's ``params.jsonl`` (an unfinished last line is dropped)."""
    entries = []
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return entries
    except (OSError, UnicodeDecodeError) as exc:
        raise ImageError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    for raw in text.splitlines():
        try:
            entry = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("lq"), str):
            entries.append(entry)
    return entries


def _out_name(path: Path, roots: list[Path], used: set[str]) -> tuple[str, str]:
    """``(file name, seed key)``: the name relative to its input folder (``a__b`` for
    ``a/b.png``), with ``-2``, ``-3``... when another input already took it; the seed key is
    the name without that suffix, so that other files never change this one's randomness."""
    name = path.stem
    for root in roots:
        if root.is_dir():
            try:
                name = path.relative_to(root).with_suffix("").as_posix().replace("/", "__")
                break
            except ValueError:
                continue
    base, i = name, 2
    while name in used:
        name, i = f"{base}-{i}", i + 1
    used.add(name)
    return name, base


def _degrade_file(
    path: Path, name: str, key: str, out: Path, cfg: DegradeConfig, seed: int, per_image: int, crop: int | None, device: torch.device,
    pdm: Any = None,
) -> list[dict[str, Any]]:
    import torch

    from esrcli.degrade import degrade

    img = read_image(path)
    x = to_tensor(_rgb(img)).to(device)
    h, w = x.shape[-2:]
    gen = torch.Generator().manual_seed(_seed_for(seed, key))
    positions: list[tuple[int, int] | None]
    if crop is not None:
        if h < crop or w < crop:
            raise _TooSmall(f"{path}: {w}x{h} pixels is smaller than --crop {crop}, skipped")
        tops = torch.randint(0, h - crop + 1, (per_image,), generator=gen).tolist()
        lefts = torch.randint(0, w - crop + 1, (per_image,), generator=gen).tolist()
        positions = list(zip(tops, lefts))
        gt = torch.cat([x[:, :, t : t + crop, l : l + crop] for t, l in positions])
    else:
        hh, ww = h - h % cfg.scale, w - w % cfg.scale
        if hh < cfg.scale or ww < cfg.scale:
            raise ImageError(f"{path}: {w}x{h} pixels is too small for scale {cfg.scale}")
        positions = [None] * per_image
        gt = x[:, :, :hh, :ww].expand(per_image, -1, -1, -1).contiguous()
    if pdm is not None:  # a learned model (esrcli.degrade.pdm.PdmModel)
        # one generator per sample, its seed logged: pdm.degrade(gt_k, generator=seeded) rebuilds it
        seeds = torch.randint(0, 2**62, (per_image,), generator=gen).tolist()
        lq = torch.cat([pdm.degrade(gt[k : k + 1], generator=torch.Generator().manual_seed(s)) for k, s in enumerate(seeds)]).clamp(0, 1)
        params = [{"pdm": pdm.source, "seed": s} for s in seeds]
    else:
        lq, params = degrade(gt, cfg, gen)
    lines = []
    for k in range(per_image):
        stem = f"{name}_{k}" if per_image > 1 else name
        lq_rel = f"lq/{stem}.png"
        write_image(out / lq_rel, Image(from_tensor(lq[k : k + 1]), bit_depth=8))
        entry: dict[str, Any] = {"lq": lq_rel, "source": str(path)}
        if crop is not None:
            gt_rel = f"gt/{stem}.png"
            write_image(out / gt_rel, Image(from_tensor(gt[k : k + 1]), bit_depth=img.bit_depth))
            entry["gt"] = gt_rel
            top, left = positions[k]
            entry["crop"] = {"top": top, "left": left, "size": crop}
        else:
            entry["gt_size"] = [int(gt.shape[-2]), int(gt.shape[-1])]
        entry.update(params[k])
        lines.append(entry)
    return lines


def _open_viewer(path: Path) -> bool:
    """Open ``path`` in the desktop's image viewer without waiting; never in CI or tests."""
    if os.environ.get("CI") or "PYTEST_CURRENT_TEST" in os.environ or not sys.stdout.isatty():
        return False
    if sys.platform == "darwin":
        exe = shutil.which("open")
    elif sys.platform.startswith("linux") and (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        exe = shutil.which("xdg-open")
    else:
        exe = None
    if exe is None:
        return False
    try:
        subprocess.Popen([exe, str(path)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError:
        return False
    return True


def _show(image: Path | None, output: Path | None, cfg: DegradeConfig, seed: int, n: int, device: torch.device, open_viewer: bool, pdm: Any = None) -> None:
    import torch

    from esrcli.data.testchart import draw_test_chart
    from esrcli.degrade import degrade
    from esrcli.degrade.sheet import contact_sheet

    side = cfg.gt_size
    if image is None:
        hr = draw_test_chart(max(64, side))[:side, :side]
        title = "built-in test chart"
    else:
        hr = _rgb(read_image(image))
        title = image.name
    h, w = hr.shape[:2]
    ch, cw = min(h, side), min(w, side)
    ch, cw = ch - ch % cfg.scale, cw - cw % cfg.scale
    if ch < 4 * cfg.scale or cw < 4 * cfg.scale:
        raise ImageError(f"{image}: {w}x{h} pixels is too small to show degradations at scale {cfg.scale}")
    top, left = (h - ch) // 2, (w - cw) // 2
    hr = np.ascontiguousarray(hr[top : top + ch, left : left + cw])
    gt = to_tensor(hr).to(device).expand(n, -1, -1, -1).contiguous()
    if pdm is not None:
        from esrcli.degrade.pdm import pdm_sheet

        with torch.no_grad():
            zk, zn = pdm.draw_codes(n, (ch // cfg.scale, cw // cfg.scale), torch.Generator().manual_seed(seed))
            lq, kernels, noise = pdm(gt[:n], zk, zn)
        if kernels.shape[-2:] != (1, 1):  # spatially variant: the kernel at the centre
            kernels = kernels[..., kernels.shape[-2] // 2, kernels.shape[-1] // 2][..., None, None]
        kernels = kernels.reshape(n, pdm.kernel_size, pdm.kernel_size)
        sheet = pdm_sheet(gt[0].cpu(), lq.clamp(0, 1).cpu(), kernels.cpu(), None if noise is None else noise.cpu(), title=f"HR: {title}").numpy()
    else:
        lq, params = degrade(gt, cfg, torch.Generator().manual_seed(seed))
        lqs = [from_tensor(lq[i : i + 1]) for i in range(n)]
        sheet = contact_sheet(hr, lqs, params, cfg.scale, title=f"HR: {title}")
    path = output if output is not None else Path(tempfile.gettempdir()) / f"esr-degrade-sheet-{seed}.png"
    write_image(path, Image(sheet, bit_depth=8))
    console.out.print(str(path), markup=False)
    if open_viewer and _open_viewer(path):
        console.info(f"opened {path} in the image viewer")


def register(app: typer.Typer) -> None:
    """Add ``esr degrade`` to the root app."""

    @app.command("degrade", help=HELP)
    def degrade_cmd(
        paths: Optional[List[Path]] = typer.Argument(None, help="HR images or folders, then the output folder; with --show at most one image.", show_default=False, metavar="HR_IN... OUT"),
        config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML file with a \\[degrade] table.", dir_okay=False),
        scale: Optional[int] = typer.Option(None, "--scale", "-s", help="SR factor (default: the config's, 4)."),
        seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same outputs."),
        per_image: int = typer.Option(1, "--per-image", "-k", min=1, help="Degraded samples per input image."),
        crop: Optional[int] = typer.Option(None, "--crop", min=1, help="Random GT crops of this size (written to OUT/gt)."),
        recursive: bool = typer.Option(False, "--recursive", "-r", help="Look for images in sub-folders too."),
        show: bool = typer.Option(False, "--show", help="Draw a contact sheet of HR crop and LQ samples."),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="Contact sheet file (with --show).", dir_okay=False),
        n: Optional[int] = typer.Option(None, "--n", min=1, max=64, help="LQ samples on the contact sheet (default 12; with --pdm 8, at most 8).", show_default=False),
        open_viewer: bool = typer.Option(True, "--open/--no-open", help="Open the sheet in the image viewer when there is one."),
        print_config: bool = typer.Option(False, "--print-config", help="Print the configuration as TOML and exit."),
        device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto."),
        pdm_file: Optional[Path] = typer.Option(None, "--pdm", help="Learned degradation model (esr train-pdm's pdm.safetensors).", dir_okay=False),
    ) -> None:
        pdm = None
        if pdm_file is not None:
            from esrcli.degrade.pdm import load_pdm

            pdm = load_pdm(pdm_file, scale=scale)
            pdm.source = str(pdm_file)
            scale = pdm.scale
        cfg = _load_config(config, scale)
        paths = list(paths or [])
        if print_config:
            if paths or show:
                raise typer.BadParameter("prints the settings and exits: give it no images and no --show", param_hint="--print-config")
            console.out.print(to_toml(cfg, table="degrade"), markup=False)
            return
        dev = _pick_device(device)
        # options of the other mode are usage errors, not silently ignored
        batch_only = [name for name, used in (("--per-image", per_image != 1), ("--crop", crop is not None), ("--recursive", recursive)) if used]
        show_only = [name for name, used in (("--n", n is not None), ("--no-open", not open_viewer)) if used]
        if show and batch_only:
            raise typer.BadParameter("the contact sheet takes one image and draws --n samples of it", param_hint=f"{batch_only[0]} with --show")
        if not show and show_only:
            raise typer.BadParameter("only used with --show", param_hint=show_only[0])
        if show:
            if len(paths) > 1:
                raise typer.BadParameter("--show takes at most one image; name the sheet file with -o FILE", param_hint="HR_IN")
            if output is not None and paths and console.same_path(output, paths[0]):
                raise typer.BadParameter(f"{output}: the sheet would overwrite the input image", param_hint="--output")
            if pdm is not None and n is not None and n > _PDM_SHEET_MAX:
                console.warn(f"--n {n}: the PDM sheet draws at most {_PDM_SHEET_MAX} samples")
            n = min(n or _PDM_SHEET_MAX, _PDM_SHEET_MAX) if pdm is not None else (n or 12)
            _show(paths[0] if paths else None, output, cfg, seed, n, dev, open_viewer, pdm.to(dev) if pdm is not None else None)
            return
        if output is not None:
            raise typer.BadParameter("only used with --show", param_hint="--output")
        if len(paths) < 2:
            raise typer.BadParameter("give one or more HR images or folders and then an output folder", param_hint="HR_IN... OUT")
        if crop is not None and crop % cfg.scale:
            raise typer.BadParameter(f"must be a multiple of the scale {cfg.scale}, got {crop}", param_hint="--crop")
        *inputs, out = paths
        if out.exists() and not out.is_dir():
            raise ImageError(f"{out}: output exists and is not a folder")
        written = [out / "lq", out / "gt"]  # esr degrade's own outputs: never inputs
        for p in inputs:
            for folder in written:
                if _inside(p, folder):
                    raise typer.BadParameter(f"{p}: the outputs go to {folder}, which would overwrite the inputs; pick another output folder", param_hint="OUT")
        listed = list_images(inputs, recursive=recursive)
        files = [f for f in listed if not any(_inside(f, folder) for folder in written)]
        if len(files) < len(listed):
            console.warn(f"{len(listed) - len(files)} files in {out / 'lq'} or {out / 'gt'} (outputs of an earlier run) left out of the inputs")
        if not files:
            raise ImageError(f"{', '.join(map(str, inputs))}: no images found")
        _make_folder(out / "lq")
        if crop is not None:
            _make_folder(out / "gt")
        log_path = out / "params.jsonl"
        # An earlier run's lines stay for the files this run does not rewrite; each file's lines
        # are appended as soon as its images are written, so the log matches the images even
        # when the run is interrupted (for a rewritten file, its last line counts).
        earlier = {entry["lq"]: entry for entry in _read_log(log_path)}
        earlier = {k: e for k, e in earlier.items() if (out / k).is_file()}
        atomic_write_bytes(log_path, "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in earlier.values()).encode())
        used: set[str] = set()
        written_lines = 0
        failed = skipped = 0
        with open(log_path, "a", encoding="utf-8") as log, console.progress("degrade", total=len(files)) as advance:
            for f in files:
                name, key = _out_name(f, inputs, used)
                try:
                    lines = _degrade_file(f, name, key, out, cfg, seed, per_image, crop, dev, pdm.to(dev) if pdm is not None else None)
                except _TooSmall as exc:
                    console.warn(str(exc))
                    skipped += 1
                except EsrError as exc:
                    console.error(str(exc) if str(f) in str(exc) else f"{f}: {exc}")
                    failed += 1
                else:
                    log.write("".join(json.dumps(entry, separators=(",", ":")) + "\n" for entry in lines))
                    log.flush()
                    written_lines += len(lines)
                advance()
        if earlier and written_lines:  # drop the superseded lines of rewritten files
            final = {entry["lq"]: entry for entry in _read_log(log_path)}
            atomic_write_bytes(log_path, "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in final.values()).encode())
        elif not earlier and not written_lines:
            log_path.unlink(missing_ok=True)
        gt_note = " and GT crops" if crop is not None else ""
        skip_note = f", {skipped} smaller than --crop skipped" if skipped else ""
        log_note = f" (parameters: {log_path})" if written_lines else ""
        console.out.print(
            f"{written_lines} LQ images{gt_note} from {len(files) - failed - skipped} files in {out}{skip_note}{log_note}",
            markup=False,
        )
        if failed:
            console.error(f"{failed} of {len(files)} files failed")
            raise typer.Exit(code=1)
