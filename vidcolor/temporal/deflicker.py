"""Old film's exposure flicker, taken out of what the model sees."""

from __future__ import annotations

import collections
import math

import numpy as np


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
    those cost PSNR. So a ``deadband`` (mean shift, log contrast) is taken off
    each correction first (chosen in trials: benchmarks/results/stabilizer.md).

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
