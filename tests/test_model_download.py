"""Models by name: catalogue lookup, user catalogue, download into the cache (against a local
HTTP server on 127.0.0.1): hit, cache hit offline, wrong hash, missing URL, server down,
interrupted download resumed, and `esr model fetch` / `list --all` / `upscale --model NAME`."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import esrcli.weights.remote as cat
import esrcli.weights.embedded as embedded
from esrcli.archs import SRVGGNetCompact
from esrcli.errors import ConfigError, WeightsError
from esrcli.weights import load_model
from esrcli.weights.remote import RemoteModel, find_remote, load_user_catalogue, normalize_name
from esrcli.weights.download import fetch_model


def _tiny_pth(scale: int = 2) -> bytes:
    torch.manual_seed(1)
    net = SRVGGNetCompact(num_feat=4, num_conv=1, scale=scale)
    buf = io.BytesIO()
    torch.save({"params": net.state_dict()}, buf)
    return buf.getvalue()


class _Server:
    """Serves ``files`` (path -> bytes) with Range support; ``cut_next`` bytes: the next GET
    is cut after that many bytes (a dropped connection)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.cut_next: int | None = None
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):  # noqa: N802 - http.server API
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                if start >= len(data) and rng:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.end_headers()
                    return
                body = data[start:]
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut, server.cut_next = server.cut_next, None
                self.wfile.write(body if cut is None else body[:cut])
                self.wfile.flush()
                if cut is not None:
                    self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path, monkeypatch):
    data = _tiny_pth()
    server = _Server({"/tiny.pth": data})
    monkeypatch.setenv("ESR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ESR_MODELS_FILE", str(tmp_path / "models.toml"))
    yield server, data
    server.close()


def _model(server: _Server, data: bytes, **kw) -> RemoteModel:
    fields = dict(name="tiny", url=server.url + "/tiny.pth", sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                  arch="SRVGGNetCompact", scale=2)
    fields.update(kw)
    return RemoteModel(**fields)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_names_match_case_insensitively_with_or_without_pth():
    assert normalize_name(" RealESRGAN_x4plus.PTH ") == "realesrgan_x4plus"
    for name in ("RealESRGAN_x4plus", "realesrgan_x4plus.pth", "REALESR-GENERAL-X4V3"):
        assert find_remote(name) is not None, name
    assert find_remote("realesrgan_x4plus").file_name == "RealESRGAN_x4plus.pth"
    assert find_remote("no-such-model") is None
    # Every built-in entry says where its facts come from; published hashes are 64 hex digits.
    for m in cat.OFFICIAL_MODELS:
        assert m.source and m.license and m.arch and m.scale in (2, 4)
        assert m.sha256 is None or len(m.sha256) == 64
        assert m.url.startswith("https://") or m.page


def test_download_verify_then_cache_hit_offline(served, tmp_path):
    server, data = served
    model = _model(server, data)
    seen = []
    path = fetch_model(model, progress=lambda done, total: seen.append((done, total)), retry_wait=0)
    assert path == tmp_path / "cache" / "tiny.pth" and path.read_bytes() == data
    assert seen[-1] == (len(data), len(data))
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.pth"]  # no .part left
    server.close()  # offline now: the verified cached file is used
    assert fetch_model(model, retry_wait=0) == path
    assert len(server.requests) == 1


def test_wrong_hash_is_refused_and_nothing_is_left(served, tmp_path):
    server, data = served
    model = _model(server, data, sha256="0" * 64)
    with pytest.raises(WeightsError, match="does not match the catalogue's sha256.*nothing saved"):
        fetch_model(model, retry_wait=0)
    assert list((tmp_path / "cache").iterdir()) == []


def test_wrong_size_is_refused(served, tmp_path):
    server, data = served
    with pytest.raises(WeightsError, match=f"announces {len(data)} bytes, expected {len(data) + 1}"):
        fetch_model(_model(server, data, size=len(data) + 1), retry_wait=0)
    assert list((tmp_path / "cache").iterdir()) == []


def test_missing_url_and_server_down_give_one_line_with_url_and_place(served, tmp_path):
    server, data = served
    with pytest.raises(WeightsError, match=r"missing\.pth \(HTTP 404 Not Found\); fetch it by hand and save it as .*cache.missing\.pth") as exc:
        fetch_model(_model(server, data, url=server.url + "/missing.pth"), retry_wait=0)
    assert "\n" not in str(exc.value)
    down = f"http://127.0.0.1:{_free_port()}/tiny.pth"
    with pytest.raises(WeightsError, match=rf"cannot download {down} \(no connection\); fetch it by hand and save it as ") as exc:
        fetch_model(_model(server, data, url=down), retries=1, retry_wait=0)
    assert "\n" not in str(exc.value)
    page_only = _model(server, data, url="", page="https://example.org/page")
    with pytest.raises(WeightsError, match="no direct download; download https://example.org/page by hand"):
        fetch_model(page_only)
    # Placed by hand with the right hash: used.
    (tmp_path / "cache").mkdir(exist_ok=True)
    (tmp_path / "cache" / "tiny.pth").write_bytes(data)
    assert fetch_model(page_only).read_bytes() == data


