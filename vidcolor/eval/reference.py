"""``vidcolor eval --reference``: the original colour of one frame of each clip as the reference.

Each model is scored three ways on the same frames: alone, steadied (``+stabilize``) and with the
reference (``+reference``, `vidcolor.colorizer.Colorizer.referenced`), the reference being the
clip's own colour at frame 0, its middle frame or a given one. Beside `evaluate`'s rows, each row
gets the PSNR over the frames other than the reference's (``psnr_others``), over the frames before
and after it (``psnr_before``, ``psnr_after``) and the gain of each over the model alone.
"""

from __future__ import annotations

import json
import math
from contextlib import closing
from pathlib import Path

import numpy as np
import torch

from vidcolor import color
from vidcolor.errors import InvalidInput
from vidcolor.eval.evaluate import evaluate, open_frames

__all__ = ["REFERENCE", "evaluate_reference", "reference_index"]

#: suffix of the rows coloured with the reference
REFERENCE = "+reference"


def reference_index(at: str, frames: int) -> int:
    """The frame ``at`` names ("first", "middle" or a number) in a clip of ``frames`` frames."""
    if at in ("first", "0"):
        return 0
    if at == "middle":
        return frames // 2
    try:
        k = int(at)
    except ValueError:
        raise InvalidInput(f"--reference {at}: give first, middle or a frame number") from None
    if not 0 <= k < frames:
        raise InvalidInput(f"--reference {at}: the clip has frames 0..{frames - 1}")
    return k


def _referenced(colorizer, frames: list[np.ndarray], k: int, batch: int):
    """A colorize callable for `evaluate` whose plan (pass 1, and the backward pass) is made on first call,
    so its time counts in the row's seconds."""
    twin = colorizer.referenced([frames[k]], names=[f"frame {k}"])
    state = {"planned": False}

    def read():
        for i in range(0, len(frames), batch):
            rgb = torch.from_numpy(np.stack(frames[i:i + batch])).permute(0, 3, 1, 2).float() / 255.0
            yield color.luma(rgb)

    def colorize(batch_frames: list[np.ndarray]) -> list[np.ndarray]:
        if not state["planned"]:
            twin.plan_reference(read)
            state["planned"] = True
        return twin.colorize_rgb(batch_frames)

    return colorize


def _mean(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def evaluate_reference(source: Path, models: dict, out_dir: Path, *, at: str = "first", batch: int = 8,
                       max_frames: int | None = 100, stabilize: bool = True, progress: bool = True) -> dict:
    """Score ``models`` ({name: Colorizer}) on ``source`` alone, steadied and with the reference of frame ``at``."""
    info, it = open_frames(Path(source), max_frames)
    with closing(it):
        frames = list(it)
    if not frames:
        raise InvalidInput(f"{source}: no frames could be decoded; check that it is a colour video and not empty")
    k = reference_index(at, len(frames))
    runs = {}
    for name, c in models.items():
        runs[name] = c.fresh().colorize_rgb
        if stabilize:
            runs[f"{name}+stabilize"] = c.stabilized().colorize_rgb
        runs[name + REFERENCE] = _referenced(c, frames, k, batch)
    out_dir = Path(out_dir)
    result = evaluate(Path(source), runs, out_dir, batch=batch, max_frames=max_frames, progress=progress)
    per = result["per_frame"]["psnr"]
    for row in result["rows"]:
        p = per.get(row["name"])
        if p is None:
            continue
        row["psnr_others"] = _mean(p[:k] + p[k + 1:])
        row["psnr_before"] = _mean(p[:k]) if k else math.nan
        row["psnr_after"] = _mean(p[k + 1:])
    by_name = {row["name"]: row for row in result["rows"]}
    for name in models:
        base, ref = by_name[name], by_name[name + REFERENCE]
        for key in ("psnr_others", "psnr_before", "psnr_after"):
            ref["gain_" + key.removeprefix("psnr_")] = ref[key] - base[key]
    result["reference_frame"] = k
    stem = result["name"]
    (out_dir / f"{stem}-reference.json").write_text(_json(result, k))
    return result


def _json(result: dict, k: int) -> str:
    def safe(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {a: safe(b) for a, b in v.items()}
        if isinstance(v, list):
            return [safe(b) for b in v]
        return v

    return json.dumps(safe({"source": result["source"], "reference_frame": k, "rows": result["rows"]}), indent=1)


def reference_table(results: list[dict]) -> str:
    """A Markdown table of the reference rows' figures, one line per clip and colorizer."""
    lines = ["| clip | ref frame | colorizer | PSNR others | gain | before gain | after gain | colourful. ratio "
             "| flicker | floor | seconds |", "|" + "---|" * 11]
    for r in results:
        floor = next(row["flicker"] for row in r["rows"] if row["name"] == "original")
        for row in r["rows"]:
            if row["name"] in ("gray", "original"):
                continue

            def f(key, fmt="{:.2f}"):
                v = row.get(key)
                return "" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)

            lines.append(f"| {r['name']} | {r['reference_frame']} | {row['name']} | {f('psnr_others')} | "
                         f"{f('gain_others')} | {f('gain_before')} | {f('gain_after')} | "
                         f"{f('colourfulness_ratio', '{:.3f}')} | {f('flicker', '{:.3f}')} | {floor:.3f} | "
                         f"{f('seconds', '{:.1f}')} |")
    return "\n".join(lines)
