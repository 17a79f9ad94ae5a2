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

from vidcolor.temporal.deflicker import Deflicker
from vidcolor.temporal.recurrence import Recurrence
from vidcolor.temporal.scenecut import SceneCutDetector
from vidcolor.temporal.stabilizer import DEFAULT_ALPHA, Stabilizer, warmup_frames

__all__ = ["DEFAULT_ALPHA", "Deflicker", "Recurrence", "SceneCutDetector", "Stabilizer", "warmup_frames"]
