"""`--reference` with a photo of a similar scene: does the hue share rise, for photos nobody picked?

For each evaluation clip, the K photos of a folder nearest to the clip (cosine similarity of the
default encoder's global feature, the mean of its deepest map, against frame 20's) are each given
as the first shot's reference (`vidcolor eval --reference-photo`'s `evaluate_photo_reference`, the
real pipeline); it prints each one's change of PSNR and hue share over the model alone, and per clip
how many photos raised the hue share. No photo is picked by eye, so the figure says what a user
with a roughly similar photo can expect (benchmarks/results/reference.md).

    python benchmarks/bench_reference_photos.py [--photos data/train] [--k 8] [--frames 40]
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile

import numpy as np
import torch

from vidcolor import color
from vidcolor.colorizer import Colorizer, Network
from vidcolor.eval.evaluate import open_frames
from vidcolor.eval.reference import evaluate_photo_reference
from vidcolor.io.media import is_image
from vidcolor.runtime import Runtime
from vidcolor.io.reference import load_reference

ROOT = pathlib.Path(__file__).resolve().parent.parent
CLIPS = ("bikes.mp4", "carphone_pristine.mp4", "tree.avi", "vtest.avi")


@torch.inference_mode()
def global_feature(model, rgb: np.ndarray) -> torch.Tensor:
    """The encoder's deepest map, averaged and unit length, for an RGB uint8 picture at 224 short side."""
    t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0
    s = 224 / min(t.shape[-2:])
    t = torch.nn.functional.interpolate(t, size=(round(t.shape[-2] * s), round(t.shape[-1] * s)), mode="area")
    x = ((color.luma(t) - 0.5) / 0.5).expand(-1, 3, -1, -1)
    deep = model.encoder.features(x)[-1].mean(dim=(2, 3))[0]
    return deep / deep.norm()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=pathlib.Path, default=ROOT / "data" / "eval")
    ap.add_argument("--photos", type=pathlib.Path, default=ROOT / "data" / "train")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--frames", type=int, default=40)
    args = ap.parse_args()
    colorizer = Colorizer(network=Network.load("lite_unet", runtime=Runtime(device="cpu", batch=8)))
    paths = sorted(p for p in args.photos.iterdir() if is_image(p))
    feats = torch.stack([global_feature(colorizer.model, load_reference(p)) for p in paths])
    print("| clip | photo | similarity | PSNR gain dB | hue share | gain | gain over steadied |\n"
          "|---|---|---:|---:|---:|---:|---:|")
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        for clip in CLIPS:
            _, frames = open_frames(args.data / clip, 21)
            frame = list(frames)[-1]
            sims = feats @ global_feature(colorizer.model, frame)
            gains = []
            for rank, i in enumerate(sims.argsort(descending=True)[:args.k].tolist()):
                result = evaluate_photo_reference(args.data / clip, paths[i], {"lite_unet": colorizer},
                                                  pathlib.Path(tmp) / f"{clip}-{rank}", max_frames=args.frames,
                                                  progress=False)
                row = next(r for r in result["rows"] if "gain_hue" in r)
                gains.append(row["gain_hue"])
                print(f"| {clip} | {paths[i].name} | {float(sims[i]):.3f} | {row['gain_psnr']:+.2f} | "
                      f"{row['hue_share']:.3f} | {row['gain_hue']:+.3f} | {row['gain_hue_steadied']:+.3f} |", flush=True)
            summary.append(f"{clip}: hue share raised by {sum(g > 0 for g in gains)} of {len(gains)} photos, "
                           f"median change {np.median(gains):+.3f}")
    print("\n" + "\n".join(summary))


if __name__ == "__main__":
    main()
