"""Shared fixtures: the ``../shared`` folder (skip when absent), a small CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

# Keep tests predictable on the 2-core CI machine.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def shared() -> Path:
    """Path of ``../shared``; skips the test when it is absent (e.g. outside CI)."""
    if not (SHARED / "README.md").exists():
        pytest.skip("../shared is absent (data folder beside the repository); see shared/README.md")
    return SHARED


@pytest.fixture
def esr(capsys):
    """Run the ``esr`` CLI in-process: ``rc, out, err = esr("niqe", "x.png")``."""
    from esrcli.cli.app import main

    def run(*args: str | os.PathLike) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main([str(a) for a in args])
        captured = capsys.readouterr()
        return rc, captured.out, captured.err

    return run
