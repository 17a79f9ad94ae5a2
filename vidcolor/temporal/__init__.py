"""Stable colour over time: scene cuts and a stabilizer for every image model.

Image models colour each frame alone, so their colours flicker from frame to
frame. Two pieces fix that for any model of the registry:

* `SceneCutDetector` finds shot boundaries on luminance alone: a histogram
  distance plus a motion-tolerant structural distance on a small,
  brightness-normalised copy of each frame, against an adaptive threshold.
* `Stabilizer` carries the previous output chroma forward along optical flow
  (OpenCV DIS on luma, forward and backward), trusts it where the two flows
  agree and the luminance matches after flicker compensation, and blends it
  with the model's fresh prediction by that confidence. It resets at cuts.

A third piece serves the temporal models (`temporal_unet`), which take the
previous coloured frame as input: `Recurrence` holds that frame and drops it
at the same cuts, so the model starts each shot from a blank history.

`Colorizer.stabilized()` gives a twin of a `vidcolor.colorizer.Colorizer`
whose predictions go through a `Stabilizer`, so the engine, `vidcolor eval`
and the VapourSynth filter use it in place of the plain one.

Determinism: nothing here is random. The detector's answer for frame t is a
pure function of frames ``t - lookback .. t`` (it never looks further back),
and the stabilizer's output for frame t is a pure function of the frames
since its last reset. A run restarted at a cut (with the detector primed on
the ``lookback`` frames before it, see `Stabilizer.prime`) reproduces the
sequential run bit for bit.
"""

from __future__ import annotations

import collections
import math
import os
import queue
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterable, Sequence

import cv2
import numpy as np
import torch

__all__ = ["DEFAULT_ALPHA", "Deflicker", "Recurrence", "SceneCutDetector", "Stabilizer", "warmup_frames"]

#: Weight of the motion-compensated previous output where it is fully trusted.
#: Chosen on the evaluation videos (benchmarks/bench_temporal.py, a zhang2016
#: training checkpoint): flicker falls steadily with alpha (bikes, 60 frames:
#: 0.66 / 0.63 / 0.59 / 0.56 of the per-frame model's at 0.8 / 0.85 / 0.9 /
#: 0.95) while PSNR does not move (+-0.2 dB) and colourfulness drops by
#: 1-3%; 0.9 keeps the time constant near 10 frames, so real colour changes
#: the model makes are followed within half a second.
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


def _as_plane(frame) -> np.ndarray:
    """A 2-D numpy view of one luma frame given as numpy or torch, (H,W), (1,H,W) or (1,1,H,W)."""
    if isinstance(frame, torch.Tensor):
        frame = frame.detach().to("cpu").numpy()
    a = np.asarray(frame)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise ValueError(f"expected one luma plane shaped (H, W), got an array shaped {np.shape(frame)}")
    return a


def _unit_float(a: np.ndarray, peak: float | None = None) -> np.ndarray:
    """float32 0..1 (integers divided by ``peak`` or their dtype's maximum; floats kept)."""
    if peak is None:
        peak = float(np.iinfo(a.dtype).max) if np.issubdtype(a.dtype, np.integer) else 1.0
    out = a.astype(np.float32, copy=False)
    if peak != 1.0:
        out = out * np.float32(1.0 / peak)
    return out


# --------------------------------------------------------------------------
# scene cuts
# --------------------------------------------------------------------------


def _box_sums(img: np.ndarray, rows, cols) -> tuple[np.ndarray, np.ndarray]:
    """Sums of ``img`` and of its square over the boxes rows[0][i]..rows[1][i] x cols[0][j]..cols[1][j]."""
    s, sq = cv2.integral2(img, sdepth=cv2.CV_64F, sqdepth=cv2.CV_64F)
    (r0, r1), (c0, c1) = rows, cols

    def box(t: np.ndarray) -> np.ndarray:
        return t[np.ix_(r1, c1)] - t[np.ix_(r0, c1)] - t[np.ix_(r1, c0)] + t[np.ix_(r0, c0)]

    return box(s), box(sq)


