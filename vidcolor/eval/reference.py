"""``vidcolor eval --reference``: the original colour of one frame of each clip as the reference.

Each model is scored three ways on the same frames: alone, steadied (``+stabilize``) and with the
reference (``+reference``, `vidcolor.colorizer.Colorizer.referenced`), the reference being the
clip's own colour at frame 0, its middle frame or a given one. Beside `evaluate`'s rows, each row
gets the PSNR over the frames other than the reference's (``psnr_others``), over the frames before
and after it (``psnr_before``, ``psnr_after``), over the other frames of its shot (``psnr_shot``: the
plan's cuts; the issue's targets are on these) and the gain of each over the model alone; and on the
shot, the colourfulness ratio to the original's and the flicker beside the original's own floor.
The reference is pinned to its frame (`--reference-frame`), so the plan cannot pick another.
With ``--reference-photo`` the reference is instead a colour photo of a similar scene (not of the clip),
given to the first shot (as `--reference-frame 0` does), and each row says how the hue share moved.
"""

from __future__ import annotations

import json
import math
from contextlib import closing
from pathlib import Path

import numpy as np
import torch

from vidcolor import color
from vidcolor.atomic import atomic_output
from vidcolor.errors import InvalidInput, OutputError, one_line
from vidcolor.eval.evaluate import evaluate, open_frames
from vidcolor.eval.metrics import colourfulness
from vidcolor.io.reference import load_reference

__all__ = ["REFERENCE", "evaluate_photo_reference", "evaluate_reference", "photo_table", "reference_index",
           "reference_table", "write_atomically"]

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


def _recorded(colorize, into: list[float]):
    """``colorize`` that also notes each output frame's colourfulness (for the shot's own ratio)."""
    def run(batch_frames: list[np.ndarray]) -> list[np.ndarray]:
        out = colorize(batch_frames)
        into.extend(colourfulness(np.asarray(o)) for o in out)
        return out

    return run


def _referenced(colorizer, frames: list[np.ndarray], k: int | None, batch: int, photo: np.ndarray | None = None,
                name: str = "photo"):
    """A colorize callable for `evaluate` whose plan (pass 1, and the backward pass) is made on first call,
    so its time counts in the row's seconds; and the referenced colorizer (its plan says the shot).
    The reference is frame ``k``'s colour, pinned to it, or ``photo``, pinned to the first frame's shot (a
    photo of a similar scene matches no frame closely: a user gives it to the shot with --reference-frame)."""
    if photo is None:
        twin = colorizer.referenced([frames[k]], names=[f"frame {k}"], pinned=[k])
    else:
        twin = colorizer.referenced([photo], names=[name], pinned=[0])
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

    return colorize, twin


def _clip_frames(source: Path, max_frames: int | None) -> list[np.ndarray]:
    """The clip's first ``max_frames`` colour frames (RGB uint8), or one line saying it has none."""
    _, it = open_frames(Path(source), max_frames)
    with closing(it):
        frames = list(it)
    if not frames:
        raise InvalidInput(f"{source}: no frames could be decoded; check that it is a colour video and not empty")
    return frames


