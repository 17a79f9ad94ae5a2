"""What both trainers share: the training files, their downscaling, the learning-rate schedule, file hashes.

`vidcolor.training.train` (per-frame models) and `vidcolor.training.train_temporal`
(the GAN on frame pairs) read the same folders, shrink pictures the same way and
follow the same warm-up and cosine decay; `vidcolor.training.sequences` cuts its
sequences from the same files. One copy of each, here.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Callable

import cv2
import numpy as np

from vidcolor.errors import InvalidInput
from vidcolor.io.media import is_image, is_video

#: steps of the learning rate's linear warm-up, and the share of the peak the cosine decays to.
WARMUP_STEPS = 100
FINAL_LR_SHARE = 0.05


def training_files(dirs) -> list[pathlib.Path]:
    """The photos and clips under ``dirs`` (folders, searched recursively, or files), in sorted order;
    what a photo or a clip is, `vidcolor.io.media` says for every part of vidcolor."""
    found = []
    for d in dirs:
        d = pathlib.Path(d)
        if not d.exists():
            raise InvalidInput(f"{d}: no such training folder; run `vidcolor data DIR` or pass a folder of colour photos")
        paths = [d] if d.is_file() else sorted(p for p in d.rglob("*") if p.is_file())
        found += [p for p in paths if is_image(p) or is_video(p)]
    return found


def shrink(img: np.ndarray, short: int) -> np.ndarray:
    """``img`` downscaled (area filter) so that its short side is ``short``; a smaller one unchanged."""
    h, w = img.shape[:2]
    s = short / min(h, w)
    if s >= 1:
        return img
    return cv2.resize(img, (max(short, round(w * s)), max(short, round(h * s))), interpolation=cv2.INTER_AREA)


def lr_schedule(steps: int) -> Callable[[int], float]:
    """The learning rate's factor at each step (for ``LambdaLR``): a linear warm-up over
    `WARMUP_STEPS`, then a cosine decay to `FINAL_LR_SHARE` of the peak at ``steps``."""
    def factor(s: int) -> float:
        return min(1.0, (s + 1) / WARMUP_STEPS) * (
            FINAL_LR_SHARE + (1 - FINAL_LR_SHARE) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))

    return factor

