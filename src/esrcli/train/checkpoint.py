"""Training checkpoints: atomic writes, keep-N rotation, lookup of the latest one.

A checkpoint is one ``torch.save`` file ``checkpoints/iter_00012000.pt`` holding plain
containers only (state dicts, tensors, ints, strings), so it loads with
``torch.load(weights_only=True)``. It is written to a temporary file in the same folder,
flushed and fsync'ed, then renamed over the final name: a crash or a full disk while
writing leaves the previous checkpoints untouched.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from esrcli.atomic import atomic_output
from esrcli.errors import TrainingError

__all__ = ["CHECKPOINT_DIR", "checkpoint_path", "list_checkpoints", "latest_checkpoint", "write_checkpoint", "read_checkpoint"]

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^iter_(\d{8,})\.pt$")


def checkpoint_path(out_dir: Path, iteration: int) -> Path:
    """``OUT/checkpoints/iter_NNNNNNNN.pt``."""
    return Path(out_dir) / CHECKPOINT_DIR / f"iter_{iteration:08d}.pt"


def list_checkpoints(out_dir: Path) -> list[Path]:
    """Checkpoints of ``out_dir`` sorted by iteration (oldest first)."""
    folder = Path(out_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The newest checkpoint of ``out_dir``, or ``None``."""
    found = list_checkpoints(out_dir)
    return found[-1] if found else None


def _save_bytes(obj: Any, fh) -> None:
    torch.save(obj, fh)


def write_checkpoint(path: Path, state: dict[str, Any], keep: int) -> Path:
    """Write ``state`` atomically to ``path``, then delete all but the newest ``keep``.

    Args:
        path: the final file (its folder is created).
        state: plain containers of tensors / numbers / strings.
        keep: how many checkpoints of that folder to keep (>= 1).

    Returns:
        ``path``.

    Raises:
        TrainingError: the write failed (disk full, permissions); the temporary file is
            removed and earlier checkpoints are kept.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_output(path) as fh:
            _save_bytes(state, fh)
    except OSError as exc:
        previous = [p for p in list_checkpoints(path.parent.parent) if p != path]
        kept = f"; previous checkpoint {previous[-1].name} kept" if previous else ""
        raise TrainingError(f"{path}: cannot write checkpoint ({exc.strerror or exc}){kept}") from None
    for old in list_checkpoints(path.parent.parent)[:-keep]:
        try:
            old.unlink()
        except OSError:
            pass
    return path


def read_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`write_checkpoint`.

    Raises:
        TrainingError: missing, truncated or foreign file.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise TrainingError(f"{path}: no such checkpoint") from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means an unusable file
        raise TrainingError(f"{path}: not a readable esr checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or "iteration" not in state or "net_g" not in state:
        raise TrainingError(f"{path}: not an esr training checkpoint")
    return state
