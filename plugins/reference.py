"""``colorize(clip, reference=...)``: a reference's colour in the VapourSynth filter.

The colour a reference gives a frame depends on the frames between it and the matched frame, so
the filter cannot colour one block alone. When the node is made, the clip's luma is read once in
order (``get_frame``; the cuts and the matches, `vidcolor.temporal.reference.ReferenceTrack.plan`)
and again up to the last matched frame (the backward carry). Then the first request for a frame of
a shot colours the whole shot, in order from its first frame, with the model run on the filter's
fixed blocks: the same computation whichever frame, order or thread asks first, so the output does
not depend on the request order. The shot's ab is kept (float16, working size; the two most recent
shots), so sequential access runs the model once per frame.
"""

from __future__ import annotations

import collections
import os
import threading

import numpy as np
import torch
import vapoursynth as vs

from vidcolor.errors import VidcolorError, one_line
from vidcolor.io.reference import load_reference

from .formats import vs_error, vs_wording

core = vs.core


def reference_pictures(reference) -> tuple[list[np.ndarray], list[str]]:
    """RGB uint8 pictures and their names from ``reference=``: an image path, a list of them, or a clip."""
    if isinstance(reference, vs.VideoNode):
        rgb = reference
        if rgb.format is None:
            raise vs_error("reference=: a clip of constant format (RGB, YUV or GRAY), one frame per picture")
        if rgb.format.id != vs.RGB24:
            kw = {"matrix_in_s": "709" if rgb.height >= 720 else "170m"} if rgb.format.color_family == vs.YUV else {}
            rgb = core.resize.Bicubic(rgb, format=vs.RGB24, **kw)
        pictures = []
        for n in range(rgb.num_frames):
            f = rgb.get_frame(n)
            pictures.append(np.ascontiguousarray(np.stack([np.asarray(f[p]) for p in range(3)], axis=-1)))
        return pictures, [f"reference clip frame {n}" for n in range(len(pictures))]
    paths = reference if isinstance(reference, (list, tuple)) else [reference]
    try:
        pictures = [load_reference(os.fspath(p)) for p in paths]
    except (TypeError, VidcolorError) as exc:
        raise vs_error(vs_wording(one_line(exc)).replace("--reference ", "reference=")) from None
    return pictures, [os.fspath(p) for p in paths]


class ShotCache:
    """The reference-guided ab of whole shots, coloured on demand (see the module docstring)."""

    def __init__(self, twin, model_lock, lumas, batch: int, keep: int = 2):
        self.twin, self.model_lock, self.lumas, self.batch = twin, model_lock, lumas, batch
        self.track = twin.reference
        self.lock = threading.Lock()
        self.shots: collections.OrderedDict[int, torch.Tensor] = collections.OrderedDict()
        self.keep = keep

    def shot_of(self, n: int) -> tuple[int, int]:
        starts = self.track.starts
        i = int(np.searchsorted(starts, n, side="right")) - 1
        end = starts[i + 1] if i + 1 < len(starts) else self.track.frames
        return starts[i], end

    def ab(self, numbers: list[int]) -> torch.Tensor:
        """ab (N,2,h,w) float32 of frames ``numbers``."""
        out = []
        with self.lock:
            for n in numbers:
                s, e = self.shot_of(n)
                if s not in self.shots:
                    self.shots[s] = self._colour(s, e)
                    while len(self.shots) > self.keep:
                        self.shots.popitem(last=False)
                self.shots.move_to_end(s)
                out.append(self.shots[s][n - s].float())
        return torch.stack(out)

    def _colour(self, s: int, e: int) -> torch.Tensor:
        self.track.reset()
        parts = []
        b = s // self.batch * self.batch
        while b < e:  # the model on the filter's fixed blocks, clipped to the shot
            lo, hi = max(b, s), min(b + self.batch, e)
            y = self.lumas(lo, hi)
            with self.model_lock:
                parts.append(self.twin.predict_ab(y, frames=list(range(lo, hi))).to("cpu", torch.float16))
            b += self.batch
        return torch.cat(parts)


def referenced_node(filt_cls, colorizer, model_lock, clip: vs.VideoNode, native, reference, batch: int,
                    read_lumas):
    """A `_Filter` subclass instance whose blocks take their ab from the shots coloured with ``reference``.

    ``read_lumas(lo, hi)``: luma (N,1,H,W) 0..1 of source frames lo..hi-1, read with each frame's own
    range and matrix (the filter's reading).
    """
    pictures, names = reference_pictures(reference)
    try:
        twin = colorizer.referenced(pictures, names=names)
    except VidcolorError as exc:
        raise vs_error(vs_wording(one_line(exc))) from None

    def batches():
        for lo in range(0, clip.num_frames, batch):
            yield read_lumas(lo, min(lo + batch, clip.num_frames))

    import warnings

    from vidcolor.temporal.reference import ReferenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ReferenceWarning)
        with model_lock:
            twin.plan_reference(batches)
    for w in caught:  # VapourSynth shows the log; a warning is one line there
        if issubclass(w.category, ReferenceWarning):
            core.log_message(vs.MESSAGE_TYPE_WARNING, f"vidcolor: {w.message}")
    cache = ShotCache(twin, model_lock, read_lumas, batch)

    class ReferenceFilter(filt_cls):
        def _compute(self, b, frames, history=None):
            return super()._compute(b, frames, history=())  # not None: the block's ab comes from _stabilized_ab

        def _stabilized_ab(self, b, frames, history):
            return cache.ab(list(range(b * self.batch, b * self.batch + len(frames)))).to(self.colorizer.device)

    return ReferenceFilter(colorizer, model_lock, clip, native, colorizer.name, batch, 0)
