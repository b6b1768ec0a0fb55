"""`esr upscale` on video files: frames through the tiled path, frame rate, time base and audio kept."""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

av = pytest.importorskip("av", reason="PyAV (esrcli[video]) is not installed")

from esrcli.weights import catalogue  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FRAMES, RATE, W, H, SR = 12, 12, 64, 48, 16000


def _compact_model() -> str:
    """An embedded SRVGGNetCompact model (fast on tiny frames), by whatever name it ships."""
    name = next((e.name for e in catalogue() if e.arch == "SRVGGNetCompact"), None)
    if name is None:
        pytest.skip("no embedded SRVGGNetCompact model in this build")
    return name


def make_clip(path: Path, frames: int = FRAMES) -> list[np.ndarray]:
    """A small H.264 + AAC clip: the example photo panned 3 px per frame, a 440 Hz tone."""
    import cv2

    img = cv2.imread(str(ROOT / "examples" / "budgie_lq.png"))[:, :, ::-1]
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=RATE)
    vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
    vs.options = {"crf": "10"}
    a = out.add_stream("aac", rate=SR)
    a.layout = "mono"
    for i in range(frames):
        crop = np.ascontiguousarray(img[20 : 20 + H, 10 + 3 * i : 10 + 3 * i + W])
        for p in vs.encode(av.VideoFrame.from_ndarray(crop, format="rgb24")):
            out.mux(p)
    t = np.arange(SR * frames // RATE) / SR
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
    for k in range(0, tone.shape[1], 1024):
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, k : k + 1024]), format="flt", layout="mono")
        af.sample_rate, af.pts = SR, k
        for p in a.encode(af):
            out.mux(p)
    for s in (vs, a):
        for p in s.encode(None):
            out.mux(p)
    out.close()
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def _audio_seconds(path: Path) -> float:
    with av.open(str(path)) as c:
        return sum(f.samples for f in c.decode(audio=0)) / SR


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    d = tmp_path_factory.mktemp("video")
    frames = make_clip(d / "clip.mp4")
    return d / "clip.mp4", frames


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_video_is_upscaled_x4_with_its_audio_rate_and_time_base(esr, clip, tmp_path):
    from esrcli import Upscaler

    src, decoded = clip
    model = _compact_model()
    rc, stdout, err = esr("upscale", src, tmp_path / "out", "--model", model, "--precision", "fp32")
    assert rc == 0, err
    dst = tmp_path / "out" / "clip.mp4"
    assert stdout.split() == [str(dst)]
    assert "1 written, 0 skipped, 0 failed" in err
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temporary file left
    with av.open(str(src)) as a, av.open(str(dst)) as b:
        va, vb = a.streams.video[0], b.streams.video[0]
        assert vb.average_rate == va.average_rate == RATE
        assert vb.time_base == va.time_base
        assert (vb.codec_context.width, vb.codec_context.height) == (4 * W, 4 * H)
        assert vb.codec_context.name == "h264" and len(b.streams.audio) == 1
        out_frames = [f for f in b.decode(video=0)]
    assert len(out_frames) == len(decoded) == FRAMES
    assert [f.pts * f.time_base for f in out_frames] == [Fraction(k, RATE) for k in range(FRAMES)]
    assert _audio_seconds(dst) == pytest.approx(_audio_seconds(src), abs=0.03)
    up = Upscaler(model, precision="fp32")  # the image path, frame by frame
    for lq, sr in zip(decoded, out_frames):
        assert _psnr(sr.to_ndarray(format="rgb24"), up.upscale(lq)) >= 32


