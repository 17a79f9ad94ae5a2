"""The stabilizer: the previous output's colour carried along optical flow, blended with the fresh one."""

from __future__ import annotations

import math
import os
import queue
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch

from vidcolor.temporal.deflicker import Deflicker
from vidcolor.temporal.frames import as_plane, unit_float
from vidcolor.temporal.scenecut import SceneCutDetector

#: Weight of the motion-compensated previous output where it is fully trusted: a time constant near
#: 10 frames (benchmarks/results/stabilizer.md has the trials behind it).
DEFAULT_ALPHA = 0.9


def warmup_frames(alpha: float = DEFAULT_ALPHA, tolerance: float = 0.01) -> int:
    """Frames after which a frame's weight in the stabilized output is below ``tolerance``.

    The stabilizer carries at most ``alpha`` of the previous output into each
    frame, so frame t - k weighs at most ``alpha ** k`` in frame t. A front end
    that cannot run from the last cut (random access in VapourSynth) can start
    a fresh `Stabilizer` this many frames before the block it needs, on the
    same frames whatever the request order, and differ from an unbounded run
    by less than ``tolerance`` of the chroma's changes (44 frames at 0.9, 1%).
    """
    if not 0.0 < alpha < 1.0 or not 0.0 < tolerance < 1.0:
        raise ValueError("alpha and tolerance must be in (0, 1)")
    return math.ceil(math.log(tolerance) / math.log(alpha))


def _to_numpy_chroma(c) -> tuple[np.ndarray, object]:
    if isinstance(c, torch.Tensor):
        return c.detach().to("cpu", torch.float32).numpy(), c
    a = np.asarray(c)
    return a.astype(np.float32, copy=False), a


def _like(out: np.ndarray, ref) -> object:
    if isinstance(ref, torch.Tensor):
        return torch.from_numpy(out).to(device=ref.device, dtype=ref.dtype)
    return out.astype(ref.dtype, copy=False) if np.issubdtype(ref.dtype, np.floating) else out


