"""The README's picture of `--reference` with a photo of a similar scene (not from the clip).

Rows: one evaluation clip each. Columns: the photo given as the reference, the grayscale frame,
the default model alone, the model with the photo as the reference of the shot (as
`vidcolor clip --reference photo.jpg --reference-frame 0` colours it), the colour original.
The photos are training photos of the project's data set, picked by eye (bikes, carphone and tree
among the eight nearest to the clip by the encoder's global feature; vtest among the photos with
the most green in their lower half); the scores are `vidcolor eval --reference-photo`'s
(benchmarks/results/reference.md).

    python scripts/reference_photos.py [--data data/eval] [--photos data/train] [--out docs/reference_photos.png]
"""

from __future__ import annotations

import argparse
import pathlib

import av
import cv2
import numpy as np
import torch

from vidcolor import color
from vidcolor.colorizer import Colorizer
from vidcolor.runtime import Runtime
from vidcolor.io.reference import load_reference

from contact_sheet import label

ROOT = pathlib.Path(__file__).resolve().parent.parent
#: clip -> (photo, the frame shown)
PAIRS = {"bikes.mp4": ("aibench-0113.jpg", 20), "carphone_pristine.mp4": ("kphotoalbum-0012.jpg", 60),
         "tree.avi": ("tuxtemplates-0012.jpg", 30), "vtest.avi": ("foolbox-0006.jpg", 60)}


def first_frames(path: pathlib.Path, count: int) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        out = []
        for f in c.decode(video=0):
            out.append(f.to_ndarray(format="rgb24"))
            if len(out) == count:
                return out
    raise ValueError(f"{path} has fewer than {count} frames")


def coloured(model: Colorizer, frames: list[np.ndarray], photo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frame -1 of ``frames`` by the model alone and with ``photo`` as the first shot's reference."""
    alone = model.fresh().colorize_rgb([f.copy() for f in frames[-1:]])[0]
    twin = model.referenced([photo], names=["photo"], pinned=[0])

    def read():
        for i in range(0, len(frames), 8):
            rgb = torch.from_numpy(np.stack(frames[i:i + 8])).permute(0, 3, 1, 2).float() / 255.0
            yield color.luma(rgb)

    twin.plan_reference(read)
    out = []
    for i in range(0, len(frames), 8):
        out += twin.colorize_rgb([f.copy() for f in frames[i:i + 8]])
    return alone, out[-1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=pathlib.Path, default=ROOT / "data" / "eval")
    p.add_argument("--photos", type=pathlib.Path, default=ROOT / "data" / "train")
    p.add_argument("--out", type=pathlib.Path, default=ROOT / "docs" / "reference_photos.png")
    p.add_argument("--height", type=int, default=150)
    args = p.parse_args()
    model = Colorizer("default", None, Runtime(device="cpu"))
    h, rows = args.height, []
    for clip, (photo_name, at) in PAIRS.items():
        frames = first_frames(args.data / clip, at + 1)
        photo = load_reference(args.photos / photo_name)
        alone, referenced = coloured(model, frames, photo)
        gray = np.repeat(cv2.cvtColor(frames[-1], cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
        tiles = [(photo, "photo"), (gray, f"{clip.split('.')[0].split('_')[0]} {at}"), (alone, "alone"),
                 (referenced, "with the photo"), (frames[-1], "original")]
        w = round(frames[-1].shape[1] * h / frames[-1].shape[0])
        rows.append(np.concatenate([label(cv2.resize(t, (w if i else round(t.shape[1] * h / t.shape[0]), h),
                                                     interpolation=cv2.INTER_AREA), text)
                                    for i, (t, text) in enumerate(tiles)], axis=1))
    width = max(r.shape[1] for r in rows)
    sheet = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
