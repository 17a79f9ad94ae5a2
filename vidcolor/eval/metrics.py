"""Quality measures for colorized frames.

Every function takes uint8 RGB frames shaped (H, W, 3), the same layout
PyAV's ``to_ndarray(format="rgb24")`` gives, and uses only numpy and OpenCV
so that a whole video can be measured on a CPU.

Lab values follow OpenCV's float conversion (L in 0..100, a and b in CIE
units, roughly -128..127), so ab distances are in the units used by
Zhang et al. 2016 and the AuC thresholds 0..150 mean what they mean there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import cv2
import numpy as np

__all__ = [
    "AucAccumulator",
    "FlickerMeter",
    "ab_errors",
    "auc_curve",
    "colourfulness",
    "gray_baseline",
    "hue_hits",
    "luma",
    "psnr",
    "ssim",
    "to_lab",
]

AUC_MAX_THRESHOLD = 150


def _check_rgb(*frames: np.ndarray) -> None:
    shape = frames[0].shape
    for frame in frames:
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(
                f"expected a uint8 RGB frame shaped (H, W, 3), got {frame.dtype} {frame.shape}"
            )
        if frame.shape != shape:
            raise ValueError(f"frames differ in size: {shape} and {frame.shape}")


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma Y' (0.299 R + 0.587 G + 0.114 B) as float32, 0..255."""
    _check_rgb(rgb)
    return rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def gray_baseline(rgb: np.ndarray) -> np.ndarray:
    """The "all chroma zero" frame: R = G = B = BT.601 luma, rounded to uint8."""
    y = np.clip(np.rint(luma(rgb)), 0, 255).astype(np.uint8)
    return np.repeat(y[:, :, None], 3, axis=2)


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIE Lab of an sRGB frame, float32: L 0..100, a/b in CIE units."""
    _check_rgb(rgb)
    return cv2.cvtColor(rgb.astype(np.float32) * np.float32(1 / 255), cv2.COLOR_RGB2Lab)


def psnr(ref: np.ndarray, out: np.ndarray) -> float:
    """PSNR over all three RGB channels, peak 255; ``inf`` for identical frames."""
    _check_rgb(ref, out)
    diff = ref.astype(np.float64) - out.astype(np.float64)
    mse = float(np.mean(diff * diff))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(255.0**2 / mse)


# Wang et al. 2004 constants; the 11-tap window of sigma 1.5 with reflected
# borders and the border crop reproduce skimage's
# structural_similarity(gaussian_weights=True, use_sample_covariance=False,
# data_range=255, channel_axis=2) at a fraction of its cost.
_SSIM_SIGMA = 1.5
_SSIM_RADIUS = 5
_SSIM_C1 = (0.01 * 255) ** 2
_SSIM_C2 = (0.03 * 255) ** 2


def ssim(ref: np.ndarray, out: np.ndarray) -> float:
    """Mean Gaussian SSIM (Wang et al. 2004) over the three RGB channels."""
    _check_rgb(ref, out)
    # float32 halves the cost and stays within ~1e-5 of the float64 result
    x = ref.astype(np.float32)
    y = out.astype(np.float32)
    size = 2 * _SSIM_RADIUS + 1

    def blur(img: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(img, (size, size), _SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov = blur(x * y) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + _SSIM_C1) * (2 * cov + _SSIM_C2)) / (
        (mu_x * mu_x + mu_y * mu_y + _SSIM_C1) * (var_x + var_y + _SSIM_C2)
    )
    # The window is only fully inside the frame away from the border; frames
    # too small to crop are measured whole rather than refused.
    r = _SSIM_RADIUS
    if s.shape[0] > 2 * r and s.shape[1] > 2 * r:
        s = s[r:-r, r:-r]
    return float(s.mean(dtype=np.float64))


def ab_errors(ref: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Per-pixel Euclidean distance in the ab plane of CIE Lab, float32 (H, W)."""
    _check_rgb(ref, out)
    d = to_lab(ref)[:, :, 1:] - to_lab(out)[:, :, 1:]
    return np.sqrt(np.einsum("ijk,ijk->ij", d, d))


def auc_curve(dists: np.ndarray, thresholds: Iterable[float] = range(AUC_MAX_THRESHOLD + 1)) -> np.ndarray:
    """Fraction of pixels whose ab distance is within each threshold (<=).

    The mean of this curve over thresholds 0..150 is the ab-AuC of
    Zhang et al. 2016 (1.0 for a perfect colorization).
    """
    d = np.sort(np.asarray(dists, dtype=np.float64).ravel())
    if d.size == 0:
        raise ValueError("no distances to summarise")
    t = np.asarray(list(thresholds), dtype=np.float64)
    return np.searchsorted(d, t, side="right") / d.size


