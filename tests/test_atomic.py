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


def test_atomic_output_without_replace_keeps_a_file_that_appeared(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    with pytest.raises(FileExistsError):
        with atomic_output(target, replace=False) as fh:
            fh.write(b"mine")
            target.write_bytes(b"theirs")  # another process finished first
    assert target.read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no .part left
    fresh = tmp_path / "new.png"
    with atomic_output(fresh, replace=False) as fh:
        fh.write(b"new")
    assert fresh.read_bytes() == b"new" and len(list(tmp_path.iterdir())) == 2
    # A file system without hard links: checked, then renamed.
    monkeypatch.setattr(os, "link", lambda a, b: (_ for _ in ()).throw(PermissionError(1, "no links")))
    with atomic_output(tmp_path / "fat.png", replace=False) as fh:
        fh.write(b"fat")
    assert (tmp_path / "fat.png").read_bytes() == b"fat"
    with pytest.raises(FileExistsError):
        with atomic_output(tmp_path / "fat.png", replace=False) as fh:
            fh.write(b"again")
    assert (tmp_path / "fat.png").read_bytes() == b"fat" and len(list(tmp_path.iterdir())) == 3


def test_batch_keeps_an_output_another_run_wrote_meanwhile(tmp_path, monkeypatch):
    import cv2

    import esrcli.infer.batch as batch
    from esrcli.archs import SRVGGNetCompact
    from esrcli.infer import BatchOptions, Skipped, UpscaleOptions, Written, collect_inputs, load_upscale_model, run_batch
    from esrcli.infer.model import ModelSpec
    from esrcli.weights import ModelInfo, save_model

    q = dict(num_in_ch=3, num_out_ch=3, num_feat=4, num_conv=1, scale=2, act_type="prelu")
    save_model(tmp_path / "m.safetensors", SRVGGNetCompact(**q), ModelInfo("SRVGGNetCompact", q, 2))
    (tmp_path / "in").mkdir()
    for n in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / "in" / n), np.full((8, 8, 3), 90, np.uint8))
    out = tmp_path / "out"
    real = batch.upscale_image

    def racing(image, *args, **kwargs):  # another esr writes a.png while this one runs
        (out / "a.png").write_bytes(b"other run")
        return real(image, *args, **kwargs)

    monkeypatch.setattr(batch, "upscale_image", racing)
    model = load_upscale_model(ModelSpec(str(tmp_path / "m.safetensors"), "cpu", "fp32"))
    items = collect_inputs([tmp_path / "in" / "a.png"], out, None)
    out.mkdir()
    events = list(run_batch(items, model, BatchOptions(upscale=UpscaleOptions(tile=0), jobs=1)))
    assert [type(e).__name__ for e in events if isinstance(e, (Skipped, Written))] == ["Skipped"]
    assert (out / "a.png").read_bytes() == b"other run"
    events = list(run_batch(items, model, BatchOptions(upscale=UpscaleOptions(tile=0), jobs=1, overwrite=True)))
    assert any(isinstance(e, Written) for e in events) and cv2.imread(str(out / "a.png")) is not None
