"""esrcli.data.imageio: depth, gray, alpha, orientation, ICC, bad files, atomic writes."""

from __future__ import annotations

import functools
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from PIL import ImageCms, ImageOps

from esrcli.data.imageio import Image, atomic_write_bytes, from_tensor, list_images, read_image, to_tensor, write_image
from esrcli.errors import ImageError


def _rng_image(h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, c), dtype=np.float32)


@functools.lru_cache(maxsize=None)
def _srgb_icc() -> bytes:
    # Cached: the profile's header holds its creation time, so two calls a second apart differ.
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _gray_icc() -> bytes:
    # A minimal profile whose header says GRAY (bytes 16..20) is enough for our checks.
    icc = bytearray(_srgb_icc())
    icc[16:20] = b"GRAY"
    return bytes(icc)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("ext", [".png", ".tif"])
@pytest.mark.parametrize("depth", [8, 16])
@pytest.mark.parametrize("layout", ["rgb", "rgba", "gray", "gray_alpha"])
def test_lossless_round_trip_keeps_depth_and_layout(tmp_path, ext, depth, layout):
    c = 1 if layout.startswith("gray") else 3
    maxv = 65535 if depth == 16 else 255
    color = np.round(_rng_image(9, 7, c) * maxv) / maxv
    alpha = np.round(_rng_image(9, 7, 1, seed=1)[:, :, 0] * maxv) / maxv if "a" in layout.replace("gray", "") else None
    img = Image(color.astype(np.float32), None if alpha is None else alpha.astype(np.float32), depth)
    path = tmp_path / f"x{ext}"
    write_image(path, img)
    back = read_image(path)
    assert back.bit_depth == depth
    assert back.color.shape == (9, 7, c if not (ext == ".tif" and layout == "gray_alpha") else 3)
    assert (back.alpha is None) == (alpha is None)
    np.testing.assert_allclose(back.color[:, :, :1] if layout == "gray_alpha" else back.color, color, atol=0.5 / maxv)
    if alpha is not None:
        np.testing.assert_allclose(back.alpha, alpha, atol=0.5 / maxv)


def test_gray_alpha_png_is_written_as_gray_alpha(tmp_path):
    for depth in (8, 16):
        img = Image(_rng_image(5, 6, 1), _rng_image(5, 6, 1, 2)[:, :, 0], depth)
        path = tmp_path / f"la{depth}.png"
        write_image(path, img)
        data = path.read_bytes()
        assert data[25] == 4 and data[24] == depth  # IHDR colour type 4 (gray+alpha), bit depth
        back = read_image(path)
        assert back.is_gray and back.alpha is not None and back.bit_depth == depth
    with PILImage.open(tmp_path / "la8.png") as im:
        assert im.mode == "LA"


def test_16bit_values_are_not_quantised_to_8_bits(tmp_path):
    ramp = np.linspace(0, 1, 4000, dtype=np.float32)[None, :, None].repeat(2, axis=0)
    write_image(tmp_path / "r.png", Image(ramp, None, 16))
    back = read_image(tmp_path / "r.png")
    assert len(np.unique(back.color)) > 3000
    raw = cv2.imread(str(tmp_path / "r.png"), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16


def test_pillow_modes_read_as_expected(tmp_path):
    a = (np.arange(48, dtype=np.uint8).reshape(4, 4, 3) * 5)
    PILImage.fromarray(a).save(tmp_path / "rgb.png")
    PILImage.fromarray(a[:, :, 0]).save(tmp_path / "l.png")
    PILImage.fromarray(np.dstack([a[:, :, 0], a[:, :, 1]]), "LA").save(tmp_path / "la.png")
    pal = PILImage.fromarray(a).convert("P")
    pal.save(tmp_path / "p.png")
    rgb = read_image(tmp_path / "rgb.png")
    np.testing.assert_array_equal(np.rint(rgb.color * 255).astype(np.uint8), a)  # RGB order, not BGR
    assert read_image(tmp_path / "l.png").is_gray
    la = read_image(tmp_path / "la.png")
    assert la.is_gray and la.alpha is not None
    np.testing.assert_array_equal(np.rint(la.alpha * 255), a[:, :, 1])
    assert read_image(tmp_path / "p.png").color.shape == (4, 4, 3)
    assert read_image(tmp_path / "rgb.png").frames == 1


def test_multi_frame_files_decode_the_first_frame_and_count_them(tmp_path):
    rng = np.random.default_rng(0)
    frames = [PILImage.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)) for _ in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "pages.tif", save_all=True, append_images=frames[1:2])
    img = read_image(tmp_path / "anim.gif")
    assert img.frames == 3 and img.color.shape == (6, 5, 3)
    with PILImage.open(tmp_path / "anim.gif") as im:
        first = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(np.rint(img.color * 255).astype(np.uint8), first)
    tif = read_image(tmp_path / "pages.tif")
    assert tif.frames == 2
    np.testing.assert_array_equal(np.rint(tif.color * 255).astype(np.uint8), np.asarray(frames[0]))


