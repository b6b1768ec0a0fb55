"""`torchrun --nproc-per-node 2 -m esrcli upscale`: inputs sharded by rank, one summary (2 CPU processes, gloo)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from esrcli.archs import SRVGGNetCompact
from esrcli.infer.distributed import Rank, rank_from_env, shard
from esrcli.weights import ModelInfo, save_model

ROOT = Path(__file__).resolve().parents[1]


def test_rank_from_env_and_shard():
    assert rank_from_env({}) is None and rank_from_env({"WORLD_SIZE": "1", "RANK": "0"}) is None
    r = rank_from_env({"WORLD_SIZE": "3", "RANK": "2", "LOCAL_RANK": "0"})
    assert r == Rank(2, 0, 3)
    assert shard(list(range(8)), r) == [2, 5] and shard(list(range(8)), None) == list(range(8))
    assert sorted(sum((shard(list(range(8)), Rank(k, k, 3)) for k in range(3)), [])) == list(range(8))


@pytest.mark.slow
def test_torchrun_two_cpu_processes_shard_a_folder(tmp_path):
    q = dict(num_in_ch=3, num_out_ch=3, num_feat=4, num_conv=1, scale=4, act_type="prelu")
    save_model(tmp_path / "m.safetensors", SRVGGNetCompact(**q), ModelInfo("SRVGGNetCompact", q, 4))
    d = tmp_path / "in"
    d.mkdir()
    for i in range(5):
        cv2.imwrite(str(d / f"img{i}.png"), (np.random.default_rng(i).random((12, 10, 3)) * 255).astype(np.uint8))
    (d / "zbad.png").write_bytes(b"")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "esrcli",
           "upscale", str(d), str(tmp_path / "out"), "--model", str(tmp_path / "m.safetensors"), "--device", "cpu"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert p.returncode == 1, p.stderr  # one bad file
    assert sorted(Path(line).name for line in p.stdout.split()) == [f"img{i}.png" for i in range(5)]  # each once
    assert sorted(f.name for f in (tmp_path / "out").iterdir()) == [f"img{i}.png" for i in range(5)]
    summaries = [line for line in p.stderr.splitlines() if "written," in line]
    assert summaries == [summaries[0]] and "5 written, 0 skipped, 1 failed" in summaries[0], p.stderr
    assert p.stderr.count("over 2 processes") == 1
    assert [line for line in p.stderr.splitlines() if line.startswith("esr: error:")] == [f"esr: error: {d / 'zbad.png'}: empty file (0 bytes)"]
