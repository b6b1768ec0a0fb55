"""HR crop dataset: scanning, skipping, padding, determinism, sharded resumable sampling."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
import torch

from esrcli.data.dataset import HRCropDataset, InfiniteSampler, load_validation_image, scan_images
from esrcli.errors import DataError


def _png(path, h, w, channels=3, seed=0, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    maxv = 255 if dtype == np.uint8 else 65535
    a = (rng.random((h, w, channels)) * maxv).astype(dtype)
    cv2.imwrite(str(path), a if channels > 1 else a[:, :, 0])
    return path


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "hr"
    (d / "sub").mkdir(parents=True)
    _png(d / "a.png", 60, 50)
    _png(d / "sub" / "b.png", 20, 30, seed=1)  # smaller than the crop: padded
    _png(d / "gray.png", 48, 48, channels=1, seed=2)
    _png(d / "rgba16.png", 48, 52, channels=4, seed=3, dtype=np.uint16)
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (d / "notes.txt").write_text("ignored")
    return d


def test_scan_recurses_skips_and_counts(folder):
    scan = scan_images([folder], crop_size=40)
    names = [f.name for f in scan.files]
    assert names == ["a.png", "gray.png", "rgba16.png", "b.png"]
    assert [f.name for f, _ in scan.skipped] == ["broken.png"]
    assert scan.padded == 1
    assert scan_images([folder], crop_size=40, min_size=30).files == scan.files[:3]


def test_scan_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="folder empty"):
        scan_images([tmp_path / "empty"])
    with pytest.raises(DataError, match="no such data folder"):
        scan_images([tmp_path / "missing"])
    with pytest.raises(DataError, match="no training folder"):
        scan_images([])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match="1 skipped"):
        scan_images([tmp_path / "bad"])


def test_crops_are_rgb_padded_and_deterministic(folder):
    scan = scan_images([folder], crop_size=40)
    ds = HRCropDataset(scan, 40, use_hflip=True, use_rot=True, seed=7)
    for i in range(len(ds)):
        x = ds[(i, i)]
        assert x.shape == (3, 40, 40) and x.dtype == torch.float32
        assert 0 <= x.min() and x.max() <= 1
    gray = ds[(0, 1)]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    assert torch.equal(ds[(5, 0)], ds[(5, 0)])
    assert not torch.equal(ds[(5, 0)], ds[(6, 0)])  # another position, another crop
    assert torch.equal(HRCropDataset(scan, 40, seed=7)[(3, 3)], HRCropDataset(scan, 40, seed=7)[(3, 3)])


def test_padding_reflects(tmp_path):
    _png(tmp_path / "tiny.png", 3, 5)
    scan = scan_images([tmp_path], crop_size=16)
    x = HRCropDataset(scan, 16, use_hflip=False)[(0, 0)]
    assert x.shape == (3, 16, 16)
    assert torch.equal(x[:, 3], x[:, 1])  # reflected row (no edge repeat)


def test_sampler_epochs_shards_and_resume():
    n = 5
    keys = list(itertools.islice(iter(InfiniteSampler(n, seed=3)), 15))
    assert [p for p, _ in keys] == list(range(15))
    for e in range(3):  # every epoch is a permutation
        assert sorted(i for _, i in keys[e * n : (e + 1) * n]) == list(range(n))
    resumed = list(itertools.islice(iter(InfiniteSampler(n, seed=3, start=7)), 8))
    assert resumed == keys[7:15]
    r0 = list(itertools.islice(iter(InfiniteSampler(n, seed=3, rank=0, world=2)), 5))
    r1 = list(itertools.islice(iter(InfiniteSampler(n, seed=3, rank=1, world=2)), 5))
    assert sorted(r0 + r1) == keys[:10]
    assert not set(r0) & set(r1)


def test_validation_image(tmp_path):
    f = _png(tmp_path / "v.png", 30, 21)
    lq, gt = load_validation_image(f, 4)
    assert gt.shape == (1, 3, 28, 20) and lq.shape == (1, 3, 7, 5)