class AucAccumulator:
    """Pools ab distances of many frames into one AuC without keeping them.

    Distances are binned by their ceiling, so for integer thresholds
    ``d <= t`` holds exactly when ``ceil(d) <= t``: the pooled curve equals
    ``auc_curve`` on all the distances concatenated.
    """

    def __init__(self, max_threshold: int = AUC_MAX_THRESHOLD) -> None:
        self.max_threshold = int(max_threshold)
        # the last bin collects everything beyond the largest threshold
        self.counts = np.zeros(self.max_threshold + 2, dtype=np.int64)

    def add(self, dists: np.ndarray) -> None:
        d = np.asarray(dists, dtype=np.float64).ravel()
        bins = np.clip(np.ceil(d), 0, self.max_threshold + 1).astype(np.intp)
        self.counts += np.bincount(bins, minlength=self.counts.size)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def curve(self) -> np.ndarray:
        """Fraction within each threshold 0..max_threshold."""
        if self.total == 0:
            raise ValueError("no distances added")
        return np.cumsum(self.counts)[: self.max_threshold + 1] / self.total

    def value(self) -> float:
        """ab-AuC in 0..1; NaN when nothing was added."""
        if self.total == 0:
            return math.nan
        return float(self.curve().mean())


#: Lab chroma above which an original pixel is "clearly coloured" for `hue_hits`.
HUE_CHROMA = 15.0
#: the largest hue difference, in degrees, that `hue_hits` counts as right.
HUE_TOLERANCE = 45.0


def hue_hits(ref: np.ndarray, out: np.ndarray) -> tuple[int, int]:
    """(pixels whose output hue is within 45 degrees of the original's, clearly coloured pixels).

    Counted only where the original's Lab chroma exceeds 15: the hue of a
    near-grey is noise. An output without colour there (chroma under 1 Lab
    unit) has no hue and counts as wrong, so gray scores 0.
    """
    _check_rgb(ref, out)
    a, b = to_lab(ref)[:, :, 1:].transpose(2, 0, 1), to_lab(out)[:, :, 1:].transpose(2, 0, 1)
    coloured = np.hypot(a[0], a[1]) > HUE_CHROMA
    diff = np.abs(np.arctan2(a[1], a[0]) - np.arctan2(b[1], b[0]))
    diff = np.degrees(np.minimum(diff, 2 * np.pi - diff))
    hit = coloured & (diff <= HUE_TOLERANCE) & (np.hypot(b[0], b[1]) >= 1.0)
    return int(hit.sum()), int(coloured.sum())


def colourfulness(rgb: np.ndarray) -> float:
    """Colourfulness metric M of Hasler and Süsstrunk 2003 (0 for a gray frame)."""
    _check_rgb(rgb)
    f = rgb.astype(np.float64)
    rg = f[:, :, 0] - f[:, :, 1]
    yb = 0.5 * (f[:, :, 0] + f[:, :, 1]) - f[:, :, 2]
    return float(
        math.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * math.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
    )