def _mean(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def evaluate_reference(source: Path, models: dict, out_dir: Path, *, at: str = "first", batch: int = 8,
                       max_frames: int | None = 100, stabilize: bool = True, progress: bool = True) -> dict:
    """Score ``models`` ({name: Colorizer}) on ``source`` alone, steadied and with the reference of frame ``at``."""
    frames = _clip_frames(source, max_frames)
    k = reference_index(at, len(frames))
    runs, cf, twin = {}, {}, None
    for name, c in models.items():
        runs[name] = c.fresh().colorize_rgb
        if stabilize:
            runs[f"{name}+stabilize"] = c.stabilized().colorize_rgb
        runs[name + REFERENCE], twin = _referenced(c, frames, k, batch)
    runs = {name: _recorded(run, cf.setdefault(name, [])) for name, run in runs.items()}
    out_dir = Path(out_dir)
    result = evaluate(Path(source), runs, out_dir, batch=batch, max_frames=max_frames, progress=progress)
    # the shot the reference serves (the plan's cuts): the targets are on its frames
    served = twin.reference.served_at(k) if twin is not None else None
    s, e = (served.start, served.end) if served is not None else (k, k + 1)
    shot = [t for t in range(s, e) if t != k]
    original_cf = [colourfulness(f) for f in frames]
    per, flicker = result["per_frame"]["psnr"], result["per_frame"]["flicker"]
    floor = _mean([flicker["original"][t] for t in shot if t > s])
    for row in result["rows"]:
        p = per.get(row["name"])
        if p is None:
            continue
        row["psnr_others"] = _mean(p[:k] + p[k + 1:])
        row["psnr_before"] = _mean(p[:k]) if k else math.nan
        row["psnr_after"] = _mean(p[k + 1:])
        row["psnr_shot"] = _mean([p[t] for t in shot])
        row["flicker_shot"] = _mean([flicker[row["name"]][t] for t in shot if t > s])  # pairs inside the shot
        row["flicker_floor_shot"] = floor
        if row["name"] in cf:
            row["colourfulness_ratio_shot"] = _mean([cf[row["name"]][t] for t in shot]) / max(
                1e-9, _mean([original_cf[t] for t in shot]))
    by_name = {row["name"]: row for row in result["rows"]}
    for name in models:
        base, ref = by_name[name], by_name[name + REFERENCE]
        for key in ("psnr_others", "psnr_before", "psnr_after", "psnr_shot"):
            ref["gain_" + key.removeprefix("psnr_")] = ref[key] - base[key]
    result["reference_frame"] = k
    result["shot"] = [s, e]
    stem = result["name"]
    write_atomically(out_dir / f"{stem}-reference.json", _json(result, k))
    return result


def evaluate_photo_reference(source: Path, photo: Path, models: dict, out_dir: Path, *, batch: int = 8,
                             max_frames: int | None = 100, progress: bool = True) -> dict:
    """Score ``models`` on ``source`` alone, steadied, and with ``photo`` (a colour picture of a similar scene,
    not of the clip) as the reference of its first shot. Rows gain ``gain_psnr`` and ``gain_hue`` (the hue
    share's rise over the model alone, the issue's target), ``gain_hue_steadied`` (over ``+stabilize``: with a
    reference, frames it does not serve are steadied, so this is the photo's own share of the rise) and
    ``served`` (the frames it served)."""
    frames = _clip_frames(source, max_frames)
    picture = load_reference(photo)
    runs, twins = {}, {}
    for name, c in models.items():
        runs[name] = c.fresh().colorize_rgb
        runs[f"{name}+stabilize"] = c.stabilized().colorize_rgb
        runs[name + REFERENCE], twins[name] = _referenced(c, frames, None, batch, picture, Path(photo).name)
    result = evaluate(Path(source), runs, Path(out_dir), batch=batch, max_frames=max_frames, progress=progress)
    by_name = {row["name"]: row for row in result["rows"]}
    for name, twin in twins.items():
        base, ref = by_name[name], by_name[name + REFERENCE]
        ref["gain_psnr"] = ref["psnr"] - base["psnr"]
        ref["gain_hue"] = ref["hue_share"] - base["hue_share"]
        ref["gain_hue_steadied"] = ref["hue_share"] - by_name[f"{name}+stabilize"]["hue_share"]
        ref["served"] = sum(sv.end - sv.start for sv in twin.reference.served)
    result["photo"] = str(photo)
    write_atomically(Path(out_dir) / f"{result['name']}-photo.json", _json(result, None))
    return result


def photo_table(results: list[dict]) -> str:
    """A Markdown table of the photo-reference rows: PSNR, hue share and colourfulness, with and without."""
    lines = ["| clip | photo | colorizer | frames served | PSNR dB | gain | hue ≤45° | gain | gain over steadied | "
             "colourful. ratio |", "|" + "---|" * 10]
    for r in results:
        for row in r["rows"]:
            if row["name"] in ("gray", "original"):
                continue
            gains = [f"{row[k]:+.{d}f}" if k in row else ""
                     for k, d in (("gain_psnr", 2), ("gain_hue", 3), ("gain_hue_steadied", 3))]
            lines.append(f"| {r['name']} | {Path(r['photo']).name} | {row['name']} | {row.get('served', '')} | "
                         f"{row['psnr']:.2f} | {gains[0]} | {row['hue_share']:.3f} | {gains[1]} | {gains[2]} | "
                         f"{row['colourfulness_ratio']:.3f} |")
    return "\n".join(lines)


def write_atomically(path: Path, text: str) -> None:
    """``text`` into ``path``, which appears whole or not at all."""
    try:
        with atomic_output(path) as tmp:
            tmp.write_text(text)
    except OSError as err:
        raise OutputError(f"{path.parent}: cannot write the evaluation report ({one_line(err)}); "
                          "choose a writable folder") from err


def _json(result: dict, k: int) -> str:
    def safe(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {a: safe(b) for a, b in v.items()}
        if isinstance(v, list):
            return [safe(b) for b in v]
        return v

    return json.dumps(safe({"source": result["source"], "reference_frame": k, "photo": result.get("photo"),
                            "shot": result.get("shot"), "rows": result["rows"]}), indent=1)


def reference_table(results: list[dict]) -> str:
    """A Markdown table of the reference rows' figures, one line per clip and colorizer."""
    lines = ["| clip | ref frame | shot | colorizer | PSNR shot | gain shot | gain before | gain after | "
             "colourful. ratio shot | flicker shot | floor shot | seconds |", "|" + "---|" * 12]
    for r in results:
        for row in r["rows"]:
            if row["name"] in ("gray", "original"):
                continue

            def f(key, fmt="{:.2f}"):
                v = row.get(key)
                return "" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)

            s, e = r.get("shot", (None, None))
            lines.append(f"| {r['name']} | {r['reference_frame']} | {s}-{e - 1} | {row['name']} | {f('psnr_shot')} | "
                         f"{f('gain_shot')} | {f('gain_before')} | {f('gain_after')} | "
                         f"{f('colourfulness_ratio_shot', '{:.3f}')} | {f('flicker_shot', '{:.3f}')} | "
                         f"{f('flicker_floor_shot', '{:.3f}')} | {f('seconds', '{:.1f}')} |")
    return "\n".join(lines)
