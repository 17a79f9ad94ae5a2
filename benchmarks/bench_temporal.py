"""Scene cuts and --stabilize, measured on the evaluation videos.

Three parts, each printed as a Markdown table:

1. cuts: the scene-cut detector on every clip (precision and recall on
   bikes.mp4 against the cut frames marked by hand in tests/test_temporal.py;
   false positives on the clips that have no cut);
2. quality: ``vidcolor.eval.evaluate.evaluate`` on every clip with the per-frame
   model (``Colorizer().colorize_rgb``) against ``Colorizer.stabilized()`` at
   each ``--alphas`` value, with the issue's targets (flicker at most half,
   PSNR at most 0.3 dB lower, colourfulness ratio within 10%);
3. speed (``--speed``): per-frame time of ``Colorizer.chroma`` with and
   without the stabilizer on 640x480 frames, and of whole ``colorize_video``
   runs (decode, model, encode) on a 640x480 clip with and without it.

Every row runs the network itself: with ``--stabilize`` the model sees
deflickered luma, so the rows' fresh predictions differ. Usage:

    python benchmarks/bench_temporal.py [--frames 100] [--alphas 0.85] [--clips bikes,tree]
        [--model zhang2016] [--device auto] [--speed] [--out DIR]
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
import tempfile
import time

import av
import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from vidcolor.colorizer import Colorizer  # noqa: E402
from vidcolor.eval.evaluate import evaluate  # noqa: E402
from vidcolor.runtime import Runtime  # noqa: E402
from vidcolor.temporal import DEFAULT_ALPHA, SceneCutDetector, Stabilizer  # noqa: E402

EVAL = ROOT / "data" / "eval"
CLIPS = {"bikes": "bikes.mp4", "tree": "tree.avi", "carphone": "carphone_pristine.mp4", "vtest": "vtest.avi"}


def hand_marked_cuts() -> dict[str, list[int]]:
    from test_temporal import HAND_MARKED_CUTS  # the ground truth lives with the tests

    return HAND_MARKED_CUTS


def decode_luma(path: pathlib.Path, limit: int | None = None):
    with av.open(str(path)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if limit is not None and i >= limit:
                return
            yield frame.to_ndarray(format="gray")


def bench_cuts(clips: list[str]) -> None:
    truth = hand_marked_cuts()
    print("\n## Scene cuts (whole clips)\n")
    print("| Clip | Frames | Marked by hand | Detected | TP | FP | FN | Precision | Recall | ms/frame |")
    print("|---|---:|---|---|---:|---:|---:|---:|---:|---:|")
    for clip in clips:
        path = EVAL / CLIPS[clip]
        frames = list(decode_luma(path))
        det = SceneCutDetector()
        t0 = time.perf_counter()
        found = det.detect(frames)
        ms = (time.perf_counter() - t0) * 1000 / len(frames)
        gt = set(truth.get(CLIPS[clip], []))
        tp, fp, fn = len(gt & set(found)), len(set(found) - gt), len(gt - set(found))
        prec = tp / (tp + fp) if tp + fp else math.nan
        rec = tp / (tp + fn) if tp + fn else math.nan
        print(f"| {clip} | {len(frames)} | {sorted(gt)} | {found} | {tp} | {fp} | {fn} | "
              f"{_f(prec, '{:.2f}')} | {_f(rec, '{:.2f}')} | {ms:.2f} |")


def _f(v, fmt: str) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def bench_quality(colorizer: Colorizer, clips: list[str], frames: int, alphas: list[float], out: pathlib.Path,
                  batch: int) -> None:
    rows = []
    for clip in clips:
        path = EVAL / CLIPS[clip]
        runs = {"per-frame": colorizer.colorize_rgb}
        stabilized = {}
        for a in alphas:
            name = f"stabilize a={a:g}"
            stabilized[name] = colorizer.stabilized(Stabilizer(a))
            runs[name] = stabilized[name].colorize_rgb
        result = evaluate(path, runs, out, batch=batch, max_frames=frames, progress=False)
        by = {r["name"]: r for r in result["rows"]}
        # evaluate's flicker counts the pairs across a cut too (a handful of pixels whose luma
        # happens to match): the same figure without them, from the per-pair values
        cuts = set(hand_marked_cuts().get(CLIPS[clip], []))
        per_pair = result["per_frame"]["flicker"]
        for name, r in by.items():
            kept = [v for t, v in enumerate(per_pair[name]) if t not in cuts and v is not None and not math.isnan(v)]
            r["flicker_in_shots"] = float(np.mean(kept)) if kept else math.nan
        base = by["per-frame"]
        for name in [*runs, "gray", "original"]:
            rows.append((clip, name, by[name], base, by["original"], result["frames"]))
    print(f"\n## Per-frame model vs --stabilize ({colorizer.name}, first {frames} frames, vidcolor.eval.evaluate)\n")
    print("| Clip | Method | Frames | PSNR dB | dPSNR | SSIM | Colourful. ratio | vs per-frame | Flicker ab | "
          "Flicker / per-frame | Flicker / floor | Flicker in shots | in shots / per-frame | CDC | "
          "s in colorizer | Targets |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for clip, name, r, base, orig, n in rows:
        if name == "original":
            print(f"| {clip} | original (floor) | {n} | — | — | — | 1.000 | — | {orig['flicker']:.3f} | — | "
                  f"1.00 | {orig['flicker_in_shots']:.3f} | — | {orig['cdc']:.4f} | — | |")
            continue
        dpsnr = r["psnr"] - base["psnr"]
        cf = r["colourfulness_ratio"] / base["colourfulness_ratio"] if base["colourfulness_ratio"] else math.nan
        fl = r["flicker"] / base["flicker"] if base["flicker"] else math.nan
        fl_in = r["flicker_in_shots"] / base["flicker_in_shots"] if base["flicker_in_shots"] else math.nan
        ok = ""
        if name.startswith("stabilize"):
            checks = [fl <= 0.5, dpsnr >= -0.3, abs(cf - 1) <= 0.10]
            ok = "all met" if all(checks) else "missed: " + ", ".join(
                t for t, c in zip(("flicker", "PSNR", "colourfulness"), checks) if not c)
        print(f"| {clip} | {name} | {n} | {r['psnr']:.2f} | {dpsnr:+.2f} | {r['ssim']:.4f} | "
              f"{r['colourfulness_ratio']:.3f} | {cf:.3f} | {r['flicker']:.3f} | {fl:.2f} | "
              f"{r['flicker'] / orig['flicker']:.2f} | {r['flicker_in_shots']:.3f} | {fl_in:.2f} | "
              f"{r['cdc']:.4f} | {r['seconds']:.1f} | {ok} |")
    print("\nFlicker in shots: the same mean without the frame pairs that straddle a hand-marked cut. "
          "Seconds: time in the colorizer, network included.")


def bench_speed(colorizer: Colorizer, weights=None, frames: int = 48, batch: int = 8, repeats: int = 5) -> None:
    from conftest import texture

    ys = torch.from_numpy(np.stack([texture(i, 480, 640) for i in range(frames)]).astype(np.float32))[:, None]
    plain = Colorizer(colorizer.name, weights, runtime=colorizer.runtime)
    stab = plain.stabilized()

    def timed(c) -> float:
        c.chroma(ys[:batch], (240, 320), "bt601")  # warm-up
        t0 = time.perf_counter()
        for i in range(0, frames, batch):
            c.chroma(ys[i:i + batch], (240, 320), "bt601")
        return (time.perf_counter() - t0) / frames

    # The stabilizer's own work (prepare before the model, run after it), timed inside the
    # stabilized calls: on a shared 2-core VM the totals drift by more than their difference.
    own = [0.0]
    for name in ("prepare", "run"):
        method = getattr(stab.stabilizer, name)

        def clocked(*a, _method=method, **k):
            t0 = time.perf_counter()
            try:
                return _method(*a, **k)
            finally:
                own[0] += time.perf_counter() - t0
        setattr(stab.stabilizer, name, clocked)

    # interleaved repeats, best of each
    plains, stabs, owns = [], [], []
    for _ in range(repeats):
        stab.reset()
        plains.append(timed(plain))
        own[0] = 0.0
        stabs.append(timed(stab))
        owns.append(own[0] / (frames + batch))  # timed() runs one warm-up batch too
    t_plain, t_stab, t_own = min(plains), min(stabs), min(owns)
    stab.reset()
    det = SceneCutDetector()
    t0 = time.perf_counter()
    for y in ys:
        det.update(y[0].numpy())
    t_det = (time.perf_counter() - t0) / frames
    print(f"\n## Speed at 640x480 ({colorizer.name}, {plain.device}, {torch.get_num_threads()} torch threads)\n")
    print("| per frame | ms |\n|---|---:|")
    print(f"| Colorizer.chroma | {t_plain * 1000:.1f} |")
    print(f"| Colorizer.stabilized().chroma | {t_stab * 1000:.1f} |")
    print(f"| added by --stabilize (difference of the totals) | {(t_stab - t_plain) * 1000:.1f} "
          f"({(t_stab / t_plain - 1) * 100:+.0f}%) |")
    print(f"| the stabilizer's own time (cut detection, deflicker, flow, blend) | {t_own * 1000:.1f} "
          f"({t_own / t_plain * 100:+.0f}% of Colorizer.chroma) |")
    print(f"| SceneCutDetector.update alone (full 640x480 luma) | {t_det * 1000:.2f} |")


def bench_speed_end_to_end(colorizer: Colorizer, weights=None, frames: int = 150, repeats: int = 3) -> None:
    """Whole `colorize_video` runs (decode, model, encode) with and without the stabilizer."""
    from bench_engine import H, W, make_clip

    from vidcolor.io.engine import colorize_video

    plain = Colorizer(colorizer.name, weights, runtime=colorizer.runtime)
    stab = plain.stabilized()
    times: dict[str, list[float]] = {"plain": [], "stabilize": []}
    with tempfile.TemporaryDirectory() as d:
        clip = pathlib.Path(d) / "clip.mp4"
        make_clip(clip, frames)
        for r in range(repeats):  # interleaved, best of each
            for name, c in (("plain", plain), ("stabilize", stab)):
                c.reset()
                t0 = time.perf_counter()
                colorize_video(clip, pathlib.Path(d) / f"{name}{r}.mp4", c, progress=False)
                times[name].append((time.perf_counter() - t0) / frames)
    t_plain, t_stab = min(times["plain"]), min(times["stabilize"])
    print(f"\n## End to end at {W}x{H} (colorize_video: decode, model, x264 encode; {frames} frames, "
          f"best of {repeats})\n")
    print("| per frame | ms | fps |\n|---|---:|---:|")
    print(f"| vidcolor | {t_plain * 1000:.1f} | {1 / t_plain:.1f} |")
    print(f"| vidcolor --stabilize | {t_stab * 1000:.1f} | {1 / t_stab:.1f} |")
    print(f"| added by --stabilize | {(t_stab - t_plain) * 1000:.1f} ({(t_stab / t_plain - 1) * 100:+.0f}%) | |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=100, help="frames per clip for the quality part")
    p.add_argument("--alphas", default=str(DEFAULT_ALPHA), help="comma-separated stabilizer alphas")
    p.add_argument("--clips", default=",".join(CLIPS), help=f"comma-separated, of {', '.join(CLIPS)}")
    p.add_argument("--model", default="default")
    p.add_argument("--weights", help="weights file (default: the model's shipped weights)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--skip-cuts", action="store_true")
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--speed", action="store_true", help="also time --stabilize at 640x480")
    p.add_argument("--out", help="folder for evaluate's reports (default: a temporary folder)")
    args = p.parse_args(argv)
    clips = [c for c in args.clips.split(",") if c]
    missing = [CLIPS[c] for c in clips if not (EVAL / CLIPS[c]).exists()]
    if missing:
        print(f"missing {', '.join(missing)} under {EVAL}: run `vidcolor data` first", file=sys.stderr)
        return 2
    if not args.skip_cuts:
        bench_cuts(clips)
    if args.skip_quality and not args.speed:
        return 0
    colorizer = Colorizer(args.model, args.weights, runtime=Runtime(device=args.device, batch=args.batch))
    if not args.skip_quality:
        alphas = [float(a) for a in args.alphas.split(",") if a]
        with tempfile.TemporaryDirectory() as tmp:
            bench_quality(colorizer, clips, args.frames, alphas, pathlib.Path(args.out or tmp), args.batch)
    if args.speed:
        bench_speed(colorizer, args.weights)
        bench_speed_end_to_end(colorizer, args.weights)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