def test_codec_crf_and_output_file_name(esr, clip, tmp_path):
    src, _ = clip
    model = _compact_model()
    small = tmp_path / "small.mkv"
    rc, stdout, err = esr("upscale", src, small, "--model", model, "--crf", "40", "--scale", "2")
    assert rc == 0, err
    rc, stdout, err = esr("upscale", src, tmp_path / "big.mkv", "--model", model, "--crf", "5", "--scale", "2")
    assert rc == 0, err
    assert small.stat().st_size < (tmp_path / "big.mkv").stat().st_size
    with av.open(str(small)) as c:
        assert c.format.name.startswith("matroska")
        assert (c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height) == (2 * W, 2 * H)
        assert len(c.streams.audio) == 1
    rc, _, err = esr("upscale", src, tmp_path / "v.mp4", "--model", model, "--video-codec", "no-such-codec")
    assert rc == 1 and err.strip() == "esr: error: video codec 'no-such-codec': no such video encoder in this FFmpeg (available: libx264" + err.split("libx264", 1)[1].strip(), err
    assert not (tmp_path / "v.mp4").exists()
    rc, _, err = esr("upscale", src, tmp_path / "frame.png", "--model", model)
    assert rc == 2 and "same kind" in err


def test_bad_videos_are_one_line_errors_and_the_rest_is_written(esr, clip, tmp_path):
    src, _ = clip
    d = tmp_path / "in"
    d.mkdir()
    data = src.read_bytes()
    (d / "a_good.mp4").write_bytes(data)
    (d / "b_trunc.mp4").write_bytes(data[:300])
    (d / "c_text.mkv").write_text("not a video at all")
    (d / "d_empty.webm").write_bytes(b"")
    rc, stdout, err = esr("upscale", d, tmp_path / "out", "--model", _compact_model())
    assert rc == 1
    assert [Path(line).name for line in stdout.split()] == ["a_good.mp4"]
    errors = [line for line in err.splitlines() if line.startswith("esr: error:")]
    assert len(errors) == 3 and all(any(n in e for e in errors) for n in ("b_trunc.mp4", "c_text.mkv", "d_empty.webm")), err
    assert "1 written, 0 skipped, 3 failed" in err and "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_good.mp4"]


