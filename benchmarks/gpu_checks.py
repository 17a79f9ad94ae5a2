"""Every GPU check of vidcolor in one run: precision, out-of-memory retry, VapourSynth filter, 1080p fps.

Sized to finish in under five minutes on one GPU (an H100), because GPU time is
lent in minutes. Each check prints a one-line summary; all figures go to
``$OUT/gpu.json`` (``benchmarks/results/gpu.json`` when $OUT is unset), rewritten
after every check so a run cut short keeps what it measured. Run it through
``benchmarks/gpu.sh``, or:

    python benchmarks/gpu_checks.py [--device cuda] [--quick] [--only precision,oom,vs,fps]
                                    [--ddcolor ddcolor-large|none] [--budget 280]

Checks (JSON sections):

``precision``
    For every model with shipped weights (registry ``weights`` and the file in
    models/) plus the default, float16 and bfloat16 autocast against float32 (TF32
    off for the reference) through `Colorizer.chroma`: mean and max |Cb,Cr
    difference| on a structured synthetic picture and on a frame of
    data/eval/bikes.mp4 (when present). Flagged when the mean difference exceeds
    5% of the float32 chroma's mean magnitude.
``oom``
    The out-of-memory retry of `Colorizer._network` on real CUDA: most of the
    GPU's memory is taken by one tensor, then a batch that cannot fit is
    colorized; the result must equal the unconstrained run's (float32, TF32 off,
    to 1e-4), ``colorizer.chunk`` must have become smaller than the batch, a later
    call must keep working, and with the GPU full but for a quarter of one
    frame's need, one frame must give `vidcolor.errors.OutOfMemory` with a
    one-line message. Skipped on the CPU (there is no device memory to fill).
``vs``
    The VapourSynth filter: a synthetic GRAY8 clip (output="yuv") and a YUV420P8
    clip through ``colorize(..., device=DEVICE)`` (default dtype, i.e. float16
    on CUDA, and float32) against ``device="cpu"``: max and mean difference of the
    chroma planes in 8-bit codes; frames asked in reverse order (a new node)
    must equal frames asked in order, bit for bit.
``fps``
    1920x1080: ``memory_fps`` (uint8 luma codes in CPU memory to chroma codes in
    CPU memory, `vidcolor.planes.colorize_codes`, i.e. the engine's model stage),
    ``device_fps`` (luma already on the device, `Colorizer.chroma`), and
    ``end_to_end_fps`` (`vidcolor.io.engine.colorize_video` on a generated 1080p
    H.264 clip, default encoder settings), for the default model in float16 and
    bfloat16 and ddcolor-large (synthetic weights in the official layout, as
    benchmarks/bench_ddcolor.py builds them) in float16.

``--device cpu --quick`` runs the same code at tiny sizes on the CPU (the
default model only, the OOM check skipped with its reason, ddcolor skipped
unless ``--ddcolor NAME`` is given): a smoke test (tests/test_gpu_script.py),
not a measurement. Exit status 1 when a check failed, was flagged or raised.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time
import traceback

import numpy as np
import torch

from vidcolor.colorizer import Colorizer, working_shape
from vidcolor.errors import OutOfMemory, one_line
from vidcolor.models import DEFAULT_MODEL, get_model, list_models
from vidcolor.runtime import Runtime
from vidcolor.models import shipped_dir

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIKES = ROOT / "data" / "eval" / "bikes.mp4"
MATRIX = "bt709"
FLAG_FRACTION = 0.05  # precision: mean |diff| above 5% of the float32 chroma's mean magnitude
OOM_TOL = 1e-4  # chroma units (-0.5..0.5): float32 with TF32 off, batched vs chunked
VS_MAX_CODES_F32 = 2  # 8-bit chroma codes, float32 on the device vs the CPU
VS_MEAN_CODES_LOW = 1.0  # mean 8-bit chroma codes, default dtype (float16 on CUDA) vs CPU float32


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


class Ctx:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.deadline = time.monotonic() + args.budget
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="vidcolor-gpu-"))
        self._loaded: dict[str, Colorizer] = {}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def colorizer(self, model: str, dtype: str | None, batch: int = 8, weights=None) -> Colorizer:
        """A fresh twin (own state, shared weights) of the model loaded once, at ``dtype``."""
        key = f"{model}|{weights}"
        if key not in self._loaded:
            self._loaded[key] = Colorizer(model, weights, Runtime(device=str(self.device), dtype="float32"))
        twin = self._loaded[key].fresh()
        twin.runtime = Runtime(device=str(self.device), dtype=dtype, batch=batch)
        twin.chunk = None
        return twin

    def drop(self, model: str, weights=None) -> None:
        self._loaded.pop(f"{model}|{weights}", None)
        if self.cuda:
            torch.cuda.empty_cache()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def no_tf32():
    """True float32 matmuls and convolutions on CUDA (PyTorch lets cuDNN use TF32 by default)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def picture(h: int, w: int, shift: int = 0) -> np.ndarray:
    """A structured grey picture in 0..1: sky gradient, stripes, discs, a checker board, edges, fine noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    xx = xx + shift
    s = min(h, w)
    sky = 0.85 - 0.55 * yy / max(h - 1, 1)
    stripes = 0.10 * np.sin(xx / (s / 40 + 1)) * np.cos(yy / (s / 25 + 1))
    discs = np.zeros((h, w), np.float32)
    for cx, cy, r, v in ((0.25, 0.65, 0.18, -0.35), (0.7, 0.35, 0.12, 0.1), ((0.5 + shift / w) % 1, 0.8, 0.08, -0.5)):
        discs += np.where((xx - shift - cx * w) ** 2 + (yy - cy * h) ** 2 < (r * s) ** 2, v, 0.0).astype(np.float32)
    cell = max(2, s // 16)
    checker = np.where(((xx // cell + yy // cell) % 2 == 0) & (yy > 0.85 * h), 0.2, 0.0).astype(np.float32)
    ground = np.where(yy > 0.7 * h, -0.25, 0.0).astype(np.float32)  # a horizon edge
    noise = np.random.default_rng(7).normal(0, 0.02, (h, w)).astype(np.float32)
    return np.clip(sky + stripes + discs + checker + ground + noise, 0.0, 1.0)


def bikes_frame(size: tuple[int, int] | None = None) -> tuple[np.ndarray | None, str | None]:
    """Luma (0..1) of frame 50 of data/eval/bikes.mp4 (its centre scaled to ``size``), or None and why not."""
    if not BIKES.exists():
        return None, f"{BIKES.relative_to(ROOT)} is absent (`vidcolor data` fetches it)"
    import av

    with av.open(str(BIKES)) as c:
        frame = None
        for i, f in enumerate(c.decode(video=0)):
            frame = f
            if i == 50:
                break
    if frame is None:
        return None, f"{BIKES} holds no frame"
    y = frame.to_ndarray(format="gray").astype(np.float32) / 255.0
    if size is not None:
        h, w = y.shape
        s = min(h, w)
        crop = torch.from_numpy(y[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s].copy())
        y = torch.nn.functional.interpolate(crop[None, None], size=size, mode="area")[0, 0].numpy()
    return y, None


def fmt(x: float) -> str:
    return f"{x:.3g}"


# --------------------------------------------------------------------------
# 1. precision
# --------------------------------------------------------------------------


def shipped_models() -> list[str]:
    return [n for n in list_models()
            if get_model(n).weights and (shipped_dir() / get_model(n).weights).is_file()]


def check_precision(ctx: Ctx) -> dict:
    default = get_model("default").name
    if ctx.args.models:
        models = ctx.args.models
    elif ctx.quick:
        models = [default]
    else:
        models = shipped_models()
        if default not in models:
            models.append(default)
    res = {"models": models, "default_model": default, "models_with_shipped_weights": shipped_models(),
           "flag_threshold": f"mean |diff| > {FLAG_FRACTION:.0%} of float32 mean |chroma|",
           "units": "chroma (Cb, Cr) in -0.5..0.5; x255 for 8-bit codes",
           "reference": "float32" + (", TF32 off" if ctx.cuda else ""), "results": {}}
    # --quick: square pictures (the network's smallest working shape), batched together.
    size = (64, 64) if ctx.quick else (480, 640)
    pics = {"synthetic": picture(*size)}
    bikes, why = bikes_frame(size if ctx.quick else None)
    if bikes is None:
        res["bikes_skipped"] = why
    else:
        pics["bikes"] = bikes
    res["pictures"] = {k: f"{v.shape[1]}x{v.shape[0]}" for k, v in pics.items()}
    flagged, worst = [], 0.0
    for name in models:
        if ctx.left() < 0:
            res["results"][name] = {"skipped": True, "reason": "time budget spent"}
            continue
        per = res["results"][name] = {}
        try:
            # Pictures of one shape go in one call, unless the model carries state from frame to frame.
            groups: dict = {}
            for label, pic in pics.items():
                key = label if get_model(name).temporal else pic.shape
                groups.setdefault(key, []).append(label)

            def run(dtype):
                got = {}
                for labels in groups.values():
                    y = torch.from_numpy(np.stack([pics[k] for k in labels]))[:, None].to(ctx.device)
                    with no_tf32() if dtype == "float32" else contextlib.nullcontext():
                        out = ctx.colorizer(name, dtype).chroma(y, y.shape[-2:], MATRIX).double()
                    got.update(zip(labels, out))
                return got

            refs = run("float32")
            for dtype in ("float16", "bfloat16"):
                outs = run(dtype)
                for label in pics:
                    ref, out = refs[label], outs[label]
                    diff = (out - ref).abs()
                    mag = float(ref.abs().mean())
                    mean = float(diff.mean())
                    ratio = mean / mag if mag > 0 else float("inf") if mean > 0 else 0.0
                    flag = ratio > FLAG_FRACTION
                    per[f"{dtype}/{label}"] = {"mean_abs_diff": mean, "max_abs_diff": float(diff.max()),
                                               "fp32_mean_abs_chroma": mag, "mean_diff_to_magnitude": ratio,
                                               "flagged": flag}
                    worst = max(worst, ratio)
                    if flag:
                        flagged.append(f"{name} {dtype} {label} ({ratio:.1%})")
                    print(f"  precision {name:<16} {dtype:<8} {label:<9} mean {fmt(mean * 255)} max "
                          f"{fmt(float(diff.max()) * 255)} (8-bit codes); fp32 |chroma| {fmt(mag * 255)}; "
                          f"ratio {ratio:.2%}{'  FLAG' if flag else ''}", flush=True)
        except Exception as exc:  # noqa: BLE001 - one model's failure is reported, the others still run
            per["error"] = one_line(exc)
            flagged.append(f"{name}: {one_line(exc)}")
            print(f"  precision {name}: ERROR {one_line(exc)}", flush=True)
        finally:
            ctx.drop(name)
    res["worst_mean_diff_to_magnitude"] = worst
    res["flagged"] = flagged
    res["status"] = "flagged" if flagged else "ok"
    res["summary"] = (f"precision: {len(models)} model(s) x fp16/bf16 x {len(pics)} picture(s); worst mean diff "
                      f"{worst:.2%} of fp32 chroma (flag > {FLAG_FRACTION:.0%}); "
                      + (f"FLAGGED: {'; '.join(flagged)}" if flagged else "none flagged"))
    return res


# --------------------------------------------------------------------------
# 2. out-of-memory retry
# --------------------------------------------------------------------------


def check_oom(ctx: Ctx) -> dict:
    if not ctx.cuda:
        return {"skipped": True, "status": "skipped",
                "reason": f"needs a CUDA device (running on {ctx.device}): on the CPU there is no device "
                          "memory to fill, and running host RAM out would hit the OS, not torch.OutOfMemoryError"}
    dev = ctx.device
    # Frames at the model's working shape, already on the device: the network's activations, which the
    # retry covers, are nearly all the memory a call needs (an OOM outside `_network` is not retried).
    n, (h, w) = 32, (224, 400)
    frames = np.stack([picture(h, w, shift=8 * i) for i in range(n)])[:, None]
    y = torch.from_numpy(frames).to(dev)
    c = ctx.colorizer("default", "float32")
    res = {"model": c.name, "batch": n, "frame": f"{w}x{h}", "dtype": "float32, TF32 off", "tolerance": OOM_TOL}
    fillers = []
    try:
        with no_tf32():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
            one = c.chroma(y[:1], (h, w), MATRIX)
            peak1 = torch.cuda.max_memory_allocated(dev) - base
            del one
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
            ref = c.chroma(y, (h, w), MATRIX)
            peak_n = torch.cuda.max_memory_allocated(dev) - base
            res.update(peak_bytes_one_frame=peak1, peak_bytes_batch=peak_n, chunk_unconstrained=c.chunk,
                       working_shape=list(working_shape(h, w, c.spec.working_size)))
            if c.chunk is not None:
                raise RuntimeError(f"the unconstrained run already ran out of memory (chunk {c.chunk})")
            # Leave room for about a quarter of the batch's peak: the whole batch cannot fit, a few frames can.
            headroom = max(peak_n // 4, 4 * peak1)
            torch.cuda.empty_cache()
            free, total = torch.cuda.mem_get_info(dev)
            fillers.append(torch.empty(max(0, free - headroom), dtype=torch.uint8, device=dev))
            res.update(total_bytes=total, filler_bytes=fillers[0].numel(), headroom_bytes=headroom,
                       free_bytes_after_fill=torch.cuda.mem_get_info(dev)[0])
            t = time.perf_counter()
            try:
                out = c.chroma(y, (h, w), MATRIX)
            except OutOfMemory as exc:
                raise RuntimeError(f"even one frame did not fit: {one_line(exc)}") from None
            except torch.OutOfMemoryError as exc:
                raise RuntimeError(f"torch.OutOfMemoryError escaped the retry (raised outside _network?): "
                                   f"{one_line(exc)}") from None
            sync(dev)
            res["retry_seconds"] = time.perf_counter() - t
            res["chunk_after"] = c.chunk
            res["max_abs_diff"] = float((out.double() - ref.double()).abs().max())
            res["ran_out"] = c.chunk is not None
            res["chunk_smaller"] = c.chunk is not None and c.chunk < n
            res["equal"] = res["max_abs_diff"] <= OOM_TOL
            # A later call starts at the smaller chunk and still gives the same colours.
            again = c.chroma(y, (h, w), MATRIX)
            res["later_call_chunk"] = c.chunk
            res["later_call_max_abs_diff"] = float((again.double() - ref.double()).abs().max())
            del out, again
            # Now the GPU full but for a quarter of one frame's need: one frame is too big for one call.
            torch.cuda.empty_cache()
            free = torch.cuda.mem_get_info(dev)[0]
            fillers.append(torch.empty(max(0, free - max(peak1 // 4, 4 << 20)), dtype=torch.uint8, device=dev))
            res["free_bytes_for_one_frame"] = torch.cuda.mem_get_info(dev)[0]
            try:
                c.chroma(y[:1], (h, w), MATRIX)
                res["one_frame_error"] = None
            except OutOfMemory as exc:
                res["one_frame_error"] = str(exc)
            except torch.OutOfMemoryError as exc:
                res["one_frame_error"] = f"raw torch.OutOfMemoryError (not vidcolor's): {one_line(exc)}"
            msg = res["one_frame_error"]
            res["one_frame_error_ok"] = bool(msg) and "\n" not in msg and "ran out of memory" in msg \
                and not msg.startswith("raw")
            fillers.clear()
            torch.cuda.empty_cache()
            # And the colorizer works again once memory is back.
            after = c.chroma(y[:1], (h, w), MATRIX)
            res["recovered_max_abs_diff"] = float((after.double() - ref[:1].double()).abs().max())
    finally:
        fillers.clear()
        torch.cuda.empty_cache()
    ok = res["ran_out"] and res["chunk_smaller"] and res["equal"] and res["one_frame_error_ok"] \
        and res["later_call_max_abs_diff"] <= OOM_TOL and res["recovered_max_abs_diff"] <= OOM_TOL
    res["status"] = "ok" if ok else "fail"
    res["summary"] = (f"oom: batch {n} of {w}x{h} with {headroom / 2**20:.0f} MiB free -> chunk {c.chunk} "
                      f"(ran out: {res['ran_out']}), max diff vs unconstrained {res['max_abs_diff']:.2g} "
                      f"(tol {OOM_TOL:g}); one frame too big -> "
                      f"{'one-line OutOfMemory' if res['one_frame_error_ok'] else repr(msg)}; "
                      f"{'OK' if ok else 'FAIL'}")
    return res


# --------------------------------------------------------------------------
# 3. VapourSynth filter
# --------------------------------------------------------------------------


def check_vs(ctx: Ctx) -> dict:
    try:
        import vapoursynth as vs

        from vidcolor.plugins.vs import colorize
    except ImportError as exc:
        return {"skipped": True, "status": "skipped", "reason": f"VapourSynth is not importable: {one_line(exc)}"}
    core = vs.core
    # batch >= 2: the filter's batch=1 fails (SelectEvery cycle 1). --quick: two blocks, square frames.
    (w, h), length, batch = ((64, 64), 4, 2) if ctx.quick else ((320, 240), 12, 4)
    base = core.std.BlankClip(width=w, height=h, format=vs.GRAY8, length=length, fpsnum=24, fpsden=1)

    def fill(n, f):
        g = f.copy()
        np.copyto(np.asarray(g[0]), np.round(16 + 219 * picture(h, w, shift=5 * n)).astype(np.uint8))
        return g

    gray = core.std.ModifyFrame(base, base, fill)
    clips = {"yuv420p8": core.resize.Bicubic(gray, format=vs.YUV420P8)}
    if not ctx.quick:
        clips = {"gray8": gray, **clips}

    def frames(clip, reverse=False, **kw):
        node = colorize(clip, batch=batch, output="yuv", **kw)
        order = reversed(range(length)) if reverse else range(length)
        got = {n: [np.asarray(node.get_frame(n)[p]).astype(np.float64) for p in (1, 2)] for n in order}
        return [got[n] for n in range(length)]

    def diff(a, b):
        d = np.concatenate([(x - y).ravel() for fa, fb in zip(a, b) for x, y in zip(fa, fb)])
        return float(np.abs(d).max()), float(np.abs(d).mean())

    dev = str(ctx.device)
    dtypes = [None, "float32"] if ctx.cuda else [None]
    res = {"device": dev, "clips": list(clips), "size": f"{w}x{h}", "frames": length, "batch": batch,
           "units": "8-bit chroma codes", "results": {}}
    if not ctx.cuda:
        res["note"] = "device under test is the CPU: the device-vs-CPU difference is trivially 0"
    ok = True
    parts = []
    for name, clip in clips.items():
        ref = frames(clip, device="cpu")
        for dtype in dtypes:
            label = f"{name}/{dtype or 'default'}"
            fwd = ref if not ctx.cuda else frames(clip, device=dev, dtype=dtype)
            rev = frames(clip, reverse=True, device=dev, dtype=dtype)
            mx, mean = diff(fwd, ref)
            rmx, _ = diff(rev, fwd)
            limit_ok = (mx <= VS_MAX_CODES_F32) if dtype == "float32" else (mean <= VS_MEAN_CODES_LOW)
            good = limit_ok and rmx == 0
            ok &= good
            res["results"][label] = {"max_diff_vs_cpu": mx, "mean_diff_vs_cpu": mean,
                                     "reverse_order_max_diff": rmx, "ok": good}
            parts.append(f"{label} max {mx:g} mean {mean:.3f}, reverse {'same' if rmx == 0 else f'DIFF {rmx:g}'}")
            print(f"  vs {label:<20} vs cpu: max {mx:g} mean {mean:.3f} codes; reverse order max diff {rmx:g}"
                  f"{'' if good else '  FAIL'}", flush=True)
    res["criteria"] = (f"float32: max <= {VS_MAX_CODES_F32} codes; default dtype: mean <= {VS_MEAN_CODES_LOW} "
                       "code; reverse order identical")
    res["status"] = "ok" if ok else "fail"
    res["summary"] = f"vs ({dev} vs cpu, codes): " + "; ".join(parts) + f"; {'OK' if ok else 'FAIL'}"
    return res


# --------------------------------------------------------------------------
# 4. 1080p fps
# --------------------------------------------------------------------------


def make_clip(path: pathlib.Path, w: int, h: int, frames: int) -> None:
    """A short H.264 clip of the moving synthetic picture."""
    import av

    big = np.round(16 + 219 * picture(h, w + 4 * frames)).astype(np.uint8)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.codec_context.options = {"crf": "18", "preset": "veryfast"}
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(big[:, 4 * i: 4 * i + w]), format="gray")
            f = f.reformat(format="yuv420p")
            f.pts = i
            out.mux(s.encode(f))
        out.mux(s.encode(None))


def ddcolor_weights(ctx: Ctx, name: str) -> pathlib.Path:
    """Synthetic weights in the official layout (tests/data/official), as benchmarks/bench_ddcolor.py uses."""
    import safetensors.torch

    sys.path.insert(0, str(ROOT / "tests"))
    from test_official import layout, synthetic_state_dict

    sd = synthetic_state_dict(layout(name.replace("-", "_")))
    path = ctx.tmp / f"{name}.synthetic.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


def check_fps(ctx: Ctx) -> dict:
    from vidcolor.io.engine import colorize_video
    from vidcolor.planes import colorize_codes

    (w, h), pool, clip_frames, batch, seconds = ((64, 64), 2, 2, 2, 0.0) if ctx.quick else \
        ((1920, 1080), 32, 96, 8, 3.0)
    ddcolor = ctx.args.ddcolor or (None if ctx.quick else "ddcolor-large")
    if ddcolor == "none":
        ddcolor = None
    configs = [("default", "float16"), ("default", "bfloat16")] + ([(ddcolor, "float16")] if ddcolor else [])
    res = {"size": f"{w}x{h}", "batch": batch, "clip_frames": clip_frames, "results": {},
           "definitions": {"memory_fps": "uint8 luma codes in CPU memory -> chroma codes in CPU memory "
                                         "(vidcolor.planes.colorize_codes, the engine's model stage)",
                           "device_fps": "luma already on the device -> chroma on the device (Colorizer.chroma)",
                           "end_to_end_fps": "colorize_video on an H.264 clip, default encoder (libx264 medium)"}}
    if not ddcolor:
        res["ddcolor_skipped"] = ("--quick: ddcolor-large's 228M synthetic weights take over a minute to build "
                                  "on a small CPU; pass --ddcolor ddcolor-tiny (or ddcolor-large) to run it")
    clip = ctx.tmp / "clip1080.mp4"
    t = time.perf_counter()
    make_clip(clip, w, h, clip_frames)
    res["clip_seconds"] = time.perf_counter() - t
    codes = np.stack([np.round(16 + 219 * picture(h, w, shift=16 * i)).astype(np.uint8) for i in range(pool)])
    csize = (h // 2, w // 2)
    failed, parts = [], []
    for model, dtype in configs:
        label = f"{model}/{dtype}"
        if ctx.left() < 30:
            res["results"][label] = {"skipped": True, "reason": "time budget spent"}
            parts.append(f"{label} skipped (time)")
            continue
        r = res["results"][label] = {}
        weights = None
        try:
            if model.startswith("ddcolor"):
                t = time.perf_counter()
                weights = ddcolor_weights(ctx, model)
                r["synthetic_weights_seconds"] = time.perf_counter() - t
            t = time.perf_counter()
            c = ctx.colorizer(model, dtype, batch=batch, weights=weights)
            r["model"], r["load_seconds"] = c.name, time.perf_counter() - t
            if not ctx.quick:
                colorize_codes(c, codes[:batch], csize, 8, False, MATRIX)  # warm-up: kernels, allocator
                sync(ctx.device)
            done, t = 0, time.perf_counter()
            while done == 0 or time.perf_counter() - t < seconds:
                for i in range(0, pool, batch):
                    colorize_codes(c, codes[i:i + batch], csize, 8, False, MATRIX)
                    done += len(codes[i:i + batch])
            r["memory_fps"] = done / (time.perf_counter() - t)
            y_dev = torch.from_numpy(codes[:batch]).to(ctx.device)[:, None].float().sub_(16).div_(219)
            if not ctx.quick:
                c.chroma(y_dev, csize, MATRIX)
                sync(ctx.device)
            done, t = 0, time.perf_counter()
            while done == 0 or time.perf_counter() - t < seconds:
                c.chroma(y_dev, csize, MATRIX)
                done += batch
            sync(ctx.device)
            r["device_fps"] = done / (time.perf_counter() - t)
            t = time.perf_counter()
            stats = colorize_video(clip, ctx.tmp / f"out-{model}-{dtype}.mp4", c, progress=False)
            r["end_to_end_fps"] = stats.frames / (time.perf_counter() - t)
            r["end_to_end_frames"] = stats.frames
            r["ratio_end_to_end_to_memory"] = r["end_to_end_fps"] / r["memory_fps"]
            r["ratio_memory_to_device"] = r["memory_fps"] / r["device_fps"]
            if stats.frames != clip_frames:
                raise RuntimeError(f"the engine wrote {stats.frames} frames of {clip_frames}")
            parts.append(f"{label} {r['memory_fps']:.1f} mem / {r['device_fps']:.1f} dev / "
                         f"{r['end_to_end_fps']:.1f} e2e fps")
            print(f"  fps {label:<22} memory {r['memory_fps']:8.2f}  device {r['device_fps']:8.2f}  end-to-end "
                  f"{r['end_to_end_fps']:8.2f} fps  (e2e/memory {r['ratio_end_to_end_to_memory']:.2f}, "
                  f"memory/device {r['ratio_memory_to_device']:.2f})", flush=True)
        except Exception as exc:  # noqa: BLE001 - reported; the other configurations still run
            r["error"] = one_line(exc)
            failed.append(label)
            parts.append(f"{label} ERROR {one_line(exc)}")
            print(f"  fps {label}: ERROR {one_line(exc)}", flush=True)
        finally:
            if model.startswith("ddcolor"):
                ctx.drop(model, weights)
    for model in ("default",):
        d16, b16 = (res["results"].get(f"{model}/{d}", {}) for d in ("float16", "bfloat16"))
        if "memory_fps" in d16 and "memory_fps" in b16:
            res[f"ratio_{model}_bf16_to_fp16_memory"] = b16["memory_fps"] / d16["memory_fps"]
            res[f"ratio_{model}_bf16_to_fp16_end_to_end"] = b16["end_to_end_fps"] / d16["end_to_end_fps"]
    res["status"] = "error" if failed else "ok"
    res["summary"] = f"fps {w}x{h} batch {batch}: " + "; ".join(parts)
    return res


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

SECTIONS = {"precision": check_precision, "oom": check_oom, "vs": check_vs, "fps": check_fps}


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cuda[:N] (default) or cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few frames: a smoke test")
    p.add_argument("--only", default=",".join(SECTIONS), help="comma-separated checks (default: all)")
    p.add_argument("--models", nargs="+", help="precision: these models instead of the shipped ones")
    p.add_argument("--ddcolor", help="fps: the DDColor model (default ddcolor-large; none in --quick), or none")
    p.add_argument("--budget", type=float, default=270.0, help="seconds after which later items are skipped")
    p.add_argument("--json", help="output file (default $OUT/gpu.json, else benchmarks/results/gpu.json)")
    args = p.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        p.error(f"--only {','.join(unknown)}: choose from {','.join(SECTIONS)}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"gpu_checks: --device {args.device} but no CUDA GPU is visible; "
              "use --device cpu --quick for a smoke test", file=sys.stderr)
        return 2
    if args.json:
        path = pathlib.Path(args.json)
    elif os.environ.get("OUT"):
        path = pathlib.Path(os.environ["OUT"]) / "gpu.json"
    else:
        path = ROOT / "benchmarks" / "results" / "gpu.json"
    path.parent.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    ctx = Ctx(args)
    meta = {"device": str(ctx.device), "quick": args.quick, "torch": torch.__version__,
            "python": platform.python_version(), "commit": git_commit(), "default_model": DEFAULT_MODEL,
            "cpu_threads": torch.get_num_threads(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if ctx.cuda:
        meta.update(gpu=torch.cuda.get_device_name(ctx.device), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), gpu_memory_bytes=torch.cuda.mem_get_info(ctx.device)[1],
                    tf32_cudnn=torch.backends.cudnn.allow_tf32, tf32_matmul=torch.backends.cuda.matmul.allow_tf32)
    print(f"gpu_checks on {meta.get('gpu', ctx.device)} (torch {torch.__version__}"
          f"{', quick' if args.quick else ''}) -> {path}", flush=True)
    results: dict = {"meta": meta}
    for name in SECTIONS:
        if name not in only:
            results[name] = {"skipped": True, "status": "skipped", "reason": f"not in --only {args.only}",
                             "summary": f"{name}: skipped (--only)"}
            continue
        t = time.perf_counter()
        print(f"[{name}]", flush=True)
        try:
            res = SECTIONS[name](ctx)
        except Exception as exc:  # noqa: BLE001 - the JSON says what broke; the other checks still run
            traceback.print_exc()
            res = {"status": "error", "error": one_line(exc), "summary": f"{name}: ERROR {one_line(exc)}"}
        if res.get("skipped"):
            res.setdefault("summary", f"{name}: skipped ({res['reason']})")
        res["seconds"] = time.perf_counter() - t
        results[name] = res
        meta["seconds"] = time.perf_counter() - start
        path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print("summary:", flush=True)
    for name in SECTIONS:
        print(f"  {results[name]['status'].upper():<8} {results[name]['summary']}")
    bad = [n for n in SECTIONS if results[n]["status"] not in ("ok", "skipped")]
    print(f"total {meta['seconds']:.1f} s; {'all checks passed' if not bad else 'NOT OK: ' + ', '.join(bad)}; "
          f"JSON: {path}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
