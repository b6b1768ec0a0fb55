"""``esr niqe PATH...``: no-reference NIQE scores (MATLAB release, exact) of image files and folders.

Prints a table (one row per image, then the mean) on stdout, or ``--json`` / ``--csv``.
A file that cannot be scored (unreadable, smaller than 96x96, flat) is reported on stderr
and skipped; the command then exits 1 after printing the others.
"""

from __future__ import annotations

import csv
import io
import json
import math
from enum import Enum
from pathlib import Path
from typing import Callable, Iterable, List, Sequence, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from esrcli.cli import console
from esrcli.data.imageio import list_images, unique_files
from esrcli.errors import EsrError, ImageError

__all__ = ["register", "fmt_score", "json_score", "expand_paths", "each_image", "error_text", "emit", "output_format"]

T = TypeVar("T")


class Convert(str, Enum):
    y = "y"
    gray = "gray"


def fmt_score(value: float | None, digits: int = 4) -> str:
    """A score for tables/CSV: fixed digits, ``inf`` for infinity, ``-`` when missing (never ``nan``)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}"


def json_score(value: float | None) -> float | str | None:
    """A score for JSON: the float, ``"inf"`` for infinity (strict JSON has no Infinity), ``None`` when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def error_text(path: Path, exc: EsrError) -> str:
    """The error message, prefixed with the file name unless it already starts with it."""
    msg = str(exc)
    return msg if msg.startswith(str(path)) else f"{path}: {msg}"


def expand_paths(paths: Sequence[Path], recursive: bool) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Files and folders -> image files, plus ``(path, error)`` for paths that do not exist."""
    files: list[Path] = []
    missing: list[tuple[Path, str]] = []
    for p in paths:
        try:
            files.extend(list_images([p], recursive=recursive))
        except ImageError as exc:
            missing.append((p, str(exc)))
    return unique_files(files), missing


def each_image(
    label: str, paths: Sequence[Path], recursive: bool, fn: Callable[[Path], T]
) -> tuple[list[tuple[Path, T]], list[tuple[Path, str]]]:
    """Run ``fn`` on every image file of ``paths`` under a progress bar, going on past bad files.

    Paths that do not exist and files whose ``fn`` raises an :class:`EsrError` are reported on
    stderr (one line each) and returned as skipped.

    Returns:
        ``[(path, fn(path))]`` in input order, and ``[(path, error)]`` of what was skipped.

    Raises:
        ImageError: ``paths`` hold no image file at all.
    """
    files, skipped = expand_paths(paths, recursive)
    for _, msg in skipped:
        console.error(msg)
    if not files and not skipped:
        raise ImageError(f"{', '.join(map(str, paths))}: no images found")
    results: list[tuple[Path, T]] = []
    with console.progress(label, total=len(files)) as advance:
        for path in files:
            try:
                results.append((path, fn(path)))
            except EsrError as exc:
                msg = error_text(path, exc)
                console.error(msg)
                skipped.append((path, msg))
            advance()
    return results, skipped


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def emit(
    columns: list[tuple[str, str, int]],
    rows: list[tuple[str, dict[str, float | None]]],
    skipped: list[tuple[Path, str]],
    fmt: str,
    extra: dict | None = None,
) -> None:
    """Print results on stdout as a rich table, JSON or CSV.

    Args:
        columns: ``(key, title, digits)`` of each score column.
        rows: ``(image label, {key: value})``.
        skipped: ``(path, error)`` of what was skipped (listed in JSON; already reported on stderr).
        fmt: ``"table"``, ``"json"`` or ``"csv"``.
        extra: settings recorded at the top of the JSON object.
    """
    means = {k: _mean(r[k] for _, r in rows) for k, _, _ in columns}
    if fmt == "json":
        doc = dict(extra or {})
        doc["images"] = [{"path": label, **{k: json_score(r[k]) for k, _, _ in columns}} for label, r in rows]
        doc["mean"] = {k: json_score(means[k]) for k, _, _ in columns}
        doc["count"] = len(rows)
        doc["skipped"] = [{"path": str(p), "error": e} for p, e in skipped]
        typer.echo(json.dumps(doc, indent=2))
        return
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["path"] + [k for k, _, _ in columns])
        for label, r in rows:
            w.writerow([label] + [fmt_score(r[k], 8) for k, _, _ in columns])
        # always a mean row, so that a script reading the last line gets it ("-": nothing scored)
        w.writerow(["mean"] + [fmt_score(means[k], 8) for k, _, _ in columns])
        typer.echo(buf.getvalue(), nl=False)
        return
    table = Table(show_footer=bool(rows), box=None, pad_edge=False, header_style="bold")
    table.add_column("image", footer="mean", no_wrap=True)
    for k, title, digits in columns:
        table.add_column(title, justify="right", footer=fmt_score(means[k], digits), no_wrap=True)
    for label, r in rows:
        table.add_row(label, *[fmt_score(r[k], d) for k, _, d in columns])
    # Never cut file names: widen past the terminal when needed (lines then wrap in the terminal).
    needed = max([5] + [len(label) for label, _ in rows]) + sum(max(len(t), 8) + 2 for _, t, _ in columns) + 2
    Console(highlight=False, width=max(console.out.width, needed)).print(table)


def output_format(as_json: bool, as_csv: bool) -> str:
    """``"json"``, ``"csv"`` or ``"table"`` from the two flags (both: a usage error)."""
    if as_json and as_csv:
        raise typer.BadParameter("use either --json or --csv, not both", param_hint="--json/--csv")
    return "json" if as_json else "csv" if as_csv else "table"


def niqe_cmd(
    paths: List[Path] = typer.Argument(..., help="Image files and/or folders.", show_default=False, metavar="PATH"),
    convert: Convert = typer.Option(Convert.y, "--convert", help="Colour to gray: y (rgb2ycbcr Y, BasicSR) or gray (rgb2gray)."),
    crop_border: int = typer.Option(0, "--crop-border", min=0, help="Pixels removed on each side first."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV (path,niqe; last row: mean) on stdout."),
) -> None:
    """NIQE (no-reference quality, lower is better) of images, exactly as the MATLAB release."""
    from esrcli.metrics.image import read_uint8
    from esrcli.metrics.niqe import niqe

    fmt = output_format(as_json, as_csv)
    scores, skipped = each_image(
        "niqe", paths, recursive, lambda path: niqe(read_uint8(path), crop_border=crop_border, convert=convert.value)
    )
    rows: list[tuple[str, dict[str, float | None]]] = [(str(path), {"niqe": score}) for path, score in scores]
    emit([("niqe", "NIQE", 4)], rows, skipped, fmt, {"convert": convert.value, "crop_border": crop_border})
    if skipped:
        console.info(f"niqe: {len(rows)} image(s) scored, {len(skipped)} skipped")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``esr niqe`` to the root app."""
    app.command("niqe")(niqe_cmd)
