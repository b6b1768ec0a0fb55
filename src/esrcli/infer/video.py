"""Video files: decode, upscale every frame through the tiled path, encode, with PyAV.

PyAV (the optional extra ``esrcli[video]``; FFmpeg comes inside its wheels) decodes the
first video stream frame by frame; frames go through the network in small groups
(:func:`esrcli.infer.upscale.upscale_frames`: the same tiled pass as images), are encoded
straight away (H.264 at CRF 17 by default) and muxed, so memory stays constant whatever the
length. Each frame keeps its timestamp and the stream its frame rate and time base (a
container may refine the time base: MP4 stores video in a timescale of at least 10,000).
Audio and subtitle streams are copied packet for packet (no re-encoding); an audio codec
that the output container cannot hold is re-encoded (to AAC; to Opus in WebM), a subtitle
stream it cannot hold is dropped, each with a notice. The output is written under a hidden temporary name
beside the target and renamed onto it at the end: an interrupted or failed run leaves no
half-written video.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from esrcli.data.imageio import MAX_PIXELS
from esrcli.errors import ConfigError, EsrError, ImageError
from esrcli.infer.plan import VIDEO_EXTENSIONS, is_video

if TYPE_CHECKING:
    from esrcli.infer.model import UpscaleModel
    from esrcli.infer.upscale import UpscaleOptions

__all__ = ["VIDEO_EXTENSIONS", "VideoError", "VideoOptions", "VideoProgress", "is_video", "upscale_video", "import_av", "check_encoder", "video_codec"]

#: A video whose decoded frames end before this share of the duration its header announces
#: (less a frame) was cut short: its output is written but the input is reported as failed.
SHORT_VIDEO = 0.9
#: Output containers by file extension.
_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
#: Encoders that take a constant-rate-factor quality (``crf``), and extra options they need.
_CRF_CODECS: dict[str, dict[str, str]] = {
    "libx264": {},
    "libx265": {"x265-params": "log-level=error"},
    "libvpx-vp9": {"b:v": "0"},
    "libsvtav1": {},
    "libaom-av1": {"b:v": "0"},
}


class VideoError(ImageError):
    """A video that cannot be read or written (corrupt, unsupported, no video stream)."""


@dataclass(frozen=True)
class VideoOptions:
    """How videos are encoded.

    Attributes:
        codec: FFmpeg encoder name, e.g. ``libx264``, ``libx265``, ``libvpx-vp9``,
            ``libsvtav1``; ``None`` (default): the container's (:func:`video_codec`:
            ``libvpx-vp9`` in ``.webm``, else ``libx264``).
        crf: constant rate factor (lower = better and larger; x264: 0..51, 17 is visually
            lossless for most content). Ignored by encoders without one.
        preset: encoder speed preset (x264/x265), e.g. ``medium``; ``None`` = the encoder's.
        frames_per_pass: frames that go through the network together; 0 = auto (4 on a
            GPU when a frame fits in one tile, else 1: on a CPU a larger batch does not pay).

    Raises:
        ConfigError: an out-of-range value (message names the field).
    """

    codec: str | None = None
    crf: int = 17
    preset: str | None = None
    frames_per_pass: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.crf <= 63:
            raise ConfigError(f"crf: must be in 0..63, got {self.crf}")
        if self.frames_per_pass < 0:
            raise ConfigError(f"frames_per_pass: must be >= 0, got {self.frames_per_pass}")


@dataclass(frozen=True)
class VideoProgress:
    """Frames done so far, of ``total`` (``None`` when the container does not say);
    ``fps`` frames per second so far; ``eta`` seconds left (``None`` without a total)."""

    done: int
    total: int | None
    fps: float
    eta: float | None


def import_av() -> Any:
    """The ``av`` module (PyAV).

    Raises:
        EsrError: PyAV is not installed (names the extra to install).
    """
    try:
        import av
    except ImportError:
        raise EsrError("video needs PyAV, which is not installed", "pip install 'esrcli[video]' (or: pip install av)") from None
    return av


def check_encoder(codec: str) -> None:
    """Check that FFmpeg (in PyAV) has the video encoder ``codec``.

    Raises:
        EsrError: PyAV is not installed.
        VideoError: no such video encoder (lists a few that are there).
    """
    av = import_av()
    try:
        c = av.Codec(codec, "w")
    except (av.FFmpegError, ValueError, KeyError):
        c = None
    if c is None or c.type != "video":
        have = [n for n in ("libx264", "libx265", "libvpx-vp9", "libsvtav1", "libaom-av1", "mpeg4") if n in av.codecs_available]
        raise VideoError(f"video codec {codec!r}: no such video encoder in this FFmpeg (available: {', '.join(have)}, ...)")


#: The encoders a WebM file can hold (VP8, VP9, AV1); other containers take the common ones.
_WEBM_CODECS = ("libvpx", "libvpx-vp9", "libaom-av1", "libsvtav1", "librav1e")


def _codec_id(encoder: str) -> str | None:
    """The format an FFmpeg encoder writes (``av1_nvenc`` -> ``av1``), or ``None`` when unknown."""
    try:
        import av

        return av.Codec(encoder, "w").canonical_name
    except Exception:  # noqa: BLE001 - no PyAV, or no such encoder: check_encoder says so
        return None


def video_codec(dst: str | os.PathLike[str], codec: str | None = None) -> str:
    """The encoder for an output video: ``codec``, or by default the container's
    (``libvpx-vp9`` for ``.webm``, ``libx264`` for the others).

    Raises:
        VideoError: ``codec`` cannot go into that container (a ``.webm`` takes VP8, VP9 and
            AV1 only; names the file).
    """
    webm = Path(dst).suffix.lower() == ".webm"
    if codec is None:
        return "libvpx-vp9" if webm else "libx264"
    if webm and codec not in _WEBM_CODECS and _codec_id(codec) not in ("vp8", "vp9", "av1"):
        raise VideoError(f"{dst}: a .webm video holds VP8, VP9 or AV1, not {codec}", "pass --video-codec libvpx-vp9, or name an .mp4 or .mkv output")
    return codec


def _first_line(exc: BaseException) -> str:
    reason = getattr(exc, "strerror", None)  # FFmpegError: the reason without errno and file name
    if isinstance(reason, str) and reason:
        return reason
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _is_cover(stream: Any) -> bool:
    """Whether a video stream is an attached picture (cover art), not moving pictures."""
    try:
        return bool(stream.disposition & stream.disposition.__class__.attached_pic)
    except (AttributeError, TypeError, ValueError):
        return False


def _even(n: int) -> int:
    """4:2:0 chroma needs even sizes: round down to even, at least 2."""
    return max(2, n - n % 2)


def _announced_span(stream: Any) -> tuple[float, float] | None:
    """``(start, end)`` in seconds of the pictures a video stream announces: its own start
    and duration (MP4/MOV: after the edit list), else Matroska's per-track ``DURATION`` tag
    (an end time, from 0), else ``None``."""
    if stream.duration is not None and stream.time_base:
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        return start, start + float(stream.duration * stream.time_base)
    tag = (stream.metadata or {}).get("DURATION") or (stream.metadata or {}).get("duration")
    try:
        h, m, sec = str(tag).split(":")
        seconds = int(h) * 3600 + int(m) * 60 + float(sec)
    except (TypeError, ValueError):
        return None
    return (0.0, seconds) if seconds > 0 else None


def _frame_total(stream: Any, rate: Fraction) -> int | None:
    """About how many frames a video stream holds, for progress and ETA only: its frame
    count, else its announced length times the average rate, else ``None``."""
    if stream.frames:
        return int(stream.frames)
    span = _announced_span(stream)
    return max(1, round((span[1] - span[0]) * float(rate))) if span and span[1] > span[0] else None


def _auto_frames_per_pass(model: UpscaleModel, options: UpscaleOptions, size: tuple[int, int]) -> int:
    if model.device.type == "cpu":
        return 1
    fits = options.tile == 0 or max(size) <= options.tile
    return 4 if fits else 1


def upscale_video(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    model: UpscaleModel,
    options: UpscaleOptions | None = None,
    video: VideoOptions = VideoOptions(),
    notify: Callable[[str], None] | None = None,
) -> Iterator[VideoProgress]:
    """Upscale every frame of the video ``src`` into ``dst``; yields progress after each group
    of frames.

    The output container follows ``dst``'s extension (``.mp4``, ``.m4v``, ``.mov``,
    ``.mkv``, ``.webm``); its video is 8-bit 4:2:0 (``yuv420p``) at the upscaled size,
    rounded down to even. Iterate to the end to get the file; closing the iterator early
    (or an exception, e.g. ``KeyboardInterrupt``) removes the unfinished output.

    Args:
        src: the input video.
        dst: the output file (written atomically: hidden temporary name, then renamed).
        model: the loaded model (:func:`esrcli.infer.load_upscale_model`).
        options: :class:`esrcli.infer.UpscaleOptions` (``outscale``, ``tile``,
            ``tile_overlap``, ``batch``); default: the batch engine's tile.
        video: :class:`VideoOptions` (codec, CRF, preset).
        notify: receives one-line notices (a stream dropped or re-encoded, out-of-memory
            tile halving).

    Yields:
        :class:`VideoProgress`.

    Raises:
        EsrError: PyAV is not installed.
        VideoError: ``src`` is not a readable video (corrupt, truncated, unsupported, no
            video stream), ``dst`` has an unknown extension, the encoder is unknown or
            refuses the settings, or writing fails (the message names the file).
    """
    from esrcli.infer.upscale import UpscaleOptions, output_size, size_text, upscale_frames

    av = import_av()
    src, dst = Path(src), Path(dst)
    options = options if options is not None else UpscaleOptions(tile=512)
    say = notify or (lambda message: None)
    fmt = _FORMATS.get(dst.suffix.lower())
    if fmt is None:
        raise VideoError(f"{dst}: unknown video output extension (use one of {', '.join(_FORMATS)})")
    try:
        if src.stat().st_size == 0:
            raise VideoError(f"{src}: empty file (0 bytes)")
    except OSError as exc:
        raise VideoError(f"{src}: cannot read ({exc.strerror or exc})") from None
    try:
        inp = av.open(str(src), "r", metadata_errors="ignore")
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise VideoError(f"{src}: not a readable video ({_first_line(exc)})") from None
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.part")
    out = None
    try:
        # The first video stream that is not a cover picture (MP4/MKV may carry one as a stream).
        videos = [s for s in inp.streams.video if not _is_cover(s)]
        if not videos:
            raise VideoError(f"{src}: no video stream")
        vs = videos[0]
        vs.thread_type = "AUTO"
        rate = vs.average_rate or vs.guessed_rate or vs.base_rate
        h, w = vs.codec_context.height, vs.codec_context.width
        if not rate or not h or not w:
            raise VideoError(f"{src}: video stream without a frame size or frame rate")
        scale = int(getattr(model.info, "scale", 4))
        out_h, out_w = output_size(h, w, scale, options.outscale)
        size = (_even(out_h), _even(out_w))
        if out_h * out_w > MAX_PIXELS:  # before any frame goes through the network
            raise VideoError(f"{src}: each frame would be {size_text(out_w, out_h)} pixels, over the limit of {MAX_PIXELS:,}", "pass a smaller --scale")
        total = _frame_total(vs, Fraction(rate))
        announced = _announced_span(vs)
        frames_end = None  # where the decoded pictures end, in seconds (each frame's time plus its duration)
        per_pass = video.frames_per_pass or _auto_frames_per_pass(model, options, (h, w))
        try:
            out = av.open(str(tmp), "w", format=fmt)
        except (av.FFmpegError, OSError) as exc:
            raise VideoError(f"{dst}: cannot write ({_first_line(exc)})") from None
        codec = video_codec(dst, video.codec)
        try:
            ovs = out.add_stream(codec, rate=rate)
        except (av.FFmpegError, ValueError, KeyError) as exc:
            raise VideoError(f"{dst}: video codec {codec!r} is not available ({_first_line(exc)})") from None
        tb = vs.time_base or 1 / Fraction(rate)  # frames keep their timestamps in it
        ovs.width, ovs.height = size[1], size[0]
        ovs.pix_fmt = "yuv420p"
        ovs.time_base = tb
        ovs.codec_context.time_base = tb
        opts = dict(_CRF_CODECS.get(codec, {}))
        if codec in _CRF_CODECS:
            opts["crf"] = str(video.crf)
        if video.preset:
            opts["preset"] = video.preset
        ovs.options = opts
        copies: dict[int, Any] = {}
        recode: dict[int, Any] = {}
        supported = out.supported_codecs
        for s in inp.streams:
            if s.type not in ("audio", "subtitle"):
                continue
            name = s.codec_context.name if s.codec_context is not None else "unknown"
            # FFmpeg lists PCM among MP4's codecs, but its muxer refuses it when writing the header
            if name in supported and not (fmt == "mp4" and name.startswith("pcm_")):
                try:
                    copies[s.index] = out.add_stream_from_template(s)
                    continue
                except (av.FFmpegError, ValueError) as exc:
                    if s.type != "audio":
                        say(f"{s.type} stream {s.index} ({name}) cannot be copied ({_first_line(exc)}): dropped")
                        continue
            if s.type == "audio":
                acodec = "libopus" if fmt == "webm" else "aac"
                rate_in = s.codec_context.sample_rate or 48000
                a = out.add_stream(acodec, rate=48000 if acodec == "libopus" else rate_in)
                recode[s.index] = a
                say(f"audio stream {s.index} ({name}) cannot go into {fmt}: re-encoded to {'Opus' if acodec == 'libopus' else 'AAC'}")
            else:
                say(f"subtitle stream {s.index} ({name}) cannot go into {fmt}: dropped (an .mkv output keeps it)")
        streams = [vs] + [s for s in inp.streams if s.index in copies or s.index in recode]

        done = 0
        t0 = time.perf_counter()
        group: list[tuple[np.ndarray, int | None]] = []

        def encode_group() -> None:
            nonlocal done
            frames = np.stack([a for a, _ in group]).astype(np.float32) * np.float32(1 / 255)
            sr = upscale_frames(frames, model.net_for(8), model.info, options, notify=say, size=size)
            for k, (_, pts) in enumerate(group):
                q = np.rint(sr[k] * 255.0).astype(np.uint8)
                vf = av.VideoFrame.from_ndarray(q, format="rgb24")
                vf.pts = pts if pts is not None else round((done + k) / (rate * tb))
                vf.time_base = tb
                for pkt in ovs.encode(vf):
                    out.mux(pkt)
            done += len(group)
            group.clear()

        def progress() -> VideoProgress:
            dt = time.perf_counter() - t0
            fps = done / dt if dt > 0 else 0.0
            known = total if total is not None and total >= done else None
            eta = (known - done) / fps if known is not None and fps > 0 else None
            return VideoProgress(done, known, fps, eta)

        try:
            for packet in inp.demux(*streams):
                i = packet.stream.index
                if i == vs.index:
                    for frame in packet.decode():
                        group.append((frame.to_ndarray(format="rgb24"), frame.pts))
                        if frame.pts is not None and frame.time_base:
                            held = getattr(frame, "duration", None)  # a held last frame counts in full
                            length = float(held * frame.time_base) if held else 1.0 / float(rate)
                            t_end = float(frame.pts * frame.time_base) + length
                            frames_end = t_end if frames_end is None else max(frames_end, t_end)
                        if len(group) >= per_pass:
                            encode_group()
                            yield progress()
                elif i in copies:
                    if packet.dts is None:  # the demuxer's flush packet
                        continue
                    packet.stream = copies[i]
                    out.mux(packet)
                else:
                    for af in packet.decode():
                        af.pts = None
                        for pkt in recode[i].encode(af):
                            out.mux(pkt)
            if group:
                encode_group()
                yield progress()
            for pkt in ovs.encode(None):
                out.mux(pkt)
            for a in recode.values():
                for pkt in a.encode(None):
                    out.mux(pkt)
        except av.FFmpegError as exc:
            where = dst if "encod" in str(exc).lower() or "mux" in str(exc).lower() else src
            raise VideoError(f"{where}: {'cannot encode' if where == dst else 'corrupt or unsupported video'} ({_first_line(exc)})") from None
        if done == 0:
            raise VideoError(f"{src}: no video frames could be decoded")
        try:
            out.close()
        except av.FFmpegError as exc:
            raise VideoError(f"{dst}: cannot write ({_first_line(exc)})") from None
        out = None
        try:
            os.replace(tmp, dst)
        except OSError as exc:
            raise VideoError(f"{dst}: cannot write ({exc.strerror or exc})") from None
        if announced is not None and frames_end is not None:
            # FFmpeg decodes a truncated or damaged file up to the damage without an error. Time,
            # not a frame count: edit lists and variable frame rates make counts disagree.
            start, end = announced
            covered, length = frames_end - start, end - start
            if length > 0 and covered < length * SHORT_VIDEO - 1.0 / float(rate):
                raise VideoError(
                    f"{src}: the video ended after {covered:.1f} s of its {length:.1f} s ({done} frames; truncated "
                    f"or corrupt); {dst} holds the {done} frames upscaled",
                    "repair or re-download the input and run again with --overwrite",
                )
    finally:
        inp.close()
        if out is not None:
            try:
                out.close()
            except Exception:  # noqa: BLE001 - closing after a failure; the file goes anyway
                pass
        if tmp.exists():
            try:
                tmp.unlink()
            except OSError:
                pass
