"""The VapourSynth filter: a thin adapter over `vidcolor.colorizer.Colorizer`.

Frames are colorized in fixed blocks of ``batch`` consecutive frames
(0..B-1, B..2B-1, ...). Whichever VapourSynth thread first asks for a frame of
a block runs the model once on the whole block; the threads asking for the
block's other frames wait for it and take their frame from the block's result.
The block's frames reach the filter through B helper clips (clip ``i`` shows,
at frame n, source frame ``n // B * B + i``), so VapourSynth fetches them with
its own threads and caches; no nested ``get_frame`` is needed. One model call
runs at a time per loaded model (a lock); the blocks never depend on the
request order or the thread count, so the output is identical whether frames
are asked for in order, backwards, at random or from many threads.

With ``temporal="stabilize"`` the filter also receives, through more helper
clips, the source frames of the whole blocks covering the 2K - 1 frames before
each block (K = 44), and the block is served by a `vidcolor.temporal.Stabilizer`
chain from a restart point that depends on the block alone: the last multiple
of K at least K frames before the block's first frame, or the last
``_SceneChangePrev`` after it. A chain's state after each block is kept, so on
sequential access the next block continues it; any other order reruns the
chain from its restart point, with the same numbers. The model's own
predictions are made per whole block (so the same block always gives the same
numbers) and the recent ones are kept, so sequential access runs the model once
per frame. The model sees each frame's luma deflickered as in the CLI
(`vidcolor.temporal.Deflicker`), whose answer depends on the 16 frames up to it
and the cuts among them; the scene-cut detector's answer for a frame depends on
the 26 frames before it; both, and the lumas at the working size, are computed
once per frame and kept while the blocks that need them run. So the helper
clips carry 2K - 1 + 16 + 26 frames (plus one block) before each block.

A temporal model (``temporal_unet``: it takes the previous coloured frame as
input) runs its recurrence in chains that restart on a fixed grid: the chain
serving a block starts at r = the last multiple of K at least W = K/2 frames
before the block's first frame, or at the last ``_SceneChangePrev`` after that
(the model's own scene-cut detector also restarts it inside a chain). A chain's
state after each block is kept, so on sequential access the next block
continues it (the model runs about (K + W) / K times per frame); any other
order recomputes the chain from r, with the same numbers.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import os
import sys
import threading

import numpy as np
import torch
import vapoursynth as vs

from vidcolor import color
from vidcolor.colorizer import working_shape
from vidcolor.errors import VidcolorError, one_line
from vidcolor.planes import chroma_codes, luma_unit, unit_codes
from vidcolor.temporal.chains import Chains, Recent, restart_point

from .blocks import MAX_PENDING_BLOCKS, Blocks, block_clips, history_clips
from .formats import MODEL_PROP, check_input, convert, full_range, matrix_of, resolve_output, set_props, vs_error, \
    vs_wording

__all__ = ["MODEL_PROP", "colorize", "script_arg", "script_source"]
core = vs.core

def script_arg(namespace: dict, name: str, default=None):
    """A ``vspipe -a name=value`` argument of a .vpy script (``globals()``); older VapourSynth passes bytes."""
    value = namespace.get(name, default)
    return value.decode() if isinstance(value, bytes) else value


def script_source(namespace: dict, script: str) -> str:
    """The ``src`` argument of a .vpy script as the user meant it.

    vspipe runs a script from the script's own folder, so ``src=film.mkv``
    would be looked for there; a relative path is taken from the folder vspipe
    was started in instead ($PWD, which the shell set and vspipe leaves alone).
    """
    src = script_arg(namespace, "src")
    if not src:
        raise vs.Error(f"{script}: give the video with vspipe -a src=film.mkv")
    start = os.environ.get("PWD")
    if not os.path.isabs(src) and start and os.path.exists(os.path.join(start, src)):
        src = os.path.join(start, src)
    if not os.path.exists(src):
        raise vs.Error(f"{script}: src={src}: no such file; give the video's path (relative to where vspipe runs)")
    return src


# --------------------------------------------------------------------------
# models: loaded once per (model, weights, device, dtype, batch), shared by every call
# --------------------------------------------------------------------------

_models: dict[tuple, tuple[object, threading.Lock]] = {}
_models_lock = threading.Lock()


def _load(model: str, weights, device: str, dtype, batch: int):
    from vidcolor.colorizer import Colorizer
    from vidcolor.runtime import Runtime

    key = (model, None if weights is None else os.fspath(weights), device, dtype, batch)
    with _models_lock:
        if key not in _models:
            # vspipe writes the video to stdout: anything a loader prints goes to stderr.
            with contextlib.redirect_stdout(sys.stderr):
                runtime = Runtime(device=device, dtype=dtype, batch=batch)
                runtime.torch_device  # noqa: B018 - validates device= now, not at the first frame
                runtime.autocast_dtype  # noqa: B018 - validates dtype=
                _models[key] = (Colorizer(model, weights, runtime), threading.Lock())
        return _models[key]


# --------------------------------------------------------------------------
# per-frame colour facts
# --------------------------------------------------------------------------


# --------------------------------------------------------------------------
# the block computation
# --------------------------------------------------------------------------


class _Filter:
    """The colorize() node's state: how to read, run and write one block."""

    def __init__(self, colorizer, model_lock, src: vs.VideoNode, out_fmt: vs.VideoFormat, name: str, batch: int,
                 window: int = 0):
        self.colorizer, self.model_lock, self.src, self.name = colorizer, model_lock, src, name
        self.fin, self.fout = src.format, out_fmt
        self.batch = batch
        #: temporal="stabilize": at most how many frames before each block the stabilizer restarts
        self.window = window
        #: source frames before each block its computation receives (whole blocks), else 0: the
        #: stabilizer's window, and before its first model block the deflicker's window and the
        #: scene-cut detector's look-back (see `_exposure`)
        self.history = 0
        if window:
            from vidcolor.temporal import Deflicker, SceneCutDetector

            # a chain starts up to 2 * window - 1 frames before a block (`_stabilized_ab`)
            need = 2 * window - 1 + batch - 1 + Deflicker().window - 1 + SceneCutDetector().lookback
            self.history = -(-need // batch) * batch
            # (restart frame, next frame) -> the chain's Stabilizer, having run up to that frame
            self.stab_chains = Chains(MAX_PENDING_BLOCKS)
        # the model's fresh ab (CPU float32, working size) of recent blocks, by block number
        self.fresh: collections.OrderedDict[int, torch.Tensor] = collections.OrderedDict()
        self.fresh_lock = threading.Lock()
        self.fresh_keep = self.history // batch + 2
        # per source frame: the luma at the working size and the scene-cut detector's answer
        self.smalls = Recent(self.history + 4 * batch)
        self.cuts = Recent(self.history + 4 * batch)
        #: a temporal model: restart grid K, warm-up W, detector look-back (see the module docstring)
        self.recurrent = colorizer.temporal
        if self.recurrent:
            from vidcolor.temporal import SceneCutDetector, warmup_frames

            self.grid = warmup_frames()
            self.warm = self.grid // 2
            self.lookback = SceneCutDetector().lookback
            self.history = -(-(self.grid + self.warm + self.lookback) // batch) * batch
            # (restart frame, next frame) -> the chain's Recurrence state before that frame
            self.chains = Chains(MAX_PENDING_BLOCKS)
        self.blocks = Blocks(self._compute)
        self.started: collections.deque[int] = collections.deque(maxlen=4)  # blocks whose model run began

    def _prefetch(self, b: int) -> None:
        """Called as block b's model run starts: on sequential access, ask VapourSynth for the
        source frames of block b+1 now, so that decoding and the filters before this one run in
        other threads while the model is busy. Only source frames are asked for (never this
        filter's own), so at most one block is fetched ahead, and the results do not change."""
        sequential = b - 1 in self.started
        self.started.append(b)
        first = (b + 1) * self.batch
        if sequential and first < self.src.num_frames:
            for k in range(first, min(first + self.batch, self.src.num_frames)):
                self.src.get_frame_async(k).add_done_callback(_swallow)

    # Inputs: luma (and RGB) tensors in 0..1 ------------------------------------------------
    def _luma(self, frames, full: bool) -> torch.Tensor:
        fmt = self.fin
        planes = np.stack([np.asarray(f[0]) for f in frames])
        if fmt.sample_type == vs.FLOAT:
            return torch.from_numpy(planes.astype(np.float32))[:, None].clamp_(0.0, 1.0)
        return luma_unit(planes, fmt.bits_per_sample, full)

    def _rgb(self, frames) -> torch.Tensor:
        fmt = self.fin
        rgb = np.stack([np.stack([np.asarray(f[p]) for p in range(3)]) for f in frames]).astype(np.float32)
        rgb = torch.from_numpy(rgb)
        if fmt.sample_type == vs.INTEGER:
            rgb /= (1 << fmt.bits_per_sample) - 1
        return rgb.clamp_(0.0, 1.0)

    def _chroma(self, b: int, y: torch.Tensor, size, matrix: str, numbers) -> torch.Tensor:
        with self.model_lock:
            if b not in self.started:
                self._prefetch(b)
            return self.colorizer.chroma(y, size, matrix, frames=numbers)

    def _out_planes(self, x: torch.Tensor, full: bool, chroma: bool) -> np.ndarray:
        fmt = self.fout
        if fmt.sample_type == vs.FLOAT:
            dt = np.float16 if fmt.bits_per_sample == 16 else np.float32
            return x.float().cpu().numpy().astype(dt)
        if chroma:
            return chroma_codes(x, fmt.bits_per_sample, full)
        return unit_codes(x, fmt.bits_per_sample)

    # One block: list of source frames -> list of per-frame (planes, matrix, full) --------
    def _compute(self, b: int, frames, history=None):
        fin, fout = self.fin, self.fout
        h, w = self.src.height, self.src.width
        if history is None:
            ab = None
        elif self.recurrent:
            ab = self._recurrent_ab(b, frames, history)
        else:
            ab = self._stabilized_ab(b, frames, history)
        groups: dict[tuple[str, bool], list[int]] = {}
        for k, f in enumerate(frames):
            key = (matrix_of(f.props, h), full_range(f.props, fin))
            groups.setdefault(key, []).append(k)
        result: list = [None] * len(frames)
        for (matrix, full), idx in groups.items():
            sel = [frames[k] for k in idx]

            def chroma(y, size):
                if ab is None:
                    return self._chroma(b, y, size, matrix, [b * self.batch + k for k in idx])
                return self._chroma_of_ab(ab[idx], y, size, matrix)

            if fout.color_family == vs.YUV:  # YUV -> YUV, GRAY -> YUV444: Y is kept
                y = self._luma(sel, full)
                size = (h >> fout.subsampling_h, w >> fout.subsampling_w)
                planes = self._out_planes(chroma(y, size), full, chroma=True)
            else:  # GRAY -> RGB, RGB -> RGB: the new RGB has the luma of the old
                if fin.color_family == vs.RGB:
                    rgb = self._rgb(sel)
                    y = color.luma(rgb, matrix)
                else:
                    y = self._luma(sel, full)
                cbcr = chroma(y, (h, w))
                out = color.ycbcr_to_rgb(y.to(cbcr.device), cbcr, matrix)
                planes = self._out_planes(out, True, chroma=False)
            for j, k in enumerate(idx):
                result[k] = (planes[j], matrix, full)
        return result

    # temporal="stabilize" -------------------------------------------------------------------
    def _lumas(self, frames) -> torch.Tensor:
        """Luma (N,1,H,W) in 0..1 of each frame, read with the frame's own range and matrix."""
        h = self.src.height
        out = [None] * len(frames)
        for k, f in enumerate(frames):
            if self.fin.color_family == vs.RGB:
                out[k] = color.luma(self._rgb([f]), matrix_of(f.props, h))
            else:
                out[k] = self._luma([f], full_range(f.props, self.fin))
        return torch.cat(out)

    def _small(self, first: int, frames, start: int | None = None) -> np.ndarray:
        """Luma at the model's working size (N, h, w), as `Colorizer.predict_ab` makes it, of source
        frames ``start`` (default ``first``) .. the end of ``frames``, which are frames ``first`` ...
        Kept per frame number: the blocks' histories overlap."""
        start = first if start is None else start
        out = []
        for n in range(start, first + len(frames)):
            small = self.smalls.get(n)
            if small is None:
                small = self._keep_small(n, self._lumas([frames[n - first]]))[0]
            out.append(small)
        return np.stack(out)

    def _keep_small(self, first: int, y: torch.Tensor) -> np.ndarray:
        """The working-size luma of frames ``first`` ... from their luma ``y`` (N,1,H,W, on the CPU:
        the same numbers whichever path reads a frame first), remembered per frame number."""
        size = working_shape(self.src.height, self.src.width, self.colorizer.spec.working_size)
        small = self.colorizer.working_luma(y, size)
        for k, plane in enumerate(small):
            self.smalls.put(first + k, plane)
        return small

    def _detected(self, first: int, frames, start: int) -> list[bool]:
        """The scene-cut detector's answers for source frames ``start`` .. the end of ``frames`` (frames
        ``first`` ...), as one sequential run gives them: frame t's depends on frames t - lookback .. t
        alone, so a detector started ``lookback`` frames before the first unknown one gives them all."""
        from vidcolor.temporal import SceneCutDetector

        end = first + len(frames)
        missing = next((n for n in range(start, end) if self.cuts.get(n) is None), None)
        if missing is not None:
            det = SceneCutDetector()
            begin = max(0, missing - det.lookback)
            assert begin >= first, f"the history is too short: frames from {begin} needed, {first} given"
            for n, small in zip(range(begin, end), self._small(first, frames, begin)):
                found = det.update(small)
                if n >= missing:
                    self.cuts.put(n, found)
        return [self.cuts.get(n) for n in range(start, end)]

    def _exposure(self, q: int, before, frames) -> np.ndarray | None:
        """The deflicker's (gain, offset) for block q's model input, as a sequential --stabilize run
        computes them: its answer for frame t depends on frames t - window + 1 .. t and the cuts among
        them, the detector's answer on the ``lookback`` frames before, all in ``before`` + ``frames``."""
        from vidcolor.temporal import SceneCutDetector, Stabilizer

        stab = Stabilizer(detector=None)
        if stab.deflicker is None:
            return None
        s = q * self.batch
        a = max(0, s - stab.deflicker.window + 1)
        first = max(0, a - SceneCutDetector().lookback)
        seq = list(before)[len(before) - (s - first):] + list(frames) if s > first else list(frames)
        cuts = [bool(int(f.props.get("_SceneChangePrev", 0))) for f in seq[a - first:]]
        return stab.prepare(self._small(first, seq, a), cuts, self._detected(first, seq, a))[1][s - a:]

    def _fresh_ab(self, q: int, frames, before=()) -> torch.Tensor:
        """The model's own ab of block q (its frames given, and the source frames ``before`` it for the
        deflicker), always computed on the whole block in one call, so the same block gives the same
        numbers whoever asks; kept for a while because the next blocks' stabilizer runs start before them."""
        with self.fresh_lock:
            ab = self.fresh.get(q)
            if ab is not None:
                self.fresh.move_to_end(q)
                return ab
            y = self._lumas(frames)
            # the deflicker needs the block's working-size luma: made from this read, not a second one
            if any(self.smalls.get(q * self.batch + k) is None for k in range(len(frames))):
                self._keep_small(q * self.batch, y)
            exposure = self._exposure(q, before, frames)
            y = y.to(self.colorizer.device)
            with self.model_lock:
                if q not in self.started:
                    self._prefetch(q)
                ab = self.colorizer.predict_ab(y, frames=range(q * self.batch, q * self.batch + len(frames)),
                                               exposure=exposure)
                ab = ab.to("cpu", torch.float32)
            self.fresh[q] = ab
            while len(self.fresh) > self.fresh_keep:
                self.fresh.popitem(last=False)
            return ab

    def _stabilized_ab(self, b: int, frames, history) -> torch.Tensor:
        """Stabilized ab of block b: the Stabilizer chain that serves it, from its restart frame r.

        With s the block's first frame and K the window, chains start on a grid: g = the last
        multiple of K at least K frames before s (or 0); r = the last frame from g to s whose
        _SceneChangePrev is set, else g. So r depends on the block alone, and at least K frames
        (or the clip's start, or a marked cut) lie between r and s. The chain's state after each
        block is kept: on sequential access the next block continues it, and the stabilizer steps
        through about 2 frames per frame; any other order reruns the chain from r, identically."""
        from vidcolor.temporal import Stabilizer

        B, s, K = self.batch, b * self.batch, self.window
        lo = max(0, s - self.history)
        hist = list(history[len(history) - (s - lo):]) if s > lo else []
        allf = hist + list(frames)  # source frames lo .. block end
        cuts = [bool(int(f.props.get("_SceneChangePrev", 0))) for f in allf]
        r = restart_point(s, K, K, lo, cuts)
        stab = self.stab_chains.take(r, s)
        start = s if stab is not None else r
        stab = stab or Stabilizer(detector=None)
        q0 = start // B * B
        ab = torch.cat([self._fresh_ab(q // B, allf[q - lo:q - lo + B] if q < s else frames, allf[:q - lo])
                        for q in range(q0, s + 1, B)])[start - q0:]
        # the detector's answers come from the frames before the restart too, as in one long run
        flags = [c or d for c, d in zip(cuts[start - lo:], self._detected(lo, allf, start))]
        out = stab.run(self._small(lo, allf, start), ab.numpy(), flags)
        self.stab_chains.keep(r, s + len(frames), stab)
        return torch.from_numpy(np.stack(out[len(out) - len(frames):]))

    def _recurrent_ab(self, b: int, frames, history) -> torch.Tensor:
        """A temporal model's ab of block b: its chain from restart r, continued when kept."""
        from vidcolor.temporal import Recurrence

        s, K, W = b * self.batch, self.grid, self.warm
        lo = max(0, s - self.history)
        allf = (list(history[len(history) - (s - lo):]) if s > lo else []) + list(frames)
        cuts = [bool(int(f.props.get("_SceneChangePrev", 0))) for f in allf]
        r = restart_point(s, K, W, lo, cuts)
        twin = self.colorizer.fresh()
        with self.model_lock:
            state = self.chains.take(r, s)
            if state is None:  # from the restart point; the detector sees the frames before it
                twin.recurrence = Recurrence()
                first = max(0, r - self.lookback)
                if r > first:
                    twin.prime(self._lumas(allf[first - lo:r - lo]))
                run, run_cuts = allf[r - lo:], cuts[r - lo:]
            else:
                twin.recurrence = state
                run, run_cuts = list(frames), cuts[s - lo:]
            if b not in self.started:
                self._prefetch(b)
            ab = twin.predict_ab(self._lumas(run).to(self.colorizer.device), run_cuts).to("cpu", torch.float32)
            self.chains.keep(r, s + len(frames), copy.deepcopy(twin.recurrence))
        return ab[len(ab) - len(frames):]

    def _chroma_of_ab(self, ab: torch.Tensor, y: torch.Tensor, size, matrix: str) -> torch.Tensor:
        """`Colorizer.chroma` from ab already predicted (and stabilized)."""
        with torch.inference_mode():
            y = y.to(self.colorizer.device).float()
            ab = color.resize(ab.to(self.colorizer.device), size)
            return color.chroma_for_luma(color.resize(y, size, "area"), ab, matrix)

    # The ModifyFrame selector ----------------------------------------------------------------
    def select(self, n: int, f):
        frames = f if isinstance(f, list) else [f]
        blank = None
        if self.fout.color_family != self.fin.color_family:
            blank, frames = frames[0], frames[1:]
        history = None
        if self.history:
            history, frames = frames[len(frames) - self.history:], frames[:len(frames) - self.history]
        b, i = divmod(n, self.batch)
        size = min(self.batch, self.src.num_frames - b * self.batch)
        planes, matrix, full = self.blocks.get(b, i, size, frames, history)
        src = frames[i]
        first = 1 if self.fout.color_family == vs.YUV else 0  # YUV: Y is the input's
        fout = src.copy() if blank is None else blank.copy()
        if blank is not None and first:  # GRAY -> YUV
            np.copyto(np.asarray(fout[0]), np.asarray(src[0]))
        for p, plane in enumerate(planes, start=first):
            np.copyto(np.asarray(fout[p]), plane)
        rgb = self.fout.color_family == vs.RGB
        set_props(fout, src.props, matrix, rgb, True if rgb else full, self.name, copy_props=blank is not None)
        return fout


def _swallow(fut) -> None:
    fut.exception()  # a prefetch's error shows again when the frame itself is asked for


def _temporal_window(temporal) -> int:
    """At most how many frames before each block a stabilizer restarts (0: no stabilization)."""
    if temporal is None or temporal is False:
        return 0
    if temporal is True or (isinstance(temporal, str) and temporal.lower() == "stabilize"):
        from vidcolor.temporal import warmup_frames

        return warmup_frames()
    raise vs_error(f"temporal={temporal!r}: use None (each frame alone) or 'stabilize' (True is the same)")


# --------------------------------------------------------------------------
# the public function
# --------------------------------------------------------------------------


def colorize(clip: vs.VideoNode, model: str = "default", weights: str | os.PathLike | None = None,
             device: str = "auto", dtype: str | None = None, batch: int | None = None, temporal=None,
             hints=None, output=None, reference=None) -> vs.VideoNode:
    """Colorize a grayscale (or faded) clip with a vidcolor model.

    Only the luminance of the input is read: Y of a YUV clip, the samples of a
    GRAY clip, or the luma of an RGB clip computed with the clip's matrix
    (``_Matrix``; BT.709 from 720 lines up and BT.601 below when untagged).
    A YUV clip keeps its Y plane bit for bit and gets new chroma in its own
    subsampling; an RGB clip gets RGB with the same luma. Frame properties are
    kept; ``_Matrix``, ``_Primaries``, ``_Transfer`` and ``_Range`` (H.273
    numbering: ``vs.RANGE_FULL`` = 1, ``vs.RANGE_LIMITED`` = 0) are set to
    describe the output, and ``vidcolor_Model`` names the model.

    :param clip: GRAY (8..16-bit integer, half or single float), YUV (any
        subsampling, 8..16-bit integer, half or single float) or RGB (8..16-bit
        integer e.g. RGB24/RGB48, half or single float). Constant format and size.
        Integer GRAY/YUV is limited range unless its ``_Range`` says full.
    :param model: name of a registered model (``vidcolor models`` lists them);
        ``"default"`` is the one the CLI uses.
    :param weights: path of a ``.safetensors`` or PyTorch ``state_dict`` file;
        None uses the weights shipped with the model.
    :param device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda[:N]"``.
    :param dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"``; None is float16
        autocast on CUDA and float32 on CPU.
    :param batch: frames per model call (default 8). The clip is colorized in
        fixed blocks of this many consecutive frames, each computed once,
        whatever the order or the threads that request them: the output does
        not depend on ``core.num_threads``.
    :param temporal: None colours each frame alone. ``"stabilize"`` (or True)
        steadies the colour over time with `vidcolor.temporal.Stabilizer`
        (the previous output's colour carried along optical flow, reset at
        scene cuts found on luma and where ``_SceneChangePrev`` is set; old
        film's exposure flicker is taken out of what the model sees). Each
        block is served by a stabilizer chain whose restart point depends on
        the block alone (this module's docstring says how), so the frames are
        the same whatever the request order or thread count. On sequential
        access the model runs once per frame and the stabilizer about twice.
        A temporal model (``model="temporal_unet"``) already sees its
        previous output: leave temporal=None with it.
    :param hints: user colour hints for a model that takes them (``model="siggraph17"``):
        the path of a JSON list of points (``{"frame": n, "x": px, "y": px,
        "color": "#rrggbb"}``, frame numbers of this clip) or of a PNG whose opaque
        pixels are hints on every frame (see `vidcolor.hints`).
    :param output: the output format: None gives the input's family (RGB of the
        same sample type for GRAY input), ``"rgb"`` or ``"yuv"`` choose the
        family (YUV 4:4:4 for GRAY or RGB input), or a VapourSynth format
        (e.g. ``vs.YUV420P10``), reached with ``core.resize`` after colorizing.
    :param reference: colour pictures whose colour is carried through the shots they match (see
        `vidcolor.temporal.reference`): an image path, a list of paths, or a clip of reference frames
        (RGB, YUV or GRAY... in colour). The clip's luma is read twice when the node is made (the shots
        and matches, the backward carry); each shot is then coloured whole, in order, at its first
        request, so the frames do not depend on the request order (`plugins.reference`). The colour
        is steadied already: leave temporal=None.
    :return: the colorized clip, same length, size and frame rate.
    """
    window = _check_arguments(clip, batch, device, temporal)  # before loading anything
    native, final = resolve_output(clip.format, output)
    try:
        from vidcolor.runtime import Runtime

        colorizer, model_lock = _load(model, weights, device, dtype, batch or Runtime.batch)
    except VidcolorError as exc:
        raise vs_error(vs_wording(one_line(exc))) from None
    if window and colorizer.temporal:
        raise vs_error(f"model={model!r} already conditions each frame on the previous one; "
                     "leave temporal=None with it")
    if hints is not None:
        colorizer = _with_hints(colorizer, model, hints)
    b = colorizer.runtime.batch
    filt = _make_filter(colorizer, model_lock, clip, native, b, window, reference)
    clips = block_clips(clip, b) + (history_clips(clip, b, filt.history) if filt.history else [])
    if native.id == clip.format.id:
        base = clip
    else:
        base = core.std.BlankClip(clip, format=native.id, keep=True)
        clips = [base] + clips
    out = core.std.ModifyFrame(base, clips, filt.select)
    return out if final is None else convert(out, final, clip)


def _check_arguments(clip, batch, device, temporal) -> int:
    """Refuse bad arguments in one line; the stabilizer's window (0: none)."""
    check_input(clip)
    window = _temporal_window(temporal)
    if batch is not None and (not isinstance(batch, int) or batch < 1):
        raise vs_error(f"batch={batch!r}: give a whole number of frames >= 1, e.g. batch=8")
    if not isinstance(device, str):
        raise vs_error(f"device={device!r}: use 'auto', 'cpu' or 'cuda[:N]'")
    return window


def _make_filter(colorizer, model_lock, clip, native, batch: int, window: int, reference):
    """The node's state: a plain or stabilized `_Filter`, or one that carries reference colour."""
    if reference is None:
        return _Filter(colorizer, model_lock, clip, native, colorizer.name, batch, window)
    if window:
        raise vs_error("reference= steadies the colour along the motion itself; leave temporal=None")
    from .reference import referenced_node

    reader = _Filter(colorizer, model_lock, clip, native, colorizer.name, batch, 0)
    return referenced_node(_Filter, colorizer, model_lock, clip, native, reference, batch,
                           lambda lo, hi: reader._lumas([clip.get_frame(k) for k in range(lo, hi)]))


def _with_hints(colorizer, model: str, hints):
    """A colorizer of this node with the user's hints (the loaded model is shared; the hints are the node's)."""
    from vidcolor.hints import Hints

    try:
        if not colorizer.spec.takes_hints:
            raise vs_error(f"model={model!r} takes no colour hints; use model='siggraph17' with hints=")
        hints = hints if isinstance(hints, Hints) else Hints.load(hints)
    except VidcolorError as exc:
        raise vs_error(vs_wording(one_line(exc))) from None
    return colorizer.fresh(hints=hints)


