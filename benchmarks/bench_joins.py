"""Colour steps at the joins of `vidcolor batch --segments`, against the rest of the film.

A stateful colorizer (--stabilize, temporal models) carries colour from frame to
frame; a segment that starts cold restarts that state at its first frame. This
runs one colour evaluation video (its luma only reaches the model) through the
engine three ways, losslessly (FFV1): one process over the whole clip, N
segments each warmed up on 44 frames before its start (what `vidcolor batch`
does), and N segments started cold. For each output it prints the mean ab warp
error (the flicker of `vidcolor eval`: `vidcolor.eval.metrics.FlickerMeter`, along
the original's optical flow) over the frame pairs that straddle a join and
over all other pairs, and the largest difference from the single run's frames
right after each join. Usage:

    python benchmarks/bench_joins.py [--clip data/eval/bikes.mp4] [--segments 4] [--model default]
        [--temporal stabilize|model] [--frames 250]
"""

from __future__ import annotations

import argparse
import math
import pathlib
import tempfile

import av
import numpy as np

from vidcolor.colorizer import Colorizer
from vidcolor.io.engine import EncodeOptions, colorize_video
from vidcolor.eval.metrics import FlickerMeter
from vidcolor.runtime import Runtime
from vidcolor.io.segments import join_segments, plan_segments, segment_options, warmup_seconds
from vidcolor.temporal import warmup_frames


def rgb_frames(path: pathlib.Path, limit: int) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for _, f in zip(range(limit), c.decode(video=0))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", type=pathlib.Path, default=pathlib.Path("data/eval/bikes.mp4"))
    p.add_argument("--segments", type=int, default=4)
    p.add_argument("--model", default="default")
    p.add_argument("--temporal", choices=("stabilize", "model"), default="stabilize",
                   help="stabilize: the model with --stabilize; model: a temporal --model as it is")
    p.add_argument("--frames", type=int, default=250)
    args = p.parse_args()
    base = Colorizer(args.model, None, Runtime(device="cpu", batch=8))
    make = base.stabilized if args.temporal == "stabilize" else base.fresh
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        src = tmp / "clip.mkv"
        # The clip's first frames, re-encoded with a keyframe every 25 so it can be cut anywhere.
        frames = rgb_frames(args.clip, args.frames)
        with av.open(str(src), "w") as out:
            s = out.add_stream("ffv1", rate=25)
            s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
            s.codec_context.gop_size = 25
            for f in frames:
                out.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p")))
            out.mux(s.encode())
        opts = EncodeOptions(codec="ffv1")
        plan = plan_segments(src, args.segments, opts)
        joins = []
        acc = 0
        for seg in plan[:-1]:
            acc += seg.frames
            joins.append(acc)  # the first frame of the next segment
        outputs = {"single run": tmp / "single.mkv"}
        colorize_video(src, outputs["single run"], make(), opts, progress=False)
        warm = warmup_seconds(src, warmup_frames())
        for label, w in (("segments, warm-up", warm), ("segments, cold", 0.0)):
            parts = []
            for seg in plan:
                part = tmp / f"{label[-4:]}{seg.index}.mkv"
                colorize_video(src, part, make(), segment_options(opts, seg, w), progress=False)
                parts.append(part)
            outputs[label] = tmp / f"{label[-4:]}.mkv"
            join_segments(src, parts, outputs[label], opts)
        decoded = {k: rgb_frames(v, args.frames) for k, v in outputs.items()}
    meter = FlickerMeter()
    at_join = {k: [] for k in decoded}
    elsewhere = {k: [] for k in decoded}
    for t, ref in enumerate(frames):
        step = meter.update(ref, {k: v[t] for k, v in decoded.items()})
        if step is None:
            continue
        for k in decoded:
            value = step["warp"][k]
            if not math.isnan(value):
                (at_join if t in joins else elsewhere)[k].append(value)
    print(f"{args.clip.name}: {len(frames)} frames, joins before frames {joins}, model {base.name}, "
          f"{args.temporal}, warm-up {warmup_frames()} frames")
    print("| output | flicker at joins | flicker elsewhere | ratio | max |diff| from single run after a join |")
    print("|---|---:|---:|---:|---:|")
    single = decoded["single run"]
    for k, out in decoded.items():
        j, e = np.mean(at_join[k]) if at_join[k] else math.nan, np.mean(elsewhere[k])
        diff = max(np.abs(out[t].astype(int) - single[t]).mean() for j0 in joins for t in range(j0, j0 + 3))
        print(f"| {k} | {j:.3f} | {e:.3f} | {j / e:.2f} | {diff:.3f} |")


if __name__ == "__main__":
    main()
