"""esrcli.memory.available_memory: /proc/meminfo, lowered to the room under a cgroup limit."""

from __future__ import annotations

from pathlib import Path

from esrcli.memory import available_memory


def _root(tmp_path: Path, meminfo_kb: int | None, cgroup: dict[str, str] | None = None) -> Path:
    (tmp_path / "proc").mkdir()
    if meminfo_kb is not None:
        (tmp_path / "proc/meminfo").write_text(f"MemTotal:       99999999 kB\nMemFree:  1 kB\nMemAvailable:   {meminfo_kb} kB\n")
    for name, text in (cgroup or {}).items():
        f = tmp_path / "sys/fs/cgroup" / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text + "\n")
    return tmp_path


def test_meminfo_without_cgroup_limit(tmp_path):
    assert available_memory(_root(tmp_path, 8_000_000)) == 8_000_000 * 1024


def test_cgroup_v2_limit_lowers_it_and_max_means_no_limit(tmp_path):
    root = _root(tmp_path, 8_000_000, {"memory.max": str(3 << 30), "memory.current": str(1 << 30)})
    assert available_memory(root) == 2 << 30
    (root / "sys/fs/cgroup/memory.max").write_text("max\n")
    assert available_memory(root) == 8_000_000 * 1024


def test_cgroup_v1_limit_and_its_no_limit_sentinel(tmp_path):
    root = _root(tmp_path, 8_000_000, {"memory/memory.limit_in_bytes": str(2 << 30), "memory/memory.usage_in_bytes": str(3 << 30)})
    assert available_memory(root) == 0  # over the limit already: no room
    (root / "sys/fs/cgroup/memory/memory.limit_in_bytes").write_text(str(2**63 - 4096))
    assert available_memory(root) == 8_000_000 * 1024


def test_unknown_without_meminfo(tmp_path):
    assert available_memory(_root(tmp_path, None)) is None