def test_interrupted_download_resumes_from_the_part_file(served, tmp_path):
    server, data = served
    model = _model(server, data)
    server.cut_next = 1000
    with pytest.raises(WeightsError, match="connection"):
        fetch_model(model, retries=0, retry_wait=0)
    part = tmp_path / "cache" / "tiny.pth.part"
    assert part.stat().st_size == 1000 and not (tmp_path / "cache" / "tiny.pth").exists()
    path = fetch_model(model, retries=0, retry_wait=0)  # a later run resumes
    assert path.read_bytes() == data and not part.exists()
    assert server.requests[-1] == ("/tiny.pth", "bytes=1000-")
    # Within one run, a dropped connection is retried from where it stopped.
    path.unlink()
    server.cut_next = 500
    assert fetch_model(model, retries=2, retry_wait=0).read_bytes() == data
    assert server.requests[-1] == ("/tiny.pth", "bytes=500-")


def test_a_bad_part_file_from_an_earlier_run_is_fetched_again_from_byte_0(served, tmp_path):
    server, data = served
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "tiny.pth.part").write_bytes(b"\x00" * 1000)  # not the server's bytes
    path = fetch_model(_model(server, data), retries=0, retry_wait=0)
    assert path.read_bytes() == data
    assert server.requests == [("/tiny.pth", "bytes=1000-"), ("/tiny.pth", None)]
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.pth"]


def test_a_cached_file_with_the_wrong_hash_offline_says_so(served, tmp_path):
    server, data = served
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "tiny.pth").write_bytes(data[:-1] + b"x")
    down = f"http://127.0.0.1:{_free_port()}/tiny.pth"
    with pytest.raises(WeightsError, match=r"tiny: the file there has the wrong sha256 and cannot download .*\(no connection\)"):
        fetch_model(_model(server, data, url=down), retries=0, retry_wait=0)


def test_two_fetches_of_one_model_at_once_both_succeed(served, tmp_path):
    """Parallel first runs: the second waits for the first's download and uses its file."""
    server, data = served
    model = _model(server, data)
    slow = threading.Event()
    results: list[object] = []

    def progress(done, total):
        slow.set()
        threading.Event().wait(0.01)  # slow the first download down

    def fetch(progress=None):
        try:
            results.append(fetch_model(model, progress=progress, retries=0, retry_wait=0).read_bytes())
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            results.append(exc)

    first = threading.Thread(target=fetch, args=(progress,))
    first.start()
    slow.wait(5)
    second = threading.Thread(target=fetch)
    second.start()
    first.join(30)
    second.join(30)
    assert results == [data, data]
    assert [r for r in server.requests if r[0] == "/tiny.pth"] == [("/tiny.pth", None)]  # downloaded once


def test_unhashed_model_is_checked_by_architecture(served, tmp_path):
    server, data = served
    assert fetch_model(_model(server, data, sha256=None, size=None)).read_bytes() == data
    (tmp_path / "cache" / "tiny.pth").unlink()
    with pytest.raises(WeightsError, match="is SRVGGNetCompact x2, expected RRDBNet x4; removed"):
        fetch_model(_model(server, data, sha256=None, size=None, arch="RRDBNet", scale=4))
    assert not (tmp_path / "cache" / "tiny.pth").exists()


def test_user_catalogue_rules(tmp_path):
    f = tmp_path / "models.toml"
    f.write_text('[models.Mine]\nurl = "https://h/x.safetensors"\nsha256 = "' + "A" * 64 + '"\nsize = 10\n')
    (m,) = load_user_catalogue(f)
    assert (m.name, m.sha256, m.size, m.user, m.file_name) == ("Mine", "a" * 64, 10, True, "Mine.safetensors")
    bad = {
        '[models.x]\nurl = "https://h/x.pth"\n': r"models\.x\.sha256: missing",
        '[models.x]\nurl = "https://h/x.pth"\nsha256 = "abc"\n': r"models\.x\.sha256: expected 64 hex digits",
        '[models.x]\nurl = "ftp://h/x"\nsha256 = "' + "a" * 64 + '"\n': r"models\.x\.url: expected an http",
        '[models.x]\nurl = "https://h/x"\nsha256 = "' + "a" * 64 + '"\nsiz = 3\n': r"models\.x\.siz: unknown key",
        '[models.x]\nurl = "https://h/x"\nsha256 = "' + "a" * 64 + '"\nsize = "3"\n': r"models\.x\.size: expected int",
        "[models.x\n": "invalid TOML",
    }
    for text, pattern in bad.items():
        f.write_text(text)
        with pytest.raises(ConfigError, match=pattern):
            load_user_catalogue(f)
    assert load_user_catalogue(tmp_path / "absent.toml") == []


