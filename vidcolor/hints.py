"""User colour hints for models that take them (SIGGRAPH17): `--hints FILE`.

Two kinds of file:

* JSON: a list of points, ``{"frame": 12, "x": 320, "y": 180, "color": "#3a6ea5"}``
  (``color`` may also be ``[r, g, b]`` in 0..255; ``x``, ``y`` are pixels of the
  video frame, from its top-left corner; ``frame`` counts the frames colorized,
  from 0; a point without ``frame`` applies to every frame). Optional
  ``"radius"``: the half-size of the square patch painted, in working-size
  pixels (default 1, a 3x3 patch, the size of a click in the official demo's
  scale).
* PNG with an alpha channel: its opaque pixels (alpha >= 128) are hints of their
  colour on every frame; the picture is scaled to the frame's size.

A hint gives ab only: the luminance stays the frame's own, as everywhere in
vidcolor. The hints reach the network as SIGGRAPH17's inputs: ab at the hinted
pixels of the working-size grid and a mask that is 1 there.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import cv2
import numpy as np
import torch

from . import color
from .errors import InvalidInput


@dataclasses.dataclass(frozen=True)
class Point:
    frame: int | None  # None: every frame
    x: float
    y: float
    rgb: tuple[int, int, int]
    radius: int = 1


def _rgb(value, path, k) -> tuple[int, int, int]:
    if isinstance(value, str) and value.startswith("#") and len(value) == 7:
        try:
            return tuple(int(value[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
        except ValueError:
            pass
    if isinstance(value, (list, tuple)) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value):
        if all(0 <= v <= 255 for v in value):
            return tuple(int(round(v)) for v in value)  # type: ignore[return-value]
    raise InvalidInput(f"{path}: hint {k} has color {value!r}; give \"#rrggbb\" or [r, g, b] in 0..255")


class Hints:
    """Hints by frame, turned into (ab, mask) maps at any working size."""

    def __init__(self, points: list[Point] = (), image: np.ndarray | None = None, source: str = "hints"):
        self.points = list(points)
        #: RGBA uint8 picture whose opaque pixels are hints on every frame, or None.
        self.image = image
        self.source = source

    @classmethod
    def load(cls, path) -> "Hints":
        path = pathlib.Path(path).expanduser()
        if not path.is_file():
            raise InvalidInput(f"{path}: no such hints file; give a .json list of points or a .png with alpha")
        if path.suffix.lower() == ".png":
            img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if img is None or img.ndim != 3 or img.shape[2] != 4:
                raise InvalidInput(f"{path}: a hints PNG needs an alpha channel (opaque pixels are the hints)")
            return cls(image=cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA), source=str(path))
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidInput(f"{path}: not JSON ({exc}); give a list of "
                               '{"frame": N, "x": X, "y": Y, "color": "#rrggbb"}') from None
        if not isinstance(data, list):
            raise InvalidInput(f"{path}: expected a JSON list of points")
        points = []
        for k, p in enumerate(data):
            if not isinstance(p, dict) or not all(isinstance(p.get(a), (int, float)) for a in ("x", "y")):
                raise InvalidInput(f"{path}: hint {k} needs numbers x and y (pixels of the frame)")
            frame = p.get("frame")
            if frame is not None and (not isinstance(frame, int) or frame < 0):
                raise InvalidInput(f"{path}: hint {k} has frame {frame!r}; give a frame number >= 0 or leave it out")
            radius = p.get("radius", 1)
            if not isinstance(radius, int) or not 0 <= radius <= 16:
                raise InvalidInput(f"{path}: hint {k} has radius {radius!r}; give a whole number 0..16")
            points.append(Point(frame, float(p["x"]), float(p["y"]), _rgb(p.get("color"), path, k), radius))
        return cls(points, source=str(path))

    def maps(self, frame: int, frame_size: tuple[int, int], size: tuple[int, int]):
        """(ab (2,h,w), mask (1,h,w)) float tensors at working ``size`` for ``frame``, or None without hints."""
        h, w = size
        fh, fw = frame_size
        ab = torch.zeros(2, h, w)
        mask = torch.zeros(1, h, w)
        found = False
        if self.image is not None:
            img = cv2.resize(self.image, (w, h), interpolation=cv2.INTER_NEAREST)
            on = torch.from_numpy(img[..., 3] >= 128)
            if on.any():
                rgb = torch.from_numpy(img[..., :3]).permute(2, 0, 1)[None].float() / 255
                ab = torch.where(on, color.rgb_to_lab(rgb)[0, 1:], ab)
                mask[0][on] = 1.0
                found = True
        for p in self.points:
            if p.frame is not None and p.frame != frame:
                continue
            if not (0 <= p.x < fw and 0 <= p.y < fh):
                raise InvalidInput(f"{self.source}: the hint at ({p.x:g}, {p.y:g}) lies outside the "
                                   f"{fw}x{fh} frame; give pixel coordinates of the frame")
            cx, cy = int(p.x * w / fw), int(p.y * h / fh)
            ys, xs = slice(max(0, cy - p.radius), cy + p.radius + 1), slice(max(0, cx - p.radius), cx + p.radius + 1)
            lab = color.rgb_to_lab(torch.tensor(p.rgb, dtype=torch.float32).view(1, 3, 1, 1) / 255)
            ab[:, ys, xs] = lab[0, 1:]
            mask[:, ys, xs] = 1.0
            found = True
        return (ab, mask) if found else None