@pytest.mark.parametrize("ext", [".png", ".tif"])  # OpenCV rotates TIFFs itself: not twice
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pillow(tmp_path, orientation, ext):
    a = (np.random.default_rng(3).random((5, 8, 3)) * 255).astype(np.uint8)
    im = PILImage.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{ext}"
    im.save(path, exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(PILImage.open(path)).convert("RGB"))
    got = read_image(path)
    np.testing.assert_array_equal(np.rint(got.color * 255).astype(np.uint8), expected)
    if got.exif is not None:
        e = PILImage.Exif()
        e.load(got.exif)
        assert e.get(0x0112, 1) == 1


# ---------------------------------------------------------------- ICC profiles


def _icc_of(path: Path) -> bytes | None:
    with PILImage.open(path) as im:
        return im.info.get("icc_profile")


@pytest.mark.parametrize(
    "ext,depth,alpha",
    [(".png", 8, False), (".png", 16, True), (".png", 16, False), (".jpg", 8, False), (".webp", 8, True), (".tif", 8, False)],
)
def test_icc_profile_is_kept(tmp_path, ext, depth, alpha):
    icc = _srgb_icc()
    img = Image(_rng_image(6, 5, 3), _rng_image(6, 5, 1)[:, :, 0] if alpha else None, depth, icc)
    write_image(tmp_path / f"i{ext}", img)
    assert _icc_of(tmp_path / f"i{ext}") == icc
    back = read_image(tmp_path / f"i{ext}")
    assert back.icc_profile == icc
    if ext == ".png":  # our iCCP insertion leaves pixels intact
        np.testing.assert_allclose(back.color, img.color, atol=0.5 / (65535 if depth == 16 else 255))


def test_icc_jpeg_written_without_second_lossy_pass(tmp_path):
    img = Image(_rng_image(16, 16, 3), None, 8)
    write_image(tmp_path / "a.jpg", img)
    write_image(tmp_path / "b.jpg", Image(img.color, None, 8, _srgb_icc()))
    np.testing.assert_array_equal(read_image(tmp_path / "a.jpg").color, read_image(tmp_path / "b.jpg").color)


def test_gray_profile_not_attached_to_rgb_output(tmp_path):
    img = Image(_rng_image(6, 5, 1), None, 8, _gray_icc())
    write_image(tmp_path / "g.png", img)
    assert _icc_of(tmp_path / "g.png") == _gray_icc()
    write_image(tmp_path / "g.webp", img)  # WebP has no gray: stored as RGB, profile dropped
    assert _icc_of(tmp_path / "g.webp") is None


# ---------------------------------------------------------------- bad inputs


