"""What the trainers share: the training files, their downscaling, the learning-rate schedule, the step
loop and its checkpoints.

`vidcolor.training.train` (per-frame models) and `vidcolor.training.train_temporal`
(the GAN on frame pairs) read the same folders, shrink pictures the same way and
follow the same warm-up and cosine decay; `vidcolor.training.sequences` cuts its
sequences from the same files. One copy of each, here.
"""

from __future__ import annotations

import json
import math
import pathlib
import time
from collections.abc import Callable

import cv2
import numpy as np
import torch

from vidcolor import weights
from vidcolor.atomic import atomic_output
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


#: steps between two lines of OUT/log.jsonl.
LOG_EVERY = 20


def run_steps(cfg, step: int, seconds: float, one_step: Callable[[int], tuple[dict, dict]],
              checkpoint: Callable[[int, float], None], progress: bool = True) -> tuple[int, float]:
    """The trainers' loop, from ``step`` to ``cfg.steps``: ``one_step(step)`` trains once and returns
    (figures for the log, figures for the progress bar); every `LOG_EVERY` steps a JSON line goes to
    ``cfg.out``/log.jsonl, every ``cfg.save_every`` steps and at the end ``checkpoint(step, seconds)``
    runs. ``seconds`` counts training time only; returns the final (step, seconds)."""
    from tqdm import tqdm

    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, unit="step", dynamic_ncols=True)
    with (cfg.out / "log.jsonl").open("a") as log:
        while step < cfg.steps:
            t0 = time.perf_counter()
            record, shown = one_step(step)
            step += 1
            seconds += time.perf_counter() - t0
            bar.update(1)
            bar.set_postfix(shown)
            if step % LOG_EVERY == 0 or step == cfg.steps:
                log.write(json.dumps({"step": step, **record, "seconds": round(seconds, 1)}) + "\n")
                log.flush()
            if step % cfg.save_every == 0 or step == cfg.steps:
                checkpoint(step, seconds)
    bar.close()
    return step, seconds


def checkpoint_files(out: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """A run's checkpoint in ``out``: its last weights and its training state (step, seconds, optimizers)."""
    return out / "last.safetensors", out / "train_state.pt"


def read_state(state_file: pathlib.Path) -> dict:
    """The training state of a checkpoint (tensors and numbers only: nothing is unpickled)."""
    return torch.load(state_file, map_location="cpu", weights_only=True)


def write_checkpoint(model: torch.nn.Module, out: pathlib.Path, meta: dict, step: int, seconds: float,
                     state: dict) -> None:
    """``model``'s weights (``meta`` with the steps and seconds so far), then ``state`` with the step and
    seconds, into `checkpoint_files`; each file is written whole or not at all, the state last."""
    last, state_file = checkpoint_files(out)
    weights.save(model, last, {**meta, "steps": step, "seconds": round(seconds)})
    with atomic_output(state_file) as tmp:
        torch.save({"step": step, "seconds": seconds, **state}, tmp)