def _write_catalogue(path: Path, server: _Server, data: bytes, name: str = "tiny") -> None:
    path.write_text(
        f'[models.{name}]\nurl = "{server.url}/tiny.pth"\nsha256 = "{hashlib.sha256(data).hexdigest()}"\n'
        f"size = {len(data)}\ndescription = \"a tiny test model\"\n"
    )


def test_load_model_by_user_catalogue_name_downloads_once(served, tmp_path):
    server, data = served
    _write_catalogue(tmp_path / "models.toml", server, data)
    net, info = load_model("TINY.pth")
    assert (info.arch, info.scale) == ("SRVGGNetCompact", 2)
    server.close()
    load_model("tiny")  # offline: from the cache
    assert len(server.requests) == 1


def test_built_in_name_downloads_through_the_same_path(served, tmp_path, monkeypatch):
    server, data = served
    sha = hashlib.sha256(data).hexdigest()
    local = tuple(
        replace(m, url=server.url + "/tiny.pth", sha256=sha, size=len(data), scale=2) if m.name == "realesr-general-x4v3" else m
        for m in cat.OFFICIAL_MODELS
    )
    monkeypatch.setattr(cat, "OFFICIAL_MODELS", local)
    _, info = load_model("Realesr-General-X4v3.pth")
    assert info.scale == 2 and (tmp_path / "cache" / "tiny.pth").read_bytes() == data


def test_official_name_uses_the_embedded_file_it_declares(monkeypatch, tmp_path):
    monkeypatch.setenv("ESR_CACHE_DIR", str(tmp_path / "cache"))
    entries = embedded.catalogue()
    assert entries, "the package embeds at least one model"
    declared = [replace(entries[0], official="RealESRGAN_x4plus")] + entries[1:]
    monkeypatch.setattr(embedded, "catalogue", lambda: declared)
    with embedded.resolve_model("realesrgan_x4plus.pth") as path:
        assert path.name == entries[0].file  # no download, no cache folder
    assert not (tmp_path / "cache").exists()
    rows = cat.list_models()
    assert [r.kind for r in rows if r.name == "RealESRGAN_x4plus"] == []
    assert "RealESRGAN_x4plus" in next(r.description for r in rows if r.name == entries[0].name)


def test_cli_fetch_list_all_and_upscale_by_name(served, tmp_path, esr):
    server, data = served
    _write_catalogue(tmp_path / "models.toml", server, data)
    rc, out, err = esr("model", "list", "--all")
    assert rc == 0, err
    line = next(l for l in out.splitlines() if l.startswith("tiny "))
    assert "download" in line and "a tiny test model" in line
    assert any(l.startswith("realesr-general-x4v3 ") and "download" in l for l in out.splitlines())
    # x4plus is embedded (official name declared): listed once, as the embedded file
    assert not any(l.startswith("RealESRGAN_x4plus ") for l in out.splitlines())
    assert "(= RealESRGAN_x4plus, used as is)" in next(l for l in out.splitlines() if l.startswith("realesrgan-x4plus "))
    rc, out, err = esr("model", "fetch", "tiny")
    assert rc == 0, err
    assert str(tmp_path / "cache" / "tiny.pth") in out
    rc, out, err = esr("model", "list", "--all")
    assert "cached" in next(l for l in out.splitlines() if l.startswith("tiny "))
    cached = tmp_path / "cache" / "tiny.pth"
    good = cached.read_bytes()
    cached.write_bytes(good[:-10])  # cut short: every use of the name would fail
    rc, out, err = esr("model", "list", "--all")
    line = next(l for l in out.splitlines() if l.startswith("tiny "))
    assert "damaged" in line and f"{len(good) - 10:,} bytes, not {len(good):,}" in line and "esr model fetch tiny" in line
    cached.write_bytes(good)
    img = tmp_path / "in.png"
    Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(img)
    rc, out, err = esr("upscale", "--model", "tiny", img, tmp_path / "out.png")
    assert rc == 0, err
    assert Image.open(tmp_path / "out.png").size == (16, 16)
    rc, out, err = esr("model", "fetch", "no-such-model")
    assert rc == 1 and "no-such-model: no such model file or embedded model (" in err and "nor a downloadable model" in err
