"""Run logs: ``metrics.jsonl`` (one JSON object per line) and optional TensorBoard events."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["MetricsLog", "METRICS_FILE"]

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Append-only JSON-lines log (rank 0), with TensorBoard scalars when ``tensorboard`` is installed.

    Args:
        out_dir: the run folder; the log is ``out_dir/metrics.jsonl`` and events go to ``out_dir/tb``.
        resume_iter: on resume, lines of iterations after this one (written by the interrupted
            run after its last checkpoint) are dropped, so the log reads as one uninterrupted run.
        enabled: ``False`` on ranks other than 0 (everything becomes a no-op).
        tensorboard: try to write TensorBoard events.
    """

    def __init__(self, out_dir: Path, resume_iter: int = 0, enabled: bool = True, tensorboard: bool = True) -> None:
        self.path = Path(out_dir) / METRICS_FILE
        self.enabled = enabled
        self._tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._truncate_after(resume_iter)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # needs the optional `tensorboard` package
            except ImportError:
                self._tb = None
            else:
                self._tb = SummaryWriter(log_dir=str(Path(out_dir) / "tb"), purge_step=resume_iter + 1 if resume_iter else None)

    def _truncate_after(self, iteration: int) -> None:
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            if rec.get("iter", 0) <= iteration:
                kept.append(line)
        self.path.write_text("".join(k + "\n" for k in kept), encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (must contain ``"iter"``); non-finite floats are written as strings."""
        if not self.enabled:
            return
        clean = {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in record.items()}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(clean, sort_keys=False) + "\n")
        if self._tb is not None:
            step = int(record["iter"])
            for k, v in record.items():
                if k != "iter" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