class SceneCutDetector:
    """Shot boundaries from luminance, one frame at a time.

    ``update(frame)`` returns True when a cut lies between the previous frame
    and this one (so this frame starts a new shot). Each frame is reduced to
    about ``area`` pixels (INTER_AREA) and normalised to zero mean and unit
    standard deviation, which removes global brightness and contrast changes
    (old-film flicker, exposure changes, fades). For each pair of neighbours:

    * ``hist``: half the L1 distance (0..1) of the histograms of the
      normalised frames (``bins`` bins over -2.5..2.5 standard deviations);
    * ``struct``: 1 - the best normalised cross-correlation of the two
      frames at half that size over shifts of up to ``shift`` pixels
      (0..2; the shifts make it tolerate pans and shakes of about 5% of the
      frame per frame).

    The score is ``hist + struct / 2`` (0..2; unrelated pictures give about
    0.5 or more, neighbours in a shot less than 0.1, fast pans about 0.3).
    A cut needs the score above ``threshold`` and above
    ``median + k * MAD`` of the previous ``window`` scores (so a shot full of
    motion raises the bar), and the score must be the largest of the last
    ``min_gap`` ones (two cuts within ``min_gap`` frames are reported only if
    the later one is stronger). Frames with almost no contrast (std below
    ``flat_std``, e.g. the black frames of a fade) never start a shot: the
    first real picture after them does. After one odd frame (a flash, a
    damaged frame) the return to the previous picture is not a second cut:
    that odd frame alone is reported.

    Measured (benchmarks/bench_temporal.py): the five hand-marked cuts of
    bikes.mp4 and nothing else (scores of the cuts 0.57..0.96, of everything
    else at most 0.28), no cut in tree.avi, carphone and vtest.avi (at most
    0.27), the same on bikes degraded with strong flicker, grain and
    scratches; pans of up to 10% of the width per frame and 3%/frame zooms
    give none.

    The answer for frame t depends on frames ``t - lookback .. t`` only;
    `reset` forgets everything (a new video).
    """

    def __init__(
        self,
        *,
        threshold: float = 0.4,
        k: float = 6.0,
        window: int = 24,
        min_gap: int = 3,
        area: int = 4096,
        bins: int = 32,
        shift: int = 2,
        flat_std: float = 0.01,
        peak: float | None = None,
    ) -> None:
        if window < 1 or min_gap < 1:
            raise ValueError("window and min_gap must be at least 1")
        self.threshold = float(threshold)
        self.k = float(k)
        self.window = int(window)
        self.min_gap = int(min_gap)
        self.area = int(area)
        self.bins = int(bins)
        self.shift = int(shift)
        self.flat_std = float(flat_std)
        self.peak = peak
        self.reset()

    @property
    def lookback(self) -> int:
        """How many frames before frame t its answer depends on."""
        return max(self.window, self.min_gap - 1) + 2

    def reset(self) -> None:
        self._prev: tuple[np.ndarray, np.ndarray, np.ndarray, bool] | None = None
        self._prev2: tuple[np.ndarray, np.ndarray, np.ndarray, bool] | None = None
        # (score, usable) of the previous pairs; pairs ending on a flat frame are not usable
        self._scores: collections.deque[tuple[float, bool]] = collections.deque(maxlen=self.window)
        self._was_cut = False
        #: the last pair's score (NaN for the first frame or a size change), its parts and the bar it had to pass
        self.last: dict = {"score": math.nan, "hist": math.nan, "struct": math.nan, "bar": math.nan}

    def _features(self, frame) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        a = _unit_float(_as_plane(frame), self.peak)
        h, w = a.shape
        if h == 0 or w == 0:
            raise ValueError(f"empty frame shaped {a.shape}")
        s = math.sqrt(self.area / (h * w))
        size = (max(8, round(w * s)), max(8, round(h * s)))
        small = cv2.resize(a, size, interpolation=cv2.INTER_AREA) if size != (w, h) else a.copy()
        std = float(small.std())
        flat = std < self.flat_std
        z = (small - np.float32(small.mean())) / np.float32(std + 1e-3)
        hist, _ = np.histogram(np.clip(z, -2.5, 2.5), bins=self.bins, range=(-2.5, 2.5))
        half = cv2.resize(z, (max(4, size[0] // 2), max(4, size[1] // 2)), interpolation=cv2.INTER_AREA)
        return hist / max(1, hist.sum()), half, np.array(size), flat

    def _struct(self, a: np.ndarray, b: np.ndarray) -> float:
        h, w = a.shape
        r = min(self.shift, h // 4, w // 4)
        # Every shift at once (a third of the time of a loop over them): the cross sums by one
        # correlation with the zero-padded b, the overlaps' own sums from integral images.
        # a[i] pairs with b[i - dy]: a's rows max(0, dy) .. h + min(0, dy), b's max(0, -dy) .. h - max(0, dy).
        cross = cv2.matchTemplate(cv2.copyMakeBorder(b, r, r, r, r, cv2.BORDER_CONSTANT, value=0), a,
                                  cv2.TM_CCORR).astype(np.float64)[::-1, ::-1]
        d = np.arange(-r, r + 1)
        sa, saa = _box_sums(a, (np.maximum(0, d), h + np.minimum(0, d)), (np.maximum(0, d), w + np.minimum(0, d)))
        sb, sbb = _box_sums(b, (np.maximum(0, -d), h - np.maximum(0, d)), (np.maximum(0, -d), w - np.maximum(0, d)))
        n = np.outer(h - np.abs(d), w - np.abs(d)).astype(np.float64)
        den = np.sqrt(np.maximum(saa - sa * sa / n, 0.0) * np.maximum(sbb - sb * sb / n, 0.0))
        # a flat overlap correlates with nothing (the sums' rounding is not a variance)
        ok = den > np.maximum(1e-9, 1e-6 * np.sqrt(saa * sbb))
        if not ok.any():
            return 1.0
        return 1.0 - float(((cross - sa * sb / n)[ok] / den[ok]).max())

    def _pair(self, a, b) -> tuple[float, float, float]:
        hist = 0.5 * float(np.abs(a[0] - b[0]).sum())
        struct = self._struct(a[1], b[1])
        return hist + 0.5 * struct, hist, struct

    def update(self, frame) -> bool:
        """Feed the next frame (luma, any size; uint8/uint16 or float 0..1, numpy or torch).

        True when a cut lies between the previous frame and this one.
        """
        feats = self._features(frame)
        prev, prev2 = self._prev, self._prev2
        self._prev, self._prev2 = feats, prev
        was_cut, self._was_cut = self._was_cut, False
        if prev is None or not np.array_equal(prev[2], feats[2]):
            self._scores.clear()
            self._prev2 = None
            self.last = {"score": math.nan, "hist": math.nan, "struct": math.nan, "bar": math.nan}
            return False
        s, hist, struct = self._pair(feats, prev)
        flat = feats[3]
        history = [v for v, ok in self._scores if ok]
        recent = [v for v, ok in list(self._scores)[len(self._scores) - (self.min_gap - 1):] if ok] \
            if self.min_gap > 1 else []
        self._scores.append((s, not flat))
        bar = self.threshold
        if len(history) >= 3:
            med = float(np.median(history))
            mad = 1.4826 * float(np.median(np.abs(np.asarray(history) - med)))
            bar = max(bar, med + self.k * mad)
        self.last = {"score": s, "hist": hist, "struct": struct, "bar": bar}
        # a frame with no contrast (black, a flat fade) starts no shot: the next real picture does
        if flat or s <= bar or not all(s > r for r in recent):
            return False
        # back to the shot after one odd frame (a flash, a damaged frame): the odd frame was the cut
        if was_cut and prev2 is not None and np.array_equal(prev2[2], feats[2]) and not prev2[3]:
            if self._pair(feats, prev2)[0] <= self.threshold:
                return False
        self._was_cut = True
        return True

    def detect(self, frames: Iterable) -> list[int]:
        """Indices of the frames of a sequence that start a new shot (after a reset)."""
        self.reset()
        return [i for i, f in enumerate(frames) if self.update(f)]


# --------------------------------------------------------------------------
# exposure flicker of the model's input
# --------------------------------------------------------------------------


class Deflicker:
    """Old film's exposure flicker, taken out of what the model sees.

    Uneven exposure and development make every frame of a reel a little
    brighter or darker than the last; an image model answers with a
    different colour each time (on bikes.mp4 damaged by `vidcolor.eval.degrade`,
    exposure flicker alone raises the per-frame model's chroma flicker
    from 0.95 to 2.4). `step` gives the gain and offset that map a frame's
    luma mean and standard deviation onto the shot's recent ones: an
    exponentially weighted mean (``beta``) over the last ``window`` frames
    since the last cut. Slow changes (a fade, a camera turning to the sun)
    pass with a lag of a few frames; frame-to-frame jumps do not. Only the
    model's input is corrected: the output's luma stays the source's.

    Clean footage changes its statistics too when things move through the
    picture (bikes.mp4: 0.7% of the range in mean, 1.6% in contrast per frame
    at the median, against 3% and 6% for the damaged copy), and correcting
    those cost 0.12 dB of PSNR there. So a ``deadband`` (mean shift, log
    contrast) is taken off each correction first. Trials while choosing it
    (first 100 frames of bikes, `vidcolor.eval.evaluate` on stabilized colorizers
    with each setting): with (0.01, 0.03) the clean clip scores as without a
    deflicker (28.51 / 28.53 dB, flicker 0.432 both) and the damaged one
    keeps most of the gain (stabilized flicker 0.909; 0.877 with no deadband,
    1.170 with no deflicker).

    The answer for frame t is a pure function of frames ``t - window + 1 .. t``
    and the cuts among them, so a front end with random access (VapourSynth)
    reproduces it from a bounded history.
    """

    def __init__(self, beta: float = 0.85, window: int = 16, max_gain: float = 2.0,
                 deadband: tuple[float, float] = (0.01, 0.03)) -> None:
        if not 0.0 < beta < 1.0 or window < 1:
            raise ValueError("beta must be in (0, 1) and window at least 1")
        self.beta, self.window, self.max_gain = float(beta), int(window), float(max_gain)
        self.deadband = tuple(float(v) for v in deadband)
        self._weights = self.beta ** np.arange(self.window - 1, -1, -1, dtype=np.float64)
        self.reset()

    def reset(self) -> None:
        self._stats: collections.deque[tuple[float, float]] = collections.deque(maxlen=self.window)
        self._shape: tuple[int, ...] | None = None

    def step(self, y: np.ndarray, cut: bool = False) -> tuple[float, float]:
        """(gain, offset) for frame luma ``y`` (2-D, 0..1): ``y * gain + offset`` has the shot's exposure."""
        if cut or y.shape != self._shape:
            self._stats.clear()
            self._shape = y.shape
        m, sd = float(y.mean()), float(y.std())
        self._stats.append((m, sd))
        stats = np.asarray(self._stats)
        w = self._weights[self.window - len(stats):]
        ref_m, ref_sd = (w[:, None] * stats).sum(0) / w.sum()
        log_gain = math.log(min(self.max_gain, max(1.0 / self.max_gain, ref_sd / sd))) if sd > 1e-3 else 0.0
        shift = float(ref_m - m)
        tm, tg = self.deadband
        shift = math.copysign(max(abs(shift) - tm, 0.0), shift)
        log_gain = math.copysign(max(abs(log_gain) - tg, 0.0), log_gain)
        gain = math.exp(log_gain)
        return gain, float(m + shift - gain * m)


# --------------------------------------------------------------------------
# the stabilizer
# --------------------------------------------------------------------------


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
       In trials on the evaluation
       videos (100 frames each), 0.75 made the flow 35% cheaper and raised
       flicker by at most 0.016 (bikes 0.418 -> 0.432); 0.5 cut two thirds
       but bikes rose to 0.459, past half the per-frame model's 0.875. The
       coarser flow agrees with itself less closely, so ``fb_abs`` is 4 px^2
       (the metric's 0.5 left bikes at 0.432, PSNR 28.51, and 0.909 damaged;
       2 gave 0.420, 28.52 and 0.793; 4, with the luma test below, 0.419,
       28.52 and 0.718, and equal or lower flicker on the other three clips,
       clean and damaged; 8 took damaged bikes to 0.683 but passes more
       flow that disagrees with itself, so 4). Those trials had both flows
       at 0.75. The check turned out to reject more good warps than bad
       ones: looser tolerances lowered flicker on every clip, clean and old
       film, and no check at all lowest (bikes 0.405 clean, 0.607 damaged).
       So the forward flow runs at 0.5 (0.44 of the cost) and ``fb_abs``
       is 16 px^2, flows that disagree by more than 4 pixels: the check
       still drops gross failures (occlusions, a flow lost in a flat
       region) but not the disagreement of two noisy flows. Against both at
       0.75 with 4 px^2, 100 frames of each clip (bikes, carphone, tree,
       vtest): flicker 0.421 / 0.307 / 0.229 / 0.083 clean (was 0.419 /
       0.308 / 0.230 / 0.083), 0.663 / 0.634 / 0.601 / 0.372 on old film
       (was 0.718 / 0.660 / 0.604 / 0.372), PSNR within 0.01 dB. (A forward
       flow at 0.5 with the 4 px^2 tolerance took bikes to 0.434.) DIS runs the MEDIUM preset with fewer iterations
       (``gd_iters`` 8 of its 25 gradient-descent steps per patch,
       ``var_iters`` 3 of its 5 variational refinements; None keeps the
       preset's): the pair of flows takes 4.5 ms instead of 6.4, and the
       four clips' flicker moved by -0.003..+0.005 (bikes 0.420 -> 0.425).
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
         sign. With 5 (against 1, per pixel) the stabilized flicker of bikes
         and tree damaged like old film fell by 4% and 9% (0.796 -> 0.766,
         0.673 -> 0.613) and the four clean clips' moved by -0.006..0;
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
            plane = _as_plane(y)
            if detected is not None:
                found = bool(detected[i])
            else:
                found = self.detector.update(plane) if self.detector is not None else False
            flags.append(bool(cuts[i]) or found)
            if self.deflicker is not None:
                affine[i] = self.deflicker.step(_unit_float(plane), flags[-1])
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
        plane = _as_plane(y)
        detected = self.detector.update(plane) if self.detector is not None and detect else False
        h, w = fresh.shape[1:]
        yf = _unit_float(plane)
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


class Recurrence:
    """Previous-frame conditioning of a temporal model (``model.temporal``), frame after frame.

    The state is the last output ab, fed back as the next frame's history. It is
    dropped where `Stabilizer` drops its own (detected cuts, external cut flags,
    a change of size, `reset`), so each shot starts from a blank history, as the
    model was trained to (the blank previous frame of its Bernoulli draw). Like
    the stabilizer's, the output of frame t is a pure function of the frames
    since the last restart and the detector's ``lookback`` frames before it.
    """

    def __init__(self, detector: SceneCutDetector | None | bool = True) -> None:
        if detector is True:
            detector = SceneCutDetector()
        self.detector: SceneCutDetector | None = detector or None
        self.reset()

    def reset(self) -> None:
        self.prev: torch.Tensor | None = None
        if self.detector is not None:
            self.detector.reset()

    def restart(self) -> None:
        self.prev = None

    def prime(self, lumas: Iterable) -> None:
        """Feed the detector the frames before a restart point (see `Stabilizer.prime`)."""
        if self.detector is not None:
            for y in lumas:
                self.detector.update(y)
        self.restart()

    def run(self, step, ys: Sequence, cuts: Sequence[bool] | None = None, detect: bool = True) -> list:
        """ab of consecutive frames: ``step(i, prev_ab or None)`` predicts frame i from its history.

        ``ys``: the frames' luma (any size; the detector sees it), ``cuts``: external cut flags.
        ``detect=False``: ``cuts`` already holds the detector's answers (`Stabilizer.prepare`).
        """
        cuts = list(cuts) if cuts is not None else [False] * len(ys)
        out = []
        for i, y in enumerate(ys):
            detected = self.detector.update(_as_plane(y)) if self.detector is not None and detect else False
            if detected or cuts[i]:
                self.prev = None
            ab = step(i, self.prev)
            self.prev = ab
            out.append(ab)
        return out