def _bomb_png(w: int, h: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _good_png_bytes() -> bytes:
    ok, buf = cv2.imencode(".png", (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
    return buf.tobytes()


def _good_jpg_bytes() -> bytes:
    ok, buf = cv2.imencode(".jpg", (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
    return buf.tobytes()


@pytest.mark.parametrize(
    "name,content,needle",
    [
        ("empty.png", b"", "empty"),
        ("text.png", b"hello, I am not an image\n" * 10, "not a readable image"),
        ("trunc.png", "png-half", "truncated PNG (the file ends inside its IDAT chunk)"),
        ("noend.png", "png-no-iend", "truncated PNG (no IEND chunk)"),
        ("crc.png", "png-flipped", "corrupt PNG (its IDAT chunk fails its CRC check)"),
        ("trunc.jpg", "jpg-half", "not a readable image"),
        ("bomb.png", "bomb", "too large"),
    ],
)
def test_bad_files_raise_image_error_naming_the_file(tmp_path, name, content, needle, capfd):
    if content == "png-half":
        content = _good_png_bytes()[: len(_good_png_bytes()) // 2]
    elif content == "png-no-iend":
        content = _good_png_bytes()[:-12]
    elif content == "png-flipped":
        good = bytearray(_good_png_bytes())
        good[-30] ^= 0xFF  # inside the last IDAT chunk's data
        content = bytes(good)
    elif content == "jpg-half":
        content = _good_jpg_bytes()[: len(_good_jpg_bytes()) // 2]
    elif content == "bomb":
        content = _bomb_png(100_000, 100_000)
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError) as info:
        read_image(path)
    assert str(info.value).startswith(str(path)) and needle in str(info.value)
    assert "\n" not in str(info.value)
    err = capfd.readouterr().err
    assert "WARN" not in err and "libpng" not in err  # neither OpenCV nor libpng prints its own line


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="is a folder"):
        read_image(tmp_path)


# ---------------------------------------------------------------- writing


def test_write_into_unwritable_place_names_the_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ImageError, match=str(blocker)):
        write_image(blocker / "out.png", Image(_rng_image(4, 4, 3)))
    with pytest.raises(ImageError, match="does not exist"):
        write_image(tmp_path / "missing" / "out.png", Image(_rng_image(4, 4, 3)))
    with pytest.raises(ImageError, match="unknown output format"):
        write_image(tmp_path / "out.gif", Image(_rng_image(4, 4, 3)))


def test_atomic_write_leaves_nothing_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")

    def boom(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        write_image(target, Image(_rng_image(4, 4, 3)))
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_atomic_write_bytes_gives_normal_permissions(tmp_path):
    atomic_write_bytes(tmp_path / "f.bin", b"abc")
    mode = (tmp_path / "f.bin").stat().st_mode & 0o777
    mask = os.umask(0)
    os.umask(mask)
    assert mode == 0o666 & ~mask


def test_jpeg_drops_alpha_and_16bit(tmp_path):
    img = Image(_rng_image(8, 8, 3), _rng_image(8, 8, 1)[:, :, 0], 16)
    write_image(tmp_path / "a.jpg", img)
    back = read_image(tmp_path / "a.jpg")
    assert back.alpha is None and back.bit_depth == 8


# ---------------------------------------------------------------- helpers


def test_list_images_sorted_recursive_and_hidden_skipped(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.png", "a.jpg", ".a.png.123.part", "notes.txt", "sub/c.webp"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_images([tmp_path])] == ["a.jpg", "b.png"]
    assert [p.name for p in list_images([tmp_path], recursive=True)] == ["a.jpg", "b.png", "c.webp"]
    assert list_images([tmp_path / "notes.txt"]) == [tmp_path / "notes.txt"]  # explicit files are kept
    with pytest.raises(ImageError, match="no such file or folder"):
        list_images([tmp_path / "zzz"])
    # a file reached twice is listed once, where first met
    assert list_images([tmp_path / "b.png", tmp_path, tmp_path / "sub" / ".." / "a.jpg"]) == [tmp_path / "b.png", tmp_path / "a.jpg"]


def test_tensor_helpers_round_trip_and_do_not_modify_input():
    a = _rng_image(3, 4, 3)
    t = to_tensor(a)
    assert t.shape == (1, 3, 3, 4) and t.dtype == torch.float32
    np.testing.assert_array_equal(from_tensor(t), a)
    big = torch.full((1, 1, 2, 2), 2.0)
    assert from_tensor(big).max() == 1.0 and big.max().item() == 2.0
