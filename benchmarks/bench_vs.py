"""Throughput of the VapourSynth filter under vspipe, against the CLI engine's model.

Encodes the same clip as bench_engine.py (640x480 H.264 by default), then:

* engine model-only fps: ``colorize_frames`` on frames already decoded, in
  batches (the ceiling of the CLI engine, which also has to decode and encode),
  measured in a worker thread as the engine's model stage runs, and in the
  main thread as bench_engine.py measures it (on a loaded CPU the two differ:
  torch's OpenMP pool of the main thread suffers most from other processes);
* engine end-to-end fps (``colorize_video``), unless --no-engine;
* vspipe fps: ``vspipe -c y4m script.vpy --`` on ``core.bs.VideoSource`` +
  ``colorize``, for each ``core.num_threads`` asked for; the figure is the one
  vspipe prints (rendering only, not the script's start and model load).

Usage:

    python benchmarks/bench_vs.py [--frames 120] [--size 640x480] [--threads 1,2,4] [--batch 8]
        [--model zhang2016] [--device auto] [--stabilize] [--no-engine] [--json FILE]
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
import threading
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_engine  # noqa: E402  (same clip maker and model-only measurement)

from vidcolor.colorizer import Colorizer  # noqa: E402
from vidcolor.io.engine import colorize_video  # noqa: E402
from vidcolor.runtime import Runtime  # noqa: E402

SCRIPT = """\
from vapoursynth import core
from vidcolor.plugins.vs import colorize
core.num_threads = {threads}
clip = core.bs.VideoSource({clip!r}, cachemode=0)
colorize(clip, model={model!r}, device={device!r}, batch={batch}, temporal={temporal!r}).set_output()
"""


def vspipe_command() -> list[str]:
    exe = pathlib.Path(sys.executable).with_name("vspipe")
    return [str(exe)] if exe.exists() else [shutil.which("vspipe") or "vspipe"]


def vs_env(tmp: pathlib.Path) -> dict:
    """An environment where vspipe finds this Python (``vapoursynth config`` into a private XDG dir)."""
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp / "xdg"))
    subprocess.run([sys.executable, "-m", "vapoursynth", "config"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return env


def vspipe_fps(script: pathlib.Path, env: dict) -> tuple[float, int]:
    out = subprocess.run(vspipe_command() + ["-c", "y4m", str(script), "--"], env=env,
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"vspipe failed:\n{out.stderr}")
    m = re.search(r"Output (\d+) frames in ([\d.]+) seconds \(([\d.]+) fps\)", out.stderr)
    return float(m.group(3)), int(m.group(1))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--size", default="640x480")
    p.add_argument("--threads", default="1,2,4", help="core.num_threads values to run vspipe with")
    p.add_argument("--model", default="default")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--no-engine", action="store_true", help="skip the engine's end-to-end run")
    p.add_argument("--stabilize", action="store_true",
                   help="temporal='stabilize' in the filter, and the engine's stabilized colorizer")
    p.add_argument("--json", help="write the figures to this file too")
    args = p.parse_args()
    bench_engine.W, bench_engine.H = map(int, args.size.split("x"))

    runtime = Runtime(device=args.device, batch=args.batch)
    colorizer = Colorizer(args.model, runtime=runtime)
    if args.stabilize:
        colorizer = colorizer.stabilized()
    res = {"model": args.model, "stabilize": args.stabilize, "device": str(runtime.torch_device), "frames": args.frames, "size": args.size,
           "batch": args.batch, "torch_threads": torch.get_num_threads(), "cpus": len(os.sched_getaffinity(0))}
    with tempfile.TemporaryDirectory() as d:
        tmp = pathlib.Path(d)
        clip = tmp / "clip.mp4"
        bench_engine.make_clip(clip, args.frames)
        _, frames, lay = bench_engine.decode_only(clip)
        res["engine_model_fps_main_thread"] = bench_engine.model_only(colorizer, frames, lay)
        box = []
        worker = threading.Thread(target=lambda *a: box.append(bench_engine.model_only(*a)),
                                  args=(colorizer, frames, lay))
        worker.start()
        worker.join()
        res["engine_model_fps"] = box[0]
        del frames
        if not args.no_engine:
            t = time.perf_counter()
            stats = colorize_video(clip, tmp / "out.mp4", colorizer, progress=False)
            res["engine_end_to_end_fps"] = stats.frames / (time.perf_counter() - t)
        env = vs_env(tmp)
        for threads in (int(t) for t in args.threads.split(",")):
            script = tmp / f"bench{threads}.vpy"
            script.write_text(SCRIPT.format(threads=threads, clip=str(clip), model=args.model,
                                            device=args.device, batch=args.batch,
                                            temporal="stabilize" if args.stabilize else None))
            fps, n = vspipe_fps(script, env)
            if n != args.frames:
                raise SystemExit(f"vspipe output {n} frames, expected {args.frames}")
            res[f"vspipe_fps_threads{threads}"] = fps
            res[f"vspipe_to_engine_model_threads{threads}"] = fps / res["engine_model_fps"]
            if "engine_end_to_end_fps" in res:
                res[f"vspipe_to_engine_end_to_end_threads{threads}"] = fps / res["engine_end_to_end_fps"]
    for k, v in res.items():
        print(f"{k:>34}: {v:.3f}" if isinstance(v, float) else f"{k:>34}: {v}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
