"""Old-film damage for evaluation: `vidcolor eval --degrade`.

No archival reel with colour ground truth exists, so robustness is measured by
damaging the luminance of colour clips the way old film is damaged and scoring
the colorizers on it against the clean original. Everything is a pure
function of (seed, frame index), so runs are repeatable:

* luminance flicker: a global gain and offset drawn per frame (uneven exposure
  and development, the dominant artefact of old reels);
* grain: Gaussian noise, stronger in the mid-tones, blurred slightly as
  emulsion grain is larger than a pixel;
* vertical scratches: a few thin bright or dark lines that drift slowly
  sideways and live for a run of frames, as a projector's scratches do;
* dust: small dark and bright specks, new on every frame.

Only the luma is damaged; the frames handed on are gray (R = G = B).
"""

from __future__ import annotations

import cv2
import numpy as np


#: the kinds of damage, in the order `OldFilm` applies them.
KINDS = ("flicker", "grain", "scratches", "dust")


class OldFilm:
    def __init__(self, seed: int = 0, flicker: float = 0.12, grain: float = 0.035, scratches: int = 3,
                 dust: int = 12):
        self.seed, self.flicker, self.grain = seed, flicker, grain
        self.scratches, self.dust = scratches, dust

    @classmethod
    def only(cls, kinds, seed: int = 0) -> "OldFilm":
        """The damage of ``kinds`` (names from `KINDS`) alone, each at its default strength.

        The frames' random draws do not depend on the choice, so the grain of
        ``only(["grain"])`` is the grain of the full damage: the kinds' costs can be told apart.
        """
        kinds = set(kinds)
        unknown = kinds - set(KINDS)
        if unknown:
            raise ValueError(f"unknown damage {', '.join(sorted(unknown))}; choose from {', '.join(KINDS)}")
        return cls(seed, **{k: 0 for k in KINDS if k not in kinds})

    @property
    def name(self) -> str:
        """``oldfilm``, or ``oldfilm-grain+dust`` where only some kinds of damage are on."""
        on = [k for k in KINDS if getattr(self, k)]
        return "oldfilm" if len(on) == len(KINDS) else "oldfilm-" + ("+".join(on) or "none")

    def luma(self, index: int, y: np.ndarray) -> np.ndarray:
        """Damaged copy of luma ``y`` (H, W) float in 0..1 for frame ``index``."""
        h, w = y.shape
        rng = np.random.default_rng([self.seed, index])
        gain = 1.0 + self.flicker * float(np.clip(rng.normal(), -2, 2))
        offset = 0.3 * self.flicker * float(np.clip(rng.normal(), -2, 2))
        out = y * gain + offset
        noise = rng.normal(0.0, 1.0, (h, w)).astype(np.float32)
        noise = cv2.GaussianBlur(noise, (0, 0), 0.7)
        out = out + self.grain * 2.0 * noise * (0.35 + np.sqrt(np.clip(y * (1 - y), 0, None)))
        for k in range(self.scratches):
            # A scratch lives for 30 frames; its position drifts a little within that life.
            life, phase = divmod(index + 11 * k, 30)
            srng = np.random.default_rng([self.seed, 1000 + k, life])
            if srng.random() < 0.35:
                continue
            x = int(srng.uniform(0.05, 0.95) * w + phase * srng.uniform(-0.4, 0.4)) % w
            top, length = int(srng.uniform(0, 0.3) * h), int(srng.uniform(0.5, 1.0) * h)
            width = 1 + int(srng.random() < 0.3)
            out[top:top + length, x:x + width] = 0.92 if srng.random() < 0.6 else 0.08
        for _ in range(self.dust):
            cx, cy = int(rng.integers(w)), int(rng.integers(h))
            r = int(rng.integers(1, max(2, min(h, w) // 80) + 1))
            cv2.circle(out, (cx, cy), r, 0.05 if rng.random() < 0.7 else 0.95, -1)
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    def __call__(self, index: int, rgb: np.ndarray) -> np.ndarray:
        """Gray RGB uint8 of frame ``index`` damaged (its BT.601 luma is what colorizers read)."""
        y = (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114) / 255.0
        d = (self.luma(index, y.astype(np.float32)) * 255.0 + 0.5).astype(np.uint8)
        return np.repeat(d[..., None], 3, axis=2)