def test_ctrl_c_leaves_no_half_written_video(esr, clip, tmp_path, monkeypatch):
    import esrcli.infer.upscale as up_mod

    real = up_mod.upscale_frames
    calls = []

    def interrupt_later(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(up_mod, "upscale_frames", interrupt_later)
    src, _ = clip
    rc, stdout, err = esr("upscale", src, tmp_path / "out", "--model", _compact_model())
    assert rc == 130 and "interrupted" in err and stdout == ""
    assert not (tmp_path / "out").exists()  # no half-written file, and the new folder removed again


def test_missing_pyav_is_a_clear_message_and_images_still_run(esr, clip, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # import av -> ImportError
    src, frames = clip
    PILImage.fromarray(frames[0]).save(tmp_path / "still.png")
    rc, stdout, err = esr("upscale", src, tmp_path / "still.png", tmp_path / "out", "--model", _compact_model())
    assert rc == 1 and "Traceback" not in err
    assert f"esr: error: {src}: video needs PyAV, which is not installed\n  hint: pip install 'esrcli[video]'" in err, err
    assert stdout.split() == [str(tmp_path / "out" / "still.png")]


def test_frames_in_one_pass_equal_frames_one_by_one():
    """upscale_frames (several frames per pass, as on a GPU) gives what upscale_image gives per frame."""
    import torch

    from esrcli.archs import SRVGGNetCompact
    from esrcli.data.imageio import Image
    from esrcli.infer import UpscaleOptions, upscale_frames, upscale_image
    from esrcli.weights import ModelInfo

    torch.manual_seed(0)
    q = dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, scale=4, act_type="prelu")
    net, info = SRVGGNetCompact(**q).eval(), ModelInfo("SRVGGNetCompact", q, 4)
    frames = np.random.default_rng(0).random((3, 20, 28, 3)).astype(np.float32)
    for opts in (UpscaleOptions(tile=16, tile_overlap=4, batch=2), UpscaleOptions(outscale=2.5)):
        together = upscale_frames(frames, net, info, opts)
        for k in range(3):
            alone = upscale_image(Image(frames[k]), net, info, opts).color
            np.testing.assert_allclose(together[k], alone, atol=1e-5)


def test_audio_the_container_cannot_hold_is_re_encoded(esr, tmp_path):
    """PCM audio into WebM (VP9 + Opus only): re-encoded to Opus with a warning, duration kept."""
    src = tmp_path / "pcm.mkv"
    out = av.open(str(src), "w")
    vs = out.add_stream("libx264", rate=10)
    vs.width, vs.height, vs.pix_fmt = 32, 24, "yuv420p"
    a = out.add_stream("pcm_s16le", rate=22050)
    a.layout = "mono"
    for i in range(4):
        fr = (np.random.default_rng(i).random((24, 32, 3)) * 255).astype(np.uint8)
        for p in vs.encode(av.VideoFrame.from_ndarray(fr, format="rgb24")):
            out.mux(p)
    tone = (np.sin(np.arange(22050 * 4 // 10) / 5) * 8000).astype(np.int16)[None]
    for k in range(0, tone.shape[1], 1000):
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, k : k + 1000]), format="s16", layout="mono")
        af.sample_rate, af.pts = 22050, k
        for p in a.encode(af):
            out.mux(p)
    for st in (vs, a):
        for p in st.encode(None):
            out.mux(p)
    out.close()
    dst = tmp_path / "out.webm"
    rc, _, err = esr("upscale", src, dst, "--model", _compact_model(), "--video-codec", "libvpx-vp9", "--crf", "40")
    assert rc == 0, err
    assert "pcm_s16le) cannot go into webm: re-encoded to Opus" in err
    with av.open(str(dst)) as c:
        assert [(s.type, s.codec_context.name) for s in c.streams] == [("video", "vp9"), ("audio", "opus")]
        seconds = sum(f.samples for f in c.decode(audio=0)) / 48000
        assert sum(1 for _ in av.open(str(dst)).decode(video=0)) == 4
    assert seconds == pytest.approx(0.4, abs=0.03)
    # MP4 (the default for a folder output): FFmpeg lists PCM as allowed, but its muxer refuses it
    rc, _, err = esr("upscale", src, tmp_path / "out", "--model", _compact_model())
    assert rc == 0, err
    assert "pcm_s16le) cannot go into mp4: re-encoded to AAC" in err
    with av.open(str(tmp_path / "out" / "pcm.mp4")) as c:
        assert [(s.type, s.codec_context.name) for s in c.streams] == [("video", "h264"), ("audio", "aac")]
        seconds = sum(f.samples for f in c.decode(audio=0)) / 22050
    assert seconds == pytest.approx(0.4 + 2048 / 22050, abs=0.03)  # AAC adds its priming and last-frame padding


def _clip_with_subtitles(tmp_path: Path) -> Path:
    """A 4-frame H.264 MKV with an SRT subtitle stream ("hello" at 0 ms, "world" at 200 ms)."""
    srt_path = tmp_path / "subs.srt"
    srt_path.write_text("1\n00:00:00,000 --> 00:00:00,150\nhello\n\n2\n00:00:00,200 --> 00:00:00,350\nworld\n\n")
    src = tmp_path / "subs.mkv"
    with av.open(str(srt_path)) as srt:
        out = av.open(str(src), "w")
        vs = out.add_stream("libx264", rate=10)
        vs.width, vs.height, vs.pix_fmt = 32, 24, "yuv420p"
        ss = out.add_stream_from_template(srt.streams[0])
        packets = [p for p in srt.demux(srt.streams[0]) if p.size]
        for i in range(4):
            fr = (np.random.default_rng(i).random((24, 32, 3)) * 255).astype(np.uint8)
            for p in vs.encode(av.VideoFrame.from_ndarray(fr, format="rgb24")):
                out.mux(p)
        for p in packets:
            p.stream = ss
            out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
        out.close()
    return src


def _subtitles(path: Path) -> list[tuple[bytes, int]]:
    with av.open(str(path)) as c:
        if not c.streams.subtitles:
            return []
        s = c.streams.subtitles[0]
        return [(bytes(p), int(p.pts * p.time_base * 1000)) for p in c.demux(s) if p.size]


def test_subtitle_streams_are_copied_or_dropped_with_a_message(esr, tmp_path):
    """SRT subtitles: copied packet for packet (text and times) into MKV; MP4 cannot hold SRT."""
    src = _clip_with_subtitles(tmp_path)
    assert _subtitles(src) == [(b"hello", 0), (b"world", 200)]
    rc, _, err = esr("upscale", src, tmp_path / "out.mkv", "--model", _compact_model())
    assert rc == 0, err
    with av.open(str(tmp_path / "out.mkv")) as c:
        assert [s.type for s in c.streams] == ["video", "subtitle"]
        assert (c.streams.video[0].width, c.streams.video[0].height) == (128, 96)
    assert _subtitles(tmp_path / "out.mkv") == [(b"hello", 0), (b"world", 200)]

    rc, _, err = esr("upscale", src, tmp_path / "out.mp4", "--model", _compact_model())
    assert rc == 0, err
    assert "subtitle stream 1 (srt) cannot go into mp4: dropped (an .mkv output keeps it)" in err
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert [s.type for s in c.streams] == ["video"]


def test_a_video_cut_short_is_reported_and_its_frames_are_kept(esr, tmp_path):
    whole = tmp_path / "whole.mkv"
    make_clip(whole, frames=30)  # Matroska: the duration comes from the track's DURATION tag
    data = whole.read_bytes()
    (tmp_path / "in").mkdir()
    cut = tmp_path / "in" / "cut.mkv"
    cut.write_bytes(data[: len(data) * 55 // 100])
    rc, stdout, err = esr("upscale", cut, tmp_path / "out", "--model", _compact_model())
    assert rc == 1 and stdout == ""
    dst = tmp_path / "out" / "cut.mp4"
    with av.open(str(dst)) as c:
        kept = sum(1 for _ in c.decode(video=0))
    assert 0 < kept < 27
    assert "cut.mkv: the video ended after " in err and f" s of its 2.5 s ({kept} frames; truncated or corrupt); {dst} holds the {kept} frames" in err
    assert "0 written, 0 skipped, 1 failed" in err
    rc, _, err = esr("upscale", whole, tmp_path / "out2", "--model", _compact_model())
    assert rc == 0 and "1 written" in err  # the whole file: no complaint


def test_webm_gets_vp9_by_default_and_refuses_h264_before_the_model_loads(esr, clip, tmp_path, monkeypatch):
    src, decoded = clip
    rc, _, err = esr("upscale", src, tmp_path / "v.webm", "--model", _compact_model(), "--scale", "1")
    assert rc == 0, err
    with av.open(str(tmp_path / "v.webm")) as c:
        assert c.streams.video[0].codec_context.name == "vp9"
        assert sum(1 for _ in c.decode(video=0)) == len(decoded)
    import esrcli.infer.model

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(esrcli.infer.model, "load_upscale_model", no_model)
    rc, _, err = esr("upscale", src, tmp_path / "w.webm", "--model", _compact_model(), "--video-codec", "libx264")
    assert rc == 1 and "w.webm: a .webm video holds VP8, VP9 or AV1, not libx264" in err and "libvpx-vp9" in err
    assert not (tmp_path / "w.webm").exists()


def test_webm_takes_vp8_vp9_and_av1_encoders_by_what_they_write():
    from esrcli.errors import ImageError
    from esrcli.infer.video import video_codec

    assert video_codec("a.webm") == "libvpx-vp9" and video_codec("a.mp4") == "libx264" and video_codec("a.mkv", "libx265") == "libx265"
    if "av1_nvenc" in av.codecs_available:  # a hardware encoder: named by its output format, not its name
        assert video_codec("a.webm", "av1_nvenc") == "av1_nvenc"
    with pytest.raises(ImageError, match="holds VP8, VP9 or AV1, not libx265"):
        video_codec("a.webm", "libx265")


def test_a_video_over_the_pixel_limit_is_refused_before_any_frame(esr, clip, tmp_path, monkeypatch):
    import esrcli.infer.upscale

    def no_frames(*args, **kwargs):
        raise AssertionError("a frame went through the network")

    monkeypatch.setattr(esrcli.infer.upscale, "upscale_frames", no_frames)
    src, _ = clip
    rc, _, err = esr("upscale", src, tmp_path / "out", "--model", _compact_model(), "--scale", "1000")
    assert rc == 1 and "each frame would be 64000x48000 pixels, over the limit" in err and "smaller --scale" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def _shifted_copy(src: Path, dst: Path, frames: int) -> None:
    """A stream copy of ``src``'s video with every timestamp moved by ``frames`` frames."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as o:
        s = inp.streams.video[0]
        step = int(round(1 / (RATE * s.time_base)))
        os_ = o.add_stream_from_template(s)
        for pkt in inp.demux(s):
            if pkt.dts is None:
                continue
            pkt.pts += frames * step
            pkt.dts += frames * step
            pkt.stream = os_
            o.mux(pkt)


def test_valid_videos_whose_frame_counts_mislead_are_not_called_cut_short(esr, tmp_path):
    """Variable frame rate (an average rate from the first seconds) and an MP4 edit list (a
    stream copy cut with -ss: the header counts samples the player skips) are whole videos."""
    from fractions import Fraction

    rng = np.random.default_rng(0)
    vfr = tmp_path / "in" / "vfr.mkv"
    vfr.parent.mkdir()
    out = av.open(str(vfr), "w")
    vs = out.add_stream("libx264", rate=30)
    vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
    vs.time_base = vs.codec_context.time_base = Fraction(1, 1000)
    for t in [round(i * 1000 / 30) for i in range(60)] + [2000 + 1000 * k for k in range(8)]:  # 2 s at 30 fps, then 1 fps
        f = av.VideoFrame.from_ndarray((rng.random((H, W, 3)) * 255).astype(np.uint8), format="rgb24")
        f.pts, f.time_base = t, Fraction(1, 1000)
        for p in vs.encode(f):
            out.mux(p)
    for p in vs.encode(None):
        out.mux(p)
    out.close()
    src = tmp_path / "src.mp4"
    out = av.open(str(src), "w")
    vs = out.add_stream("libx264", rate=RATE)
    vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
    vs.options = {"g": "100", "bf": "0"}  # one GOP: a copy cut cannot start at a keyframe
    for _ in range(40):
        for p in vs.encode(av.VideoFrame.from_ndarray((rng.random((H, W, 3)) * 255).astype(np.uint8), format="rgb24")):
            out.mux(p)
    for p in vs.encode(None):
        out.mux(p)
    out.close()
    _shifted_copy(src, tmp_path / "in" / "cut.mp4", -30)  # what `ffmpeg -ss 2.5 -c copy` writes: an edit list skips 30 frames
    with av.open(str(tmp_path / "in" / "cut.mp4")) as c:
        assert c.streams.video[0].frames == 40 and sum(1 for _ in c.decode(video=0)) == 10
    rc, stdout, err = esr("upscale", tmp_path / "in", tmp_path / "out", "--model", _compact_model(), "--scale", "1")
    assert rc == 0 and "2 written, 0 skipped, 0 failed" in err, err


def test_a_held_last_frame_and_a_late_start_are_whole_videos(esr, tmp_path):
    """A still frame held for seconds at the end counts for its whole duration, and a Matroska
    track that starts late is judged against its DURATION tag (an end time)."""
    from fractions import Fraction

    rng = np.random.default_rng(1)
    (tmp_path / "in").mkdir()

    def frame():
        return av.VideoFrame.from_ndarray((rng.random((H, W, 3)) * 255).astype(np.uint8), format="rgb24")

    for ext in ("mp4", "mkv"):
        out = av.open(str(tmp_path / "in" / f"hold_{ext}.{ext}"), "w")
        vs = out.add_stream("libx264", rate=30)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        vs.options = {"bf": "0"}
        vs.time_base = vs.codec_context.time_base = Fraction(1, 1000)
        packets = []
        for t in [round(i * 1000 / 30) for i in range(30)] + [1000]:  # 1 s at 30 fps, then a still held for 8 s
            f = frame()
            f.pts, f.time_base = t, Fraction(1, 1000)
            packets += list(vs.encode(f))
        packets += list(vs.encode(None))
        for p in packets:
            p.duration = 8000 if p.pts == 1000 else 33
            out.mux(p)
        out.close()
    src = tmp_path / "src.mp4"
    make_clip(src, frames=24)
    _shifted_copy(src, tmp_path / "in" / "late.mkv", 24)  # the pictures start at 2 s
    rc, _, err = esr("upscale", tmp_path / "in", tmp_path / "out", "--model", _compact_model(), "--scale", "1")
    assert rc == 0 and "3 written, 0 skipped, 0 failed" in err, err
