"""The y4m pipe against file mode on the same input, through the real command.

File mode:  colorize_video(IN.mkv -> OUT.mkv, ffv1), as `vidcolor IN.mkv -o OUT.mkv --codec ffv1`
Pipe mode:  (PyAV: IN.mkv -> y4m) | colorize_y4m | (PyAV: y4m -> ffv1 OUT.mkv), as
            `ffmpeg -i IN.mkv -f yuv4mpegpipe - | vidcolor - -o - | ffmpeg -i - OUT.mkv`

One model, loaded once, colorizes both; PyAV processes stand in for ffmpeg on both
sides of the pipe (the same libav* code), so no ffmpeg binary is needed. Prints the
fps of each mode (frames over the wall time of the run) and their ratio.

    python benchmarks/bench_y4m.py [--frames 120] [--size 320x240] [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import av
import numpy as np

TO_Y4M = """import sys, av
with av.open(sys.argv[1]) as i, av.open(sys.stdout.buffer, "w", format="yuv4mpegpipe") as o:
    s = o.add_stream("wrapped_avframe", rate=i.streams.video[0].average_rate)
    v = i.streams.video[0]; s.width, s.height, s.pix_fmt = v.width, v.height, "yuv420p"
    for f in i.decode(v):
        o.mux(s.encode(f))
    o.mux(s.encode(None))
"""
FROM_Y4M = """import sys, av
with av.open(sys.stdin.buffer, format="yuv4mpegpipe") as i, av.open(sys.argv[1], "w") as o:
    v = i.streams.video[0]; s = o.add_stream("ffv1", rate=v.average_rate)
    s.width, s.height, s.pix_fmt = v.width, v.height, v.codec_context.pix_fmt
    for f in i.decode(v):
        f.pts = None
        o.mux(s.encode(f))
    o.mux(s.encode(None))
"""


def make_clip(path: pathlib.Path, frames: int, w: int, h: int) -> None:
    """A moving gray gradient with noise, FFV1 (cheap to decode: the model dominates)."""
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        s = out.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            y = (64 + 96 * np.sin((xx + 4 * i) / 17.0) * np.cos(yy / 11.0) + rng.normal(0, 6, (h, w)))
            gray = av.VideoFrame.from_ndarray(np.clip(y + 64, 0, 255).astype(np.uint8), format="gray")
            out.mux(s.encode(gray.reformat(format="yuv420p")))
        out.mux(s.encode(None))


def frames_in(path: pathlib.Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each mode (best one counts)")
    ap.add_argument("--model", default="default")
    args = ap.parse_args()
    from vidcolor.colorizer import Colorizer
    from vidcolor.io.engine import EncodeOptions, colorize_video
    from vidcolor.io.y4m import colorize_y4m

    w, h = map(int, args.size.split("x"))
    colorizer = Colorizer(args.model)  # loaded once: both modes time the same work
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        src = tmp / "in.mkv"
        make_clip(src, args.frames, w, h)
        best: dict[str, float] = {}
        for _ in range(args.repeat):
            for mode in ("file", "pipe"):
                dst = tmp / f"{mode}.mkv"
                dst.unlink(missing_ok=True)
                t0 = time.perf_counter()
                if mode == "file":
                    colorize_video(src, dst, colorizer, EncodeOptions(codec="ffv1"), progress=False)
                else:  # PyAV processes on both sides of the pipe, as ffmpeg would be
                    up = subprocess.Popen([sys.executable, "-c", TO_Y4M, str(src)], stdout=subprocess.PIPE)
                    down = subprocess.Popen([sys.executable, "-c", FROM_Y4M, str(dst)], stdin=subprocess.PIPE)
                    colorize_y4m(up.stdout, down.stdin, colorizer)
                    down.stdin.close()
                    assert up.wait() == 0 and down.wait() == 0
                seconds = time.perf_counter() - t0
                n = frames_in(dst)
                assert n == args.frames, (mode, n)
                best[mode] = max(best.get(mode, 0.0), n / seconds)
        print(f"{args.frames} frames {w}x{h}, model {colorizer.name}, batch {colorizer.runtime.batch}, "
              f"{os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}, "
              f"load {os.getloadavg()[0]:.1f}")
        print(f"file mode: {best['file']:.2f} fps")
        print(f"pipe mode: {best['pipe']:.2f} fps")
        print(f"file / pipe: {best['file'] / best['pipe']:.2f}x")


if __name__ == "__main__":
    main()