def _warp_planes(planes, map_x: np.ndarray, map_y: np.ndarray) -> list[np.ndarray]:
    """Bilinear warps of float planes, one at a time: OpenCV's 2-channel float remap rounds the
    coordinates to 1/32 pixel (its 1-, 3- and 4-channel ones do not)."""
    return [cv2.remap(np.ascontiguousarray(p), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            for p in planes]


_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _flow_pool() -> ThreadPoolExecutor:
    """Worker threads for the forward flows (per process: a forked child gets its own).

    One per core, not one in all: stabilizers stepping at once (the VapourSynth
    filter's chains under ``core.num_threads`` > 1) would otherwise queue behind a
    single worker. The executor starts its threads on demand, up to that many.
    """
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        workers = max(1, len(os.sched_getaffinity(0)))
        _POOL = (os.getpid(), ThreadPoolExecutor(workers, thread_name_prefix="vidcolor-flow"))
    return _POOL[1]


class Stabilizer:
    """Temporal stabilizer for per-frame chroma (ab or Cb/Cr), any model.

    Before the model, `prepare` runs the scene-cut detector on each frame and
    the `Deflicker` (``deflicker``, on by default), whose gain and offset the
    model's input luma gets: old film's exposure flicker would otherwise
    change every fresh prediction. Then, for each frame, given its luma ``y``
    and the model's fresh chroma:

    1. Luminance flicker is compensated: the previous luma is given the
       current one's mean and standard deviation (a global gain and offset).
    2. OpenCV DIS optical flow on the two lumas (8-bit): backward (current to
       previous, the flow that carries the colour) at ``flow_scale`` of the
       chroma's size, forward (only for the check in 4) at ``check_scale``.
       DIS runs the MEDIUM preset with fewer iterations (``gd_iters``,
       ``var_iters``; None keeps the preset's). How the scales, tolerances and
       iterations were chosen: benchmarks/results/stabilizer.md.
    3. The previous OUTPUT chroma is warped onto the current frame with the
       backward flow.
    4. Confidence per pixel, 1 where the warp can be trusted and falling off
       smoothly outside:

       * forward-backward agreement (Sundaram et al. 2010, the criterion of
         `vidcolor.eval.metrics.FlickerMeter`): with ``r = |b + f(x+b)|^2`` and
         ``tol = fb_rel (|b|^2 + |f(x+b)|^2) + fb_abs`` (pixels of the
         chroma's grid), ``exp(-max(r - tol, 0) / tol)``, on the forward
         flow's grid;
       * luminance match after the flicker compensation:
         ``exp(-(max(|box(y - warped y_prev)| - luma_tol, 0) / luma_sigma)^2)``
         (luma in 0..1): occlusions, cuts the detector missed and local
         lighting changes fail it. ``box`` is the mean over ``diff_box`` x
         ``diff_box`` pixels of the signed difference: film grain, different
         in every frame, averages out, while an occlusion is a patch of one
         sign (``diff_box`` 5: see benchmarks/results/stabilizer.md);
       * the flow lands inside the frame.
    5. ``out = conf * alpha * warped + (1 - conf * alpha) * fresh``: an
       exponential average along the motion, time constant about
       ``1 / (1 - alpha)`` frames where the warp is trusted, the fresh
       prediction alone where it is not.

    The state is the previous frame's luma (at the chroma's size) and output.
    It is dropped at cuts: those `SceneCutDetector` finds (``detector``, on by
    default; pass ``detector=None`` to rely on external flags only), those
    passed as ``cut=True`` (e.g. VapourSynth's ``_SceneChangePrev``), at a
    change of frame size, and on `reset`. The output of frame t is then a
    pure function of the frames since the last reset.
    """

    def __init__(
        self,
        alpha: float = DEFAULT_ALPHA,
        *,
        detector: SceneCutDetector | None | bool = True,
        luma_tol: float = 0.03,
        luma_sigma: float = 0.04,
        fb_rel: float = 0.01,
        fb_abs: float = 16.0,
        diff_box: int = 5,
        flow_scale: float = 0.75,
        check_scale: float = 0.5,
        preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
        gd_iters: int | None = 8,
        var_iters: int | None = 3,
        deflicker: Deflicker | None | bool = True,
    ) -> None:
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha must be in [0, 1), got {alpha}")
        if diff_box < 1:
            raise ValueError(f"diff_box must be at least 1 (1: per pixel), got {diff_box}")
        self.alpha = float(alpha)
        if detector is True:
            detector = SceneCutDetector()
        self.detector: SceneCutDetector | None = detector or None
        self.luma_tol = float(luma_tol)
        self.luma_sigma = float(luma_sigma)
        self.fb_rel = float(fb_rel)
        self.fb_abs = float(fb_abs)
        self.flow_scale = float(flow_scale)
        self.check_scale = float(check_scale)
        self.diff_box = int(diff_box)
        if deflicker is True:
            deflicker = Deflicker()
        self.deflicker: Deflicker | None = deflicker or None
        # DIS instances, one per flow running at once (an instance is not safe to share between threads)
        self._dis_settings = (preset, gd_iters, var_iters)
        self._instances: queue.SimpleQueue = queue.SimpleQueue()
        self._grids: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        #: per step: whether it reset, and the mean confidence (for tests and reports)
        self.last: dict = {}
        self.reset()

    @staticmethod
    def _dis(preset: int, gd_iters: int | None, var_iters: int | None):
        flow = cv2.DISOpticalFlow_create(preset)
        if gd_iters is not None:
            flow.setGradientDescentIterations(int(gd_iters))
        if var_iters is not None:
            flow.setVariationalRefinementIterations(int(var_iters))
        return flow

    def reset(self) -> None:
        """Forget the previous frame and the detector's history (a new video or a seek)."""
        self.restart()
        if self.detector is not None:
            self.detector.reset()

    def restart(self) -> None:
        """Drop the carried chroma but keep the detector's history (a cut)."""
        self._prev_y = None
        self._prev_out = None
        if self.deflicker is not None:
            self.deflicker.reset()

    def prepare(self, ys: Sequence, cuts: Sequence[bool] | None = None,
                detected: Sequence[bool] | None = None) -> tuple[list[bool], np.ndarray]:
        """Before the model: the cut flags of consecutive frames and their exposure correction.

        Runs the scene-cut detector on each luma (the frames `run` will then get with
        ``detect=False``) and returns the flags (detected or given in ``cuts``) and an
        (N, 2) array of (gain, offset) for the model's input (`Deflicker`; 1, 0 without).
        ``detected``: the detector's answers, known already (it is then not run).
        """
        cuts = list(cuts) if cuts is not None else [False] * len(ys)
        flags, affine = [], np.zeros((len(ys), 2), np.float32)
        affine[:, 0] = 1.0
        for i, y in enumerate(ys):
            plane = as_plane(y)
            if detected is not None:
                found = bool(detected[i])
            else:
                found = self.detector.update(plane) if self.detector is not None else False
            flags.append(bool(cuts[i]) or found)
            if self.deflicker is not None:
                affine[i] = self.deflicker.step(unit_float(plane), flags[-1])
        return flags, affine

    def prime(self, lumas: Iterable) -> None:
        """Feed the detector the frames before a restart point, without producing output.

        A fresh stabilizer primed with the ``detector.lookback`` frames before a
        cut and then stepped from the cut gives the same outputs as one that ran
        sequentially from the start.
        """
        if self.detector is not None:
            for y in lumas:
                self.detector.update(y)
        self.restart()

    def _calc(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """DIS flow from ``a`` to ``b`` on an instance no other thread is using (one per concurrent call)."""
        try:
            flow = self._instances.get_nowait()
        except queue.Empty:
            flow = self._dis(*self._dis_settings)
        try:
            return flow.calc(a, b, None)
        finally:
            self._instances.put(flow)

    def _flows(self, prev: np.ndarray, cur: np.ndarray, parallel: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """The backward flow (t -> t-1) in pixels of the chroma grid, and the forward-backward excess.

        The excess ``max(r - tol, 0) / tol`` (see the class) is computed on the forward flow's
        grid, ``check_scale`` of the chroma's, with the backward flow brought down to it, and
        upsampled: only the backward flow, which carries the colour, is needed finer.
        """
        h, w = cur.shape

        def as8(img: np.ndarray, scale: float) -> np.ndarray:
            if scale != 1.0:
                img = cv2.resize(img, (max(8, round(w * scale)), max(8, round(h * scale))),
                                 interpolation=cv2.INTER_AREA)
            return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)

        p8, c8 = as8(prev, self.flow_scale), as8(cur, self.flow_scale)
        q8, d8 = as8(prev, self.check_scale), as8(cur, self.check_scale)
        if parallel:
            pending = _flow_pool().submit(self._calc, q8, d8)
            backward = self._calc(c8, p8)
            forward = pending.result()
        else:
            backward, forward = self._calc(c8, p8), self._calc(q8, d8)

        def rescaled(flow: np.ndarray, size: tuple[int, int], interpolation: int) -> np.ndarray:
            """``flow`` on a grid of ``size`` (w, h), in that grid's pixels."""
            if flow.shape[1::-1] == size:
                return flow
            out = cv2.resize(flow, size, interpolation=interpolation)
            out[:, :, 0] *= np.float32(size[0] / flow.shape[1])
            out[:, :, 1] *= np.float32(size[1] / flow.shape[0])
            return out

        hq, wq = d8.shape
        back_q = rescaled(backward, (wq, hq), cv2.INTER_AREA)
        xs, ys = self._grid_of(hq, wq)
        map_x, map_y = xs + back_q[:, :, 0], ys + back_q[:, :, 1]
        fx, fy = _warp_planes(forward.transpose(2, 0, 1), map_x, map_y)
        bx, by = back_q[:, :, 0], back_q[:, :, 1]
        round_trip = (bx + fx) ** 2 + (by + fy) ** 2
        # fb_abs is in pixels^2 of the chroma grid; the check's pixels are (w / wq) of those
        tol = np.float32(self.fb_rel) * (bx * bx + by * by + fx * fx + fy * fy) \
            + np.float32(self.fb_abs * (wq / w) * (hq / h))
        excess = np.maximum(round_trip - tol, 0.0) / tol
        if (hq, wq) != (h, w):
            excess = cv2.resize(excess, (w, h), interpolation=cv2.INTER_LINEAR)
        return rescaled(backward, (w, h), cv2.INTER_LINEAR), excess

    def _grid_of(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        grid = self._grids.get((h, w))
        if grid is None:
            grid = self._grids[(h, w)] = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        return grid

    def step(self, y, chroma, cut: bool = False, detect: bool = True):
        """The stabilized chroma of the next frame.

        ``y``: the frame's luma (H, W) (or (1,H,W)), float 0..1 or uint8/uint16
        (integers are divided by their type's maximum: give 10-bit data as
        float), numpy or torch, any size; ``chroma``: the model's fresh prediction
        (2, h, w), numpy or torch. Returns the same type, shape and dtype.
        ``detect=False``: the detector already saw this frame (`prepare`).
        """
        fresh, ref = _to_numpy_chroma(chroma)
        cur, detected, reset = self._advance(y, fresh, cut, detect, self._prev_y)
        geometry = None if reset else self._geometry(self._prev_y, cur)
        return _like(self._blend(cur, fresh, geometry, detected).copy(), ref)

    def _advance(self, y, fresh: np.ndarray, cut: bool, detect: bool,
                 prev_y: np.ndarray | None) -> tuple[np.ndarray, bool, bool]:
        """The frame's luma at the chroma's size, whether the detector found a cut at it, and whether
        the carried colour is dropped before it (``prev_y``: the luma before it, None after a reset)."""
        if fresh.ndim != 3 or fresh.shape[0] != 2:
            raise ValueError(f"expected chroma shaped (2, h, w), got {fresh.shape}")
        plane = as_plane(y)
        detected = self.detector.update(plane) if self.detector is not None and detect else False
        h, w = fresh.shape[1:]
        yf = unit_float(plane)
        cur = cv2.resize(yf, (w, h), interpolation=cv2.INTER_AREA) if yf.shape != (h, w) else yf.copy()
        return cur, detected, bool(cut or detected or prev_y is None or prev_y.shape != cur.shape)

    def _geometry(self, prev_y: np.ndarray, cur: np.ndarray, parallel: bool = True):
        """Steps 1, 2 and 4 for one pair of lumas: where each pixel comes from and how far to trust it.

        A pure function of the two lumas (the carried colour is not needed), so `run` computes
        a batch's on every core before its blends, which must go in order.
        """
        h, w = cur.shape
        # 1. flicker: give the previous luma the current one's mean and contrast
        mp, sp = float(prev_y.mean()), float(prev_y.std())
        mc, sc = float(cur.mean()), float(cur.std())
        gain = min(4.0, max(0.25, sc / sp)) if sp > 1e-4 and sc > 1e-4 else 1.0
        prev_adj = (prev_y - np.float32(mp)) * np.float32(gain) + np.float32(mc)

        # 2. flow both ways, and how far they disagree
        backward, excess = self._flows(prev_adj, cur, parallel)
        xs, ys = self._grid_of(h, w)
        map_x = xs + backward[:, :, 0]
        map_y = ys + backward[:, :, 1]
        inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)

        # 4. confidence: the product of the two exponentials in one
        signed = cur - cv2.remap(prev_adj, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if self.diff_box > 1:
            signed = cv2.blur(signed, (self.diff_box, self.diff_box))
        diff = np.maximum(np.abs(signed) - np.float32(self.luma_tol), 0.0)
        diff *= np.float32(1.0 / self.luma_sigma)
        conf = np.exp(-(excess + diff * diff)) * inside
        return map_x, map_y, conf

    def motion(self, prev_y: np.ndarray, cur_y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(map_x, map_y, confidence) that take ``prev_y``'s pixels onto ``cur_y``'s (two float lumas of one size):
        ``cv2.remap(plane, map_x, map_y)`` carries a plane of the previous frame over, trusted by ``confidence``.

        Steps 1, 2 and 4 of the class; the reference guide (`vidcolor.temporal.reference`) carries its colour
        along the same motion, forward and backward through a shot.
        """
        return self._geometry(np.asarray(prev_y, np.float32), np.asarray(cur_y, np.float32))

    def _blend(self, cur: np.ndarray, fresh: np.ndarray, geometry, detected: bool) -> np.ndarray:
        """Steps 3 and 5 (or a reset when ``geometry`` is None); the new state."""
        if geometry is None:
            out = fresh.copy()
            self.last = {"reset": True, "detected": detected, "confidence": 0.0}
        else:
            map_x, map_y, conf = geometry
            # 3. the previous output carried along the motion
            warped = np.stack(_warp_planes(self._prev_out, map_x, map_y))
            weight = np.float32(self.alpha) * conf
            # 5. blend
            out = (fresh + weight * (warped - fresh)).astype(np.float32)
            self.last = {"reset": False, "detected": False, "confidence": float(conf.mean())}
        self._prev_y, self._prev_out = cur, out
        return out

    def run(self, ys: Sequence, chromas: Sequence, cuts: Sequence[bool] | None = None, detect: bool = True) -> list:
        """`step` over a batch of consecutive frames in order; returns a list (or a tensor for tensor input).

        The same outputs and state as stepping frame by frame, faster: the flows and confidences
        need the lumas alone, so the whole batch's are computed at once on every core while the
        blends, which need the previous output, follow in order (working size of 640x480, 2
        cores: 6.56 -> 5.91 ms per frame for the stabilizer, A/B; whole ``--stabilize`` runs
        +19-26% over plain ones, ``benchmarks/bench_temporal.py --speed``).
        """
        if len(ys) != len(chromas):
            raise ValueError(f"{len(ys)} luma frames for {len(chromas)} chroma frames")
        cuts = list(cuts) if cuts is not None else [False] * len(ys)
        fresh = [_to_numpy_chroma(c) for c in chromas]
        # The lumas in order first (the detector is sequential); then every pair's flows and
        # confidence, which need no colour, at once on every core; the blends in order as they come.
        frames, prev = [], self._prev_y
        for i, y in enumerate(ys):
            cur, detected, reset = self._advance(y, fresh[i][0], bool(cuts[i]), detect, prev)
            frames.append((cur, detected, None if reset else prev))
            prev = cur
        pool = _flow_pool()
        pending = [pool.submit(self._geometry, p, c, False) if p is not None else None for c, _, p in frames]
        out = []
        for (cur, detected, p), (chroma, ref), job in zip(frames, fresh, pending):
            geometry = None
            if job is not None:
                # one the pool has not started yet is done here rather than waited for
                geometry = self._geometry(p, cur, False) if job.cancel() else job.result()
            out.append(_like(self._blend(cur, chroma, geometry, detected).copy(), ref))
        if isinstance(chromas, torch.Tensor):
            return torch.stack(out) if out else chromas[:0].clone()
        return out
