"""Throughput and memory of the streaming engine on a 640x480 clip.

Prints end-to-end fps, the fps of each stage alone (decode, model, encode, on
frames already in memory where that applies), the ratio end-to-end /
min(stages), and with --memory the peak RSS of whole runs of 300 and 3000
frames.

When every stage runs on the same CPU cores (no GPU), each one alone already
keeps all of them busy, so overlapping the stages cannot beat the sum of their
times: ``serial_bound_fps`` = 1 / (1/decode + 1/model + 1/encode), and
``ratio_e2e_to_serial_bound`` says how close the pipeline comes to it. With
the model on a GPU the stages use different hardware and end to end can
approach the slowest stage alone. Usage:

    python benchmarks/bench_engine.py [--frames 300] [--model zhang2016] [--device auto] [--memory]
"""

from __future__ import annotations

import argparse
import fractions
import json
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

import av
import numpy as np
import torch

from vidcolor.colorizer import Colorizer
from vidcolor.io.engine import EncodeOptions, colorize_video
from vidcolor.io.frames import colorize_frames, frame_layout, to_planes
from vidcolor.runtime import Runtime

W, H = 640, 480
SOURCE = pathlib.Path(__file__).resolve().parent.parent / "data" / "eval" / "vtest.avi"


def make_clip(path: pathlib.Path, frames: int) -> None:
    """A 640x480 H.264 clip: the vtest street scene when `vidcolor data` has run, else moving noise."""
    rng = np.random.default_rng(0)
    src = av.open(str(SOURCE)) if SOURCE.exists() else None
    decoded = src.decode(video=0) if src else None
    base = rng.integers(0, 255, (H * 2, W * 2), np.uint8)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.codec_context.options = {"crf": "20"}
        for i in range(frames):
            frame = next(decoded, None) if decoded else None
            if frame is None and src:  # loop the source
                src.seek(0)
                decoded = src.decode(video=0)
                frame = next(decoded)
            if frame is not None:
                frame = frame.reformat(W, H, "gray").reformat(format="yuv420p")
            else:
                y = base[i % H: i % H + H, i % W: i % W + W]
                frame = av.VideoFrame.from_ndarray(y, format="gray").reformat(format="yuv420p")
            frame.pts = i
            out.mux(s.encode(frame))
        out.mux(s.encode(None))
    if src:
        src.close()


def decode_only(path):
    t = time.perf_counter()
    frames = []
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        lay = None
        for f in c.decode(stream):
            lay = lay or frame_layout(stream, f, None)
            frames.append(to_planes(f, lay))
    return len(frames) / (time.perf_counter() - t), frames, lay


def model_only(colorizer, frames, lay):
    b = colorizer.runtime.batch
    colorize_frames(colorizer, frames[:b], lay)  # warm-up
    if colorizer.device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for i in range(0, len(frames), b):
        colorize_frames(colorizer, frames[i:i + b], lay)
    if colorizer.device.type == "cuda":
        torch.cuda.synchronize()
    return len(frames) / (time.perf_counter() - t)


def encode_only(frames, path):
    opts = EncodeOptions()
    t = time.perf_counter()
    with av.open(str(path), "w") as out:
        s = out.add_stream(opts.codec, rate=25)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.codec_context.options = {"crf": "18", "preset": "medium"}
        s.codec_context.thread_type = "AUTO"
        for i, f in enumerate(frames):
            # decoded frames carry the decoder's clock: restamp them on the encoder's
            f.pts, f.time_base = i, fractions.Fraction(1, 25)
            out.mux(s.encode(f))
        out.mux(s.encode(None))
    return len(frames) / (time.perf_counter() - t)


def peak_rss_mb(frames: int, model: str, device: str, tmp: pathlib.Path) -> float:
    """Peak resident memory of a whole CLI run in a fresh process."""
    clip = tmp / f"mem{frames}.mp4"
    make_clip(clip, frames)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forking parent.
    code = (f"import re, sys; from vidcolor.cli import main; "
            f"rc = main(['{clip}', '-o', '{tmp / f'mem{frames}.out.mp4'}', '--overwrite', '--quiet', "
            f"'--model', '{model}', '--device', '{device}']); "
            f"print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) / 1024


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--model", default="default")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--memory", action="store_true", help="also measure peak RSS for 300 and 3000 frames")
    p.add_argument("--json", help="write the figures to this file too")
    args = p.parse_args()

    runtime = Runtime(device=args.device, batch=args.batch)
    colorizer = Colorizer(args.model, runtime=runtime)
    res = {"model": args.model, "device": str(runtime.torch_device), "frames": args.frames,
           "size": f"{W}x{H}", "torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as d:
        tmp = pathlib.Path(d)
        clip = tmp / "clip.mp4"
        make_clip(clip, args.frames)
        res["decode_fps"], frames, lay = decode_only(clip)
        res["model_fps"] = model_only(colorizer, frames, lay)
        res["encode_fps"] = encode_only(frames, tmp / "enc.mp4")
        del frames
        t = time.perf_counter()
        stats = colorize_video(clip, tmp / "out.mp4", colorizer, progress=False)
        res["end_to_end_fps"] = stats.frames / (time.perf_counter() - t)
        stages = (res["decode_fps"], res["model_fps"], res["encode_fps"])
        res["ratio_e2e_to_slowest_stage"] = res["end_to_end_fps"] / min(stages)
        res["serial_bound_fps"] = 1.0 / sum(1.0 / f for f in stages)
        res["ratio_e2e_to_serial_bound"] = res["end_to_end_fps"] / res["serial_bound_fps"]
        if args.memory:
            small = peak_rss_mb(300, args.model, args.device, tmp)
            large = peak_rss_mb(3000, args.model, args.device, tmp)
            res.update(peak_rss_mb_300=small, peak_rss_mb_3000=large, rss_ratio_3000_to_300=large / small)
    res["self_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for k, v in res.items():
        print(f"{k:>28}: {v:.3f}" if isinstance(v, float) else f"{k:>28}: {v}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
