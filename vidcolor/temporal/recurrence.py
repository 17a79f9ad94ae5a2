"""Previous-frame conditioning of the temporal models, dropped at the same cuts as the stabilizer's state."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from vidcolor.temporal.frames import as_plane
from vidcolor.temporal.scenecut import SceneCutDetector


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
            detected = self.detector.update(as_plane(y)) if self.detector is not None and detect else False
            if detected or cuts[i]:
                self.prev = None
            ab = step(i, self.prev)
            self.prev = ab
            out.append(ab)
        return out