class FlickerMeter:
    """Temporal flicker of colorized versions of a video, one frame at a time.

    For each pair of consecutive frames it finds the motion on the ORIGINAL's
    luminance (DIS optical flow, both directions), warps the previous frame's
    ab channels onto the current frame and measures the mean Euclidean ab
    difference over pixels where the warp can be trusted. The original
    itself is measured too: its error is the floor set by flow errors,
    lighting changes and compression, so a colorizer is judged by how far
    above it lies.

    A pixel is trusted when
      * its backward flow lands inside the previous frame,
      * forward and backward flows agree (Sundaram et al. 2010, as used by
        Ruder et al. 2016 and Lai et al. 2018 for warp error):
        |b + f'|^2 <= fb_rel * (|b|^2 + |f'|^2) + fb_abs, where b is the
        backward flow at x and f' the forward flow at x + b(x) -- with the
        defaults the flows must cancel to within about 0.7 px, more for fast
        motion,
      * the original's own L channel survives the warp: |L_t - warped L_{t-1}|
        < ``luma_threshold`` (5 L units = 5% of the L range by default), which
        drops occlusions, cuts and lighting changes the flow check misses.

    It also reports colour-distribution consistency: the L1 distance (0..2)
    between the normalised 2-D ab histograms of consecutive frames, which
    needs no flow and catches global colour jumps.

    The warp error grows with the amount and detail of chroma (sub-pixel
    flow errors at colour edges, chroma noise of the source), so the
    original's floor is not a lower bound: a faint or smooth colorization can
    score below it, the gray baseline scores about 0. Compare versions at a
    similar colourfulness.

    Only the previous frame's luminance, ab channels and histograms are kept.
    """

    ORIGINAL = "original"

    def __init__(
        self,
        *,
        luma_threshold: float = 5.0,
        fb_rel: float = 0.01,
        fb_abs: float = 0.5,
        hist_bin: float = 8.0,
        preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
    ) -> None:
        self.luma_threshold = float(luma_threshold)
        self.fb_rel = float(fb_rel)
        self.fb_abs = float(fb_abs)
        self.hist_bin = float(hist_bin)
        # an odd number of bins centred on zero keeps gray pixels, whose ab is
        # zero up to rounding noise, inside a single bin
        half = math.ceil(128.0 / self.hist_bin - 0.5)
        self._hist_bins = 2 * half + 1
        self._hist_lo = -(half + 0.5) * self.hist_bin
        self._flow = cv2.DISOpticalFlow_create(preset)
        self.reset()

    def settings(self) -> dict:
        return {
            "flow": "OpenCV DIS, preset medium, on the original's BT.601 luma",
            "luma_threshold_L": self.luma_threshold,
            "fb_rel": self.fb_rel,
            "fb_abs_px2": self.fb_abs,
            "hist_bin_ab": self.hist_bin,
        }

    def reset(self) -> None:
        """Forget the previous frame (at a cut, or between videos)."""
        self._prev_gray: np.ndarray | None = None
        self._prev_L: np.ndarray | None = None
        self._prev_ab: dict[str, np.ndarray] = {}
        self._prev_hist: dict[str, np.ndarray] = {}

    def _histogram(self, ab: np.ndarray) -> np.ndarray:
        n = self._hist_bins
        idx = np.clip(((ab - self._hist_lo) / self.hist_bin).astype(np.intp), 0, n - 1)
        flat = idx[:, :, 0] * n + idx[:, :, 1]
        h = np.bincount(flat.ravel(), minlength=n * n).astype(np.float64)
        return h / h.sum()

    def update(self, original: np.ndarray, versions: Mapping[str, np.ndarray] | None = None) -> dict | None:
        """Feed frame t; returns the measures of the pair (t-1, t).

        Returns None for the first frame, after ``reset()`` and whenever the
        frame size changes (a folder of unrelated images). Otherwise::

            {"warp": {name: mean ab warp error, ..., "original": floor},
             "cdc": {name: ab-histogram L1 distance, ..., "original": ...},
             "valid": fraction of pixels trusted}

        A warp error is NaN when no pixel can be trusted (e.g. at a cut).
        The set of version names must stay the same between resets.
        """
        versions = dict(versions or {})
        if self.ORIGINAL in versions:
            raise ValueError(f"the name {self.ORIGINAL!r} is reserved for the original frame")
        _check_rgb(original, *versions.values())
        gray = cv2.cvtColor(original, cv2.COLOR_RGB2GRAY)
        labs = {self.ORIGINAL: to_lab(original)}
        labs.update((name, to_lab(frame)) for name, frame in versions.items())
        ab = {name: np.ascontiguousarray(lab[:, :, 1:]) for name, lab in labs.items()}
        hist = {name: self._histogram(a) for name, a in ab.items()}
        L = labs[self.ORIGINAL][:, :, 0]

        prev_gray, prev_L, prev_ab, prev_hist = self._prev_gray, self._prev_L, self._prev_ab, self._prev_hist
        self._prev_gray, self._prev_L, self._prev_ab, self._prev_hist = gray, L, ab, hist
        if prev_gray is None or prev_gray.shape != gray.shape:
            return None
        if prev_ab.keys() != ab.keys():
            raise ValueError(f"versions changed from {sorted(prev_ab)} to {sorted(ab)}; call reset() first")

        h, w = gray.shape
        backward = self._flow.calc(gray, prev_gray, None)  # t -> t-1
        forward = self._flow.calc(prev_gray, gray, None)  # t-1 -> t
        xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        map_x = xs + backward[:, :, 0]
        map_y = ys + backward[:, :, 1]

        def warp(img: np.ndarray) -> np.ndarray:
            return cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

        inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
        fwd_at = warp(forward)
        round_trip = np.sum((backward + fwd_at) ** 2, axis=2)
        magnitude = np.sum(backward**2, axis=2) + np.sum(fwd_at**2, axis=2)
        consistent = round_trip <= self.fb_rel * magnitude + self.fb_abs
        luma_ok = np.abs(L - warp(prev_L)) < self.luma_threshold
        mask = inside & consistent & luma_ok
        n_valid = int(mask.sum())

        warp_err: dict[str, float] = {}
        cdc: dict[str, float] = {}
        for name in ab:
            if n_valid:
                d = ab[name] - warp(prev_ab[name])
                err = np.sqrt(np.einsum("ijk,ijk->ij", d, d))
                warp_err[name] = float(err[mask].mean())
            else:
                warp_err[name] = math.nan
            cdc[name] = float(np.abs(hist[name] - prev_hist[name]).sum())
        return {"warp": warp_err, "cdc": cdc, "valid": n_valid / mask.size}
