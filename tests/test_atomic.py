"""Atomic writers: temporary file removed on failure, target intact, usual permissions."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

from esrcli.atomic import atomic_output
from esrcli.data.imageio import Image, write_image
from esrcli.errors import ImageError, WeightsError
from esrcli.weights.io import atomic_save


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_outputs_get_umask_permissions_not_0600(tmp_path, umask_022):
    write_image(tmp_path / "a.png", Image(np.zeros((4, 4, 3), np.float32)))
    atomic_save({"w": torch.zeros(2)}, {"format": "x"}, tmp_path / "m.safetensors")
    with atomic_output(tmp_path / "c.bin") as fh:
        fh.write(b"x")
    for name in ("a.png", "m.safetensors", "c.bin"):
        assert _mode(tmp_path / name) == 0o644, name


def test_failure_keeps_target_and_removes_temporary(tmp_path):
    target = tmp_path / "t.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as fh:
            fh.write(b"new, half")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.bin"]


def test_missing_folder_is_a_typed_error(tmp_path):
    with pytest.raises(ImageError, match="output folder does not exist"):
        write_image(tmp_path / "no" / "a.png", Image(np.zeros((4, 4, 3), np.float32)))
    with pytest.raises(WeightsError, match="output folder does not exist"):
        atomic_save({"w": torch.zeros(2)}, {}, tmp_path / "no" / "m.safetensors")


def test_read_failure_messages(tmp_path):
    """One line naming the file for each way a read fails."""
    from esrcli.errors import read_failure

    assert read_failure("a.png", FileNotFoundError(2, "No such file or directory"), "an image") == "a.png: no such file"
    assert read_failure("d", IsADirectoryError(21, "Is a directory"), "a model file") == "d: is a folder, not a model file"
    assert read_failure("b.pth", PermissionError(13, "Permission denied"), "a model file") == "b.pth: cannot read (Permission denied)"
    assert read_failure("c", OSError("weird"), "an image") == "c: cannot read (weird)"
