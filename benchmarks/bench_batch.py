"""Frames per second of `vidcolor batch` against the number of workers.

Writes a small batch of grayscale H.264 clips, then runs the real command
(`python -m vidcolor batch`, a fresh output folder each time) with each
``--jobs`` value, on the local process pool and, with --ray, on a local Ray
cluster started by the command. For each run it prints the wall time, the
frames per second over the whole run, and the frames per second once the
workers are up: the wall time of a one-clip batch of 2 frames (process start,
model load, Ray start) is taken off. Usage:

    python benchmarks/bench_batch.py [--jobs 1 2] [--clips 4] [--frames 48] [--size 320x240]
                                     [--device cpu] [--codec libx264] [--segments N] [--ray] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

import av
import numpy as np


def make_clip(path: pathlib.Path, frames: int, w: int, h: int, seed: int) -> None:
    """Moving gray texture, H.264 with a keyframe every 24 frames (so --segments can cut)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (h * 2, w * 2), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.codec_context.gop_size = 24
        s.codec_context.options = {"crf": "20", "preset": "veryfast"}
        for i in range(frames):
            y = (0.6 * base[i % h: i % h + h, i % w: i % w + w]
                 + 0.4 * (128 + 100 * np.sin((xx + 3 * i) / 9.0) * np.cos(yy / 7.0))).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(y, format="gray").reformat(format="yuv420p")
            frame.pts = i
            out.mux(s.encode(frame))
        out.mux(s.encode(None))


def run_batch(inputs, outdir: pathlib.Path, args, jobs: int, ray: bool) -> tuple[float, int, str]:
    shutil.rmtree(outdir, ignore_errors=True)
    cmd = [sys.executable, "-m", "vidcolor", "batch", *map(str, inputs), "-o", str(outdir), "--jobs", str(jobs),
           "--device", args.device, "--codec", args.codec, "--segments", str(args.segments), "--quiet"]
    if ray:
        cmd += ["--ray", "local"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"batch failed ({proc.returncode}):\n{proc.stderr}")
    m = re.search(r"; (\d+) frames in", proc.stderr)
    return wall, int(m.group(1)) if m else 0, proc.stderr.strip().splitlines()[-1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--clips", type=int, default=4)
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--size", default="320x240")
    p.add_argument("--device", default="cpu")
    p.add_argument("--codec", default="libx264")
    p.add_argument("--segments", type=int, default=1)
    p.add_argument("--ray", action="store_true", help="also on a local Ray cluster (--ray local)")
    p.add_argument("--json", help="write the figures here as JSON")
    args = p.parse_args()
    w, h = map(int, args.size.split("x"))
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="vidcolor-bench-batch-"))
    try:
        clips = []
        for i in range(args.clips):
            clips.append(tmp / "in" / f"clip{i}.mp4")
            clips[-1].parent.mkdir(exist_ok=True)
            make_clip(clips[-1], args.frames, w, h, i)
        tiny = tmp / "tiny" / "tiny.mp4"
        tiny.parent.mkdir()
        make_clip(tiny, 2, w, h, 99)
        print(f"{args.clips} clips x {args.frames} frames, {w}x{h}, --device {args.device}, --codec {args.codec}, "
              f"--segments {args.segments}; {os.cpu_count()} CPUs, {len(os.sched_getaffinity(0))} usable")
        print(f"{'executor':<8} {'jobs':>4} {'wall s':>8} {'frames':>6} {'fps':>7} {'startup s':>9} "
              f"{'fps after startup':>17} {'speed-up':>8}")
        results = []
        for ray in ([False, True] if args.ray else [False]):
            base = None
            for jobs in args.jobs:
                startup, _, _ = run_batch([tiny], tmp / "out-startup", args, jobs, ray)
                wall, frames, summary = run_batch(clips, tmp / "out", args, jobs, ray)
                # Too short a batch to tell the start-up apart: no figure rather than a wrong one.
                steady = frames / (wall - startup) if wall - startup > 0.2 * wall else None
                base = base or steady
                name = "ray" if ray else "pool"
                after = f"{steady:>17.2f}" if steady else f"{'n/a':>17}"
                ratio = f"{steady / base:>7.2f}x" if steady and base else f"{'n/a':>8}"
                print(f"{name:<8} {jobs:>4} {wall:>8.1f} {frames:>6} {frames / wall:>7.2f} {startup:>9.1f} "
                      f"{after} {ratio}")
                results.append(dict(executor=name, jobs=jobs, wall_s=wall, frames=frames, fps=frames / wall,
                                    startup_s=startup, fps_after_startup=steady, summary=summary))
        if args.json:
            pathlib.Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
