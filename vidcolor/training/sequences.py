"""Short colour sequences for training temporal models.

Video models learn from consecutive frames, and the training set is mostly
still photos. `synthetic_sequence` films a still with a virtual camera: a
window that pans, zooms and rotates smoothly over the photo with a little
hand-held shake, sometimes with a foreground patch moving across the scene on
its own path (so that not every pixel follows the camera, and some are
uncovered), and a lighting that drifts and flickers from frame to frame.
`clip_sequence` takes real consecutive frames from colour footage the user
put among the photos, under one fixed crop.

Every function draws its randomness from the ``numpy.random.Generator`` it is
given, so a seed reproduces the sequences exactly.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from vidcolor.errors import InvalidInput
from vidcolor.io.media import is_video
from vidcolor.training.common import shrink, training_files

#: the per-frame camera motion's limits, as fractions of the crop (pan), of the
#: scale (zoom) and in degrees (rotation). Real footage at 24-30 fps moves a few
#: pixels a frame; beyond that, consecutive frames barely overlap at 96 px.
MAX_PAN = 0.04
MAX_ZOOM = 0.015
MAX_ROTATION = 0.8
SHAKE = 0.006
#: frame-to-frame brightness flicker (relative, standard deviation) and the
#: largest drift of exposure over a sequence.
FLICKER = 0.03
DRIFT = 0.12
#: probability that a sequence has a foreground patch moving on its own.
SPRITE_PROB = 0.5


@dataclasses.dataclass
class Sources:
    """What sequences are cut from: still photos and runs of consecutive clip frames."""

    stills: list[np.ndarray]
    #: each (T, h, w, 3) uint8, T consecutive frames of one clip.
    clips: list[np.ndarray]

    @property
    def clip_frames(self) -> int:
        return sum(len(c) for c in self.clips)


def _window(center, scale: float, angle: float, crop: int) -> np.ndarray:
    """The 2x3 map from output pixel to source pixel of a rotated, scaled crop window."""
    c, s = math.cos(math.radians(angle)) * scale, math.sin(math.radians(angle)) * scale
    half = (crop - 1) / 2
    # src = center + S R (p - half)
    return np.array([[c, -s, center[0] - c * half + s * half],
                     [s, c, center[1] - s * half - c * half]], np.float64)


def _keep_inside(center: np.ndarray, scale: float, angle: float, crop: int, w: int, h: int) -> np.ndarray:
    # The rotated window's half-extent; where the photo is too small for it,
    # the reflected border fills in rather than a black one.
    a = math.radians(angle)
    half = crop * scale / 2 * (abs(math.cos(a)) + abs(math.sin(a)))
    lo = np.array([min(half, w / 2), min(half, h / 2)])
    hi = np.array([max(w - half, w / 2), max(h - half, h / 2)])
    return np.clip(center, lo, hi)


def synthetic_sequence(img: np.ndarray, length: int, crop: int, rng: np.random.Generator) -> np.ndarray:
    """(length, crop, crop, 3) uint8 frames of a virtual camera moving over RGB ``img``."""
    if length < 1 or crop < 8:
        raise InvalidInput(f"a sequence needs at least one frame of at least 8 px (got {length} x {crop})")
    h, w = img.shape[:2]
    # Scale = source pixels per output pixel: the window covers between half and
    # all of the short side, as `vidcolor.training.train.random_batch`'s crops do.
    full = min(h, w) / crop
    scale = full * rng.uniform(0.5, 0.95)
    angle = rng.normal(0, 3.0)
    center = np.array([rng.uniform(0, w), rng.uniform(0, h)])
    velocity = rng.uniform(-MAX_PAN, MAX_PAN, 2) * crop * scale
    zoom = math.exp(rng.uniform(-MAX_ZOOM, MAX_ZOOM))
    spin = rng.uniform(-MAX_ROTATION, MAX_ROTATION)
    # Exposure drifts linearly from start to end; flicker is independent per frame.
    gain0 = rng.uniform(1 - DRIFT, 1 + DRIFT)
    gain1 = gain0 * rng.uniform(1 - DRIFT, 1 + DRIFT)
    flip = rng.random() < 0.5

    sprite = None
    if rng.random() < SPRITE_PROB:
        sprite = _make_sprite(img, crop, rng)

    frames = np.empty((length, crop, crop, 3), np.uint8)
    for t in range(length):
        shake = rng.normal(0, SHAKE, 2) * crop * scale
        s = min(scale, full)
        inside = _keep_inside(center, s, angle, crop, w, h)
        # A bounce off the photo's edge keeps the camera over the picture.
        velocity[inside != center] *= -1
        center = inside
        m = _window(center + shake, s, angle, crop)
        frame = cv2.warpAffine(img, m, (crop, crop), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REFLECT_101)
        if sprite is not None:
            _paste(frame, sprite, t)
        gain = (gain0 + (gain1 - gain0) * t / max(length - 1, 1)) * (1 + rng.normal(0, FLICKER))
        frame = np.clip(frame.astype(np.float32) * gain, 0, 255).round().astype(np.uint8)
        frames[t] = frame[:, ::-1] if flip else frame
        center = center + velocity
        scale, angle = scale * zoom, angle + spin
    return frames


def _make_sprite(img: np.ndarray, crop: int, rng: np.random.Generator) -> dict:
    """A soft-edged elliptical patch of the photo and its straight path across the frame."""
    h, w = img.shape[:2]
    size = min(int(rng.integers(max(4, crop // 5), max(5, crop // 2))), h, w)
    y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    patch = img[y:y + size, x:x + size].astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    r = ((xx - (size - 1) / 2) / (size / 2)) ** 2 + ((yy - (size - 1) / 2) / (size / 2)) ** 2
    alpha = np.clip((1 - r) * 4, 0, 1)[..., None]
    start = rng.uniform(0, crop - size, 2)
    speed = rng.uniform(-2 * MAX_PAN, 2 * MAX_PAN, 2) * crop
    return {"patch": patch, "alpha": alpha, "start": start, "speed": speed}


def _paste(frame: np.ndarray, sprite: dict, t: int) -> None:
    size = sprite["patch"].shape[0]
    crop = frame.shape[0]
    x, y = np.round(sprite["start"] + sprite["speed"] * t).astype(int)
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + size, crop), min(y + size, crop)
    if x1 <= x0 or y1 <= y0:
        return
    p = sprite["patch"][y0 - y:y1 - y, x0 - x:x1 - x]
    a = sprite["alpha"][y0 - y:y1 - y, x0 - x:x1 - x]
    region = frame[y0:y1, x0:x1].astype(np.float32)
    frame[y0:y1, x0:x1] = (a * p + (1 - a) * region).round().astype(np.uint8)


def clip_sequence(clip: np.ndarray, length: int, crop: int, rng: np.random.Generator) -> np.ndarray:
    """(length, crop, crop, 3) uint8: consecutive frames of a clip run under one random crop."""
    t_max = len(clip) - length
    if t_max < 0:
        raise InvalidInput(f"a clip run of {len(clip)} frames is too short for sequences of {length}")
    h, w = clip.shape[1:3]
    t = int(rng.integers(t_max + 1))
    frames = clip[t:t + length]
    if min(h, w) < crop:
        s = crop / min(h, w)
        size = (max(crop, math.ceil(w * s)), max(crop, math.ceil(h * s)))
        frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in frames])
        h, w = frames.shape[1:3]
    y, x = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
    out = frames[:, y:y + crop, x:x + crop]
    return np.ascontiguousarray(out[:, :, ::-1] if rng.random() < 0.5 else out)


def random_sequences(sources: Sources, batch: int, length: int, crop: int,
                     rng: np.random.Generator) -> np.ndarray:
    """(batch, length, crop, crop, 3) uint8 sequences.

    A sequence comes from a clip with the share of clip frames among all
    training pictures (each still counts one), so footage is used as much
    as the same number of photos would be.
    """
    usable = [c for c in sources.clips if len(c) >= length]
    clip_frames = sum(len(c) for c in usable)
    p_clip = clip_frames / (clip_frames + len(sources.stills)) if clip_frames else 0.0
    out = np.empty((batch, length, crop, crop, 3), np.uint8)
    for i in range(batch):
        if rng.random() < p_clip:
            weights = np.array([len(c) for c in usable], np.float64)
            clip = usable[rng.choice(len(usable), p=weights / weights.sum())]
            out[i] = clip_sequence(clip, length, crop, rng)
        else:
            out[i] = synthetic_sequence(sources.stills[rng.integers(len(sources.stills))], length, crop, rng)
    return out


def clip_runs(path, short: int, frames: int, run: int) -> list[np.ndarray]:
    """Runs of ``run`` consecutive RGB frames of a colour video, about ``frames`` in all.

    The runs are spread evenly over the video so that a long clip gives
    several scenes rather than its first seconds; each frame is downscaled so
    its short side is at most ``short``.
    """
    import av

    runs_wanted = max(1, math.ceil(frames / run))
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        total = stream.frames or 0
        rate = stream.average_rate or stream.guessed_rate
        if not total and container.duration and rate:  # Matroska and others count no frames
            total = int(container.duration / av.time_base * rate)
        # Unknown length: runs back to back from the start.
        spacing = max(run, total // runs_wanted) if total else run
        runs, current = [], []
        for i, frame in enumerate(container.decode(stream)):
            if i % spacing < run:
                current.append(shrink(frame.to_ndarray(format="rgb24"), short))
                if len(current) == run:
                    runs.append(np.stack(current))
                    current = []
                    if len(runs) == runs_wanted:
                        break
        if len(current) >= 2:
            runs.append(np.stack(current))
    return runs


def load_sources(dirs, short: int, frames_per_video: int, run: int = 8) -> Sources:
    """Still photos and clip runs under ``dirs`` (folders or files), like `vidcolor.training.train.load_images`."""
    stills, clips = [], []
    for path in training_files(dirs):
        if is_video(path):
            try:
                clips += clip_runs(path, short, frames_per_video, run)
            except Exception as exc:  # noqa: BLE001 - one broken clip must not stop training on the rest
                import warnings

                warnings.warn(f"{path}: skipped, not decodable ({exc.__class__.__name__})", stacklevel=2)
            continue
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is not None and min(bgr.shape[:2]) >= 32:
            stills.append(shrink(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), short))
    if not stills and not clips:
        raise InvalidInput(f"{', '.join(map(str, dirs))}: no readable colour photos or clips to train on")
    return Sources(stills, clips)
