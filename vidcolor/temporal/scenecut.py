"""Shot boundaries from luminance alone, one frame at a time."""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable

import cv2
import numpy as np

from vidcolor.temporal.frames import as_plane, unit_float


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

    How it scores on the evaluation videos: benchmarks/results/stabilizer.md.

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
        a = unit_float(as_plane(frame), self.peak)
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
