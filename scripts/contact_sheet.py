"""One picture of the same evaluation frames colorized by every model with shipped weights.

Rows: the grayscale input, each model (from its luma alone), the colour original.
Columns: one frame of each evaluation video. Written to docs/models.png for the README.

    python scripts/contact_sheet.py [--data data/eval] [--out docs/models.png] [--height 150]
"""

from __future__ import annotations

import argparse
import pathlib

import av
import cv2
import numpy as np

from vidcolor import weights
from vidcolor.colorizer import Colorizer
from vidcolor.models import get_model, list_models
from vidcolor.runtime import Runtime

ROOT = pathlib.Path(__file__).resolve().parent.parent
FRAMES = {"bikes.mp4": 40, "carphone_pristine.mp4": 60, "tree.avi": 30, "vtest.avi": 120}


def frame_of(path: pathlib.Path, index: int) -> np.ndarray:
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i == index:
                return f.to_ndarray(format="rgb24")
    raise ValueError(f"{path} has fewer than {index + 1} frames")


def label(tile: np.ndarray, text: str) -> np.ndarray:
    out = tile.copy()
    cv2.putText(out, text, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=pathlib.Path, default=ROOT / "data" / "eval")
    p.add_argument("--out", type=pathlib.Path, default=ROOT / "docs" / "models.png")
    p.add_argument("--height", type=int, default=150)
    args = p.parse_args()
    originals = [frame_of(args.data / f, i) for f, i in FRAMES.items()]
    h = args.height
    fit = [cv2.resize(o, (round(o.shape[1] * h / o.shape[0]), h), interpolation=cv2.INTER_AREA) for o in originals]
    gray = [np.repeat(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2) for f in fit]
    rows = [("input (luma)", gray)]
    for name in list_models():
        spec = get_model(name)
        if spec.weights is None or not (weights.shipped_dir() / spec.weights).is_file():
            continue
        c = Colorizer(name, None, Runtime(device="cpu", batch=1))
        rows.append((name, [c.fresh().colorize_rgb([g])[0] for g in gray]))
    rows.append(("original", fit))
    lines = [np.concatenate([label(t, name if j == 0 else "") for j, t in enumerate(tiles)], axis=1)
             for name, tiles in rows]
    sheet = np.concatenate(lines, axis=0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out}: {len(rows) - 2} models x {len(FRAMES)} frames")


if __name__ == "__main__":
    main()
