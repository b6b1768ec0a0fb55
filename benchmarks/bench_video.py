#!/usr/bin/env python
"""Benchmark of `esr upscale` on a video: frames per second, end to end, on the CPU (or a GPU).

Makes a test clip with PyAV (the example photo ``examples/budgie_lq.png`` panned across
``--size`` frames, H.264 at CRF 10, a mono AAC tone), then times
:func:`esrcli.infer.upscale_video` (decode, the tiled network pass, H.264 CRF 17 encode, audio
copied) and, in the same run, the network alone on the same frames
(:func:`esrcli.infer.upscale_frames`, one frame per pass), alternating which goes first over
``--rounds`` rounds; prints the medians, the share of the time the network takes, and the
peak resident memory after each round (it should not grow with the clip's length: frames
stream through).

Usage::

    python benchmarks/bench_video.py [--model esr-general-x4-net] [--size 320x240] [--frames 24]
        [--rounds 3] [--threads 2] [--device cpu] [--precision auto]

The figures in docs/upscale.md were measured with ``--model esr-general-x4-net`` (without
``--model`` the default model runs, ``realesrgan-x4plus``, far slower). ``--device cuda`` without a CUDA GPU, or an unknown
``--model``, is a one-line error.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from esrcli.errors import EsrError
from esrcli.infer import ModelSpec, UpscaleOptions, VideoOptions, load_upscale_model, upscale_frames, upscale_video

ROOT = Path(__file__).resolve().parents[1]


def make_clip(path: Path, w: int, h: int, frames: int, rate: int = 24) -> list[np.ndarray]:
    """An H.264 + AAC clip of ``frames`` frames: the example photo, enlarged to cover the
    frame, panned 2 px per frame."""
    img = cv2.imread(str(ROOT / "examples" / "budgie_lq.png"))[:, :, ::-1]
    f = max((h + 2) / img.shape[0], (w + 2 * frames + 2) / img.shape[1])
    img = cv2.resize(img, (int(img.shape[1] * f) + 1, int(img.shape[0] * f) + 1), interpolation=cv2.INTER_CUBIC)
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=rate)
    vs.width, vs.height, vs.pix_fmt, vs.options = w, h, "yuv420p", {"crf": "10"}
    a = out.add_stream("aac", rate=48000)
    a.layout = "mono"
    crops = []
    for i in range(frames):
        crop = np.ascontiguousarray(img[1 : 1 + h, 1 + 2 * i : 1 + 2 * i + w])
        crops.append(crop)
        for p in vs.encode(av.VideoFrame.from_ndarray(crop, format="rgb24")):
            out.mux(p)
    tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(48000 * frames // rate) / 48000)).astype(np.float32)[None]
    for k in range(0, tone.shape[1], 1024):
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, k : k + 1024]), format="flt", layout="mono")
        af.sample_rate, af.pts = 48000, k
        for p in a.encode(af):
            out.mux(p)
    for s in (vs, a):
        for p in s.encode(None):
            out.mux(p)
    out.close()
    return crops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model file or embedded name (default: the embedded default)")
    ap.add_argument("--size", default="320x240", help="frame size WxH (default 320x240)")
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, mps or auto; a GPU must be present")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--tile", type=int, default=512)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        ap.error(f"--size takes WxH in pixels, e.g. 320x240, got {args.size!r}")
    try:
        model = load_upscale_model(ModelSpec(args.model, args.device, args.precision))
    except EsrError as exc:  # e.g. --device cuda on a machine without a CUDA GPU, an unknown --model
        msg = str(exc) + (f" ({exc.hint})" if exc.hint else "")
        if msg.startswith("device: "):
            msg = f"--device {args.device}: {msg.removeprefix('device: ')} (use --device cpu)"
        sys.exit(f"bench_video: {msg}")
    options = UpscaleOptions(tile=args.tile, tile_overlap=32)
    print(f"torch {torch.__version__}, PyAV {av.__version__}, {args.threads} thread(s); model {model.name} "
          f"({model.info.arch} x{model.info.scale}) on {model.device} in {model.precision.name}; "
          f"{args.frames} frames of {w}x{h}", flush=True)
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "clip.mp4"
        frames = make_clip(src, w, h, args.frames)
        stack = [f.astype(np.float32)[None] / 255 for f in frames]

        def video() -> None:
            for _ in upscale_video(src, Path(d) / "out.mp4", model, options, VideoOptions()):
                pass

        def network() -> None:
            for f in stack:
                upscale_frames(f, model.net, model.info, options)

        video()  # warm-up (and the output for a look)
        times: dict[str, list[float]] = {"video": [], "network": []}
        for r in range(args.rounds):
            for key, fn in ((("video", video), ("network", network)) if r % 2 == 0 else (("network", network), ("video", video))):
                t0 = time.perf_counter()
                fn()
                if model.device.type == "cuda":
                    torch.cuda.synchronize()
                times[key].append(time.perf_counter() - t0)
            print(f"round {r + 1}: video {args.frames / times['video'][-1]:.2f} frames/s, network alone "
                  f"{args.frames / times['network'][-1]:.2f} frames/s, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB",
                  flush=True)
        with av.open(str(Path(d) / "out.mp4")) as c:
            vs = c.streams.video[0]
            n = sum(1 for _ in c.decode(video=0))
            print(f"output: {n} frames of {vs.codec_context.width}x{vs.codec_context.height} at {vs.average_rate} fps, "
                  f"{len(c.streams.audio)} audio stream(s)")
    tv, tn = statistics.median(times["video"]), statistics.median(times["network"])
    print(f"video end to end: {args.frames / tv:.2f} frames/s (median of {args.rounds}); network alone "
          f"{args.frames / tn:.2f} frames/s; decode + encode + mux take {max(0.0, 1 - tn / tv):.0%} of the time")


if __name__ == "__main__":
    main()
