"""Measure colorizers against the colour original (the core of ``vidcolor eval``).

A colour video (or a folder of colour images) is read in batches; every
colorizer gets each batch, colorizes it from its luminance, and the result
is compared with the original frames. Nothing but the current batch and the
FlickerMeter's previous frame is held in memory, so long videos are fine.

Two references are always added beside the colorizers:
  * ``gray``: the "all chroma zero" baseline (R = G = B = BT.601 luma);
  * ``original``: the source itself, used only as the flicker floor (the warp
    error that flow errors, lighting and compression give even a perfect
    colorization).
"""

from __future__ import annotations

import itertools
import json
import math
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing
from pathlib import Path

import cv2
import numpy as np

from vidcolor.errors import InvalidInput, OutputError, one_line
from vidcolor.io.media import IMAGE_EXTS, is_image
from vidcolor.eval.metrics import (
    AUC_MAX_THRESHOLD,
    AucAccumulator,
    FlickerMeter,
    ab_errors,
    colourfulness,
    hue_hits,
    gray_baseline,
    psnr,
    ssim,
)

__all__ = ["Colorizer", "DAMAGED", "GRAY", "ORIGINAL", "evaluate", "markdown_table", "open_frames"]

Colorizer = Callable[[list[np.ndarray]], list[np.ndarray]]

GRAY = "gray"
ORIGINAL = FlickerMeter.ORIGINAL
#: with ``degrade``: the original's own ab on the damaged lightness, what a colorizer that keeps the
#: input's luma (as every one here does) would show if its chroma were perfect
DAMAGED = "original ab, damaged L"
#: with ``degrade`` and ``clean``: suffixes of the rows of each colorizer's run on the clean clip, and of
#: that run's colour on the damaged lightness (what the same colour measures as on the damaged clip)
CLEAN, CLEAN_ON_DAMAGED = ", clean", ", clean colour on damaged L"

# (key, header, format) of the Markdown table; arrows say which way is better
_COLUMNS = [
    ("psnr", "PSNR dB ↑", "{:.2f}"),
    ("ssim", "SSIM ↑", "{:.4f}"),
    ("ab_auc", "ab-AuC ↑", "{:.4f}"),
    ("colourfulness_ratio", "Colourful. ratio", "{:.3f}"),
    ("hue_share", "Hue ≤45° ↑", "{:.3f}"),
    ("flicker", "Flicker ab ↓", "{:.3f}"),
    ("flicker_ratio", "Flicker / floor ↓", "{:.2f}"),
    ("cdc", "CDC ↓", "{:.4f}"),
    ("frames", "Frames", "{:d}"),
    ("seconds", "Seconds", "{:.1f}"),
    ("fps", "FPS", "{:.1f}"),
]


def _natural_key(path: Path) -> list:
    # frame2.png before frame10.png
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def open_frames(source: Path, max_frames: int | None = None) -> tuple[dict, Iterator[np.ndarray]]:
    """Check ``source`` now and return (info, iterator of uint8 RGB frames).

    ``info`` has ``kind`` ("video" or "images"), ``fps`` (None for images)
    and ``total`` (the expected frame count, None when the container does
    not say). Problems found while opening raise ``InvalidInput`` here rather
    than on the first ``next()``; the iterator should be closed when not
    exhausted (``contextlib.closing``) so the container is released.
    """
    source = Path(source)
    if not source.exists():
        raise InvalidInput(f"{source}: no such file or folder; give a colour video or a folder of colour images")
    if source.is_dir():
        info, frames = _open_images(source)
    else:
        info, frames = _open_video(source)
    if max_frames is not None:
        if max_frames < 1:
            raise InvalidInput(f"--max-frames {max_frames}: give at least 1 (or leave it out for every frame)")
        frames = _take(frames, max_frames)
        if info["total"] is not None:
            info["total"] = min(info["total"], max_frames)
    return info, frames


def _take(frames: Iterator[np.ndarray], n: int) -> Iterator[np.ndarray]:
    # unlike islice, closing this closes the decoder too, and no frame is
    # decoded past the n-th
    with closing(frames):
        for _, frame in zip(range(n), frames):
            yield frame


def _open_images(folder: Path) -> tuple[dict, Iterator[np.ndarray]]:
    paths = sorted(
        (p for p in folder.iterdir() if is_image(p) and p.is_file()), key=_natural_key
    )
    if not paths:
        kinds = ", ".join(sorted(IMAGE_EXTS))
        raise InvalidInput(f"{folder}: no images ({kinds}) in this folder; put the colour frames there or give a video file")

    def frames() -> Iterator[np.ndarray]:
        for path in paths:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise InvalidInput(f"{path}: cannot be read as an image; remove it from the folder or convert it to PNG")
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    return {"kind": "images", "fps": None, "total": len(paths)}, frames()


def _open_video(path: Path) -> tuple[dict, Iterator[np.ndarray]]:
    import av  # deferred: PyAV loads the FFmpeg libraries

    hint = "give a colour video (.mp4, .mkv, .avi...) or a folder of colour images"
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as err:
        raise InvalidInput(f"{path}: cannot be opened as a video ({one_line(err)}); {hint}") from err
    if not container.streams.video:
        container.close()
        raise InvalidInput(f"{path}: has no video stream; {hint}")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    info = {
        "kind": "video",
        "fps": float(stream.average_rate) if stream.average_rate else None,
        "total": stream.frames or None,
    }

    def frames() -> Iterator[np.ndarray]:
        with container:
            try:
                for frame in container.decode(stream):
                    yield frame.to_ndarray(format="rgb24")
            except av.FFmpegError as err:
                raise InvalidInput(f"{path}: decoding failed ({one_line(err)}); re-encode it, e.g. ffmpeg -i IN -c:v libx264 OUT.mp4") from err

    return info, frames()


def _check_outputs(name: str, inputs: list[np.ndarray], outputs: object) -> list[np.ndarray]:
    # a colorizer that returns the wrong thing is a bug in it: say which one
    outputs = list(outputs)  # type: ignore[call-overload]
    if len(outputs) != len(inputs):
        raise ValueError(f"colorizer {name!r} returned {len(outputs)} frames for {len(inputs)}")
    checked = []
    for frame, out in zip(inputs, outputs):
        out = np.asarray(out)
        if out.shape != frame.shape or out.dtype != np.uint8:
            raise ValueError(
                f"colorizer {name!r} returned a {out.dtype} array shaped {out.shape}; "
                f"expected uint8 {frame.shape} like its input"
            )
        checked.append(out)
    return checked


def _gray(frames: list[np.ndarray]) -> list[np.ndarray]:
    return [gray_baseline(f) for f in frames]


def _on_damaged_luma(originals: list[np.ndarray], damaged: list[np.ndarray]) -> list[np.ndarray]:
    out = []
    for ref, gray in zip(originals, damaged):
        lab = cv2.cvtColor(ref.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
        lab[:, :, 0] = cv2.cvtColor(gray.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)[:, :, 0]
        rgb = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)
        out.append((np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
    return out


class _Scores:
    """Running sums for one colorizer; per-frame lists are floats only."""

    def __init__(self) -> None:
        self.psnr: list[float] = []
        self.ssim: list[float] = []
        self.auc = AucAccumulator(AUC_MAX_THRESHOLD)
        self.colourfulness = 0.0
        self.hue = [0, 0]
        self.seconds = 0.0

    def add(self, ref: np.ndarray, out: np.ndarray) -> None:
        self.psnr.append(psnr(ref, out))
        self.ssim.append(ssim(ref, out))
        self.auc.add(ab_errors(ref, out))
        self.colourfulness += colourfulness(out)
        self.hue = [t + h for t, h in zip(self.hue, hue_hits(ref, out))]


def _mean(values: list[float]) -> float:
    finite_or_inf = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite_or_inf)) if finite_or_inf else math.nan


def _ratio(num: float, den: float) -> float:
    if math.isnan(num) or math.isnan(den) or den == 0:
        return math.nan
    return num / den


def _progress(stem: str, done: int, total: int | None, final: bool = False) -> None:
    of = f"/{total}" if total else ""
    print(f"\r{stem}: {done}{of} frames", end="\n" if final else "", file=sys.stderr, flush=True)


def evaluate(
    source: Path,
    colorizers: Mapping[str, Colorizer],
    out_dir: Path,
    *,
    batch: int = 8,
    max_frames: int | None = None,
    progress: bool = True,
    degrade=None,
    clean: Mapping[str, Colorizer] | None = None,
) -> dict:
    """Score each colorizer on ``source`` and write <stem>.json/.md/.png to ``out_dir``.

    Each colorizer receives copies of a batch of the ORIGINAL colour frames
    and must return colorized uint8 RGB frames of the same size, using only
    their luminance. Rows are the colorizers in the given order, then
    ``gray`` and ``original``. Per row: ``psnr`` (dB, mean over frames),
    ``ssim`` (mean), ``ab_auc`` (pooled over all pixels of all frames),
    ``colourfulness`` (mean) and ``colourfulness_ratio`` (to the
    original's), ``flicker`` (mean ab warp error over frame pairs) and
    ``flicker_ratio`` (to the original's floor), ``cdc`` (mean ab-histogram
    L1 distance of neighbours), ``frames``, ``seconds`` spent in the
    colorizer and ``fps``. Undefined figures are NaN in the returned dict
    (None for ones that do not apply, such as PSNR of the original) and
    null in the JSON file.

    ``degrade``: a callable (frame index, RGB) -> damaged RGB (`vidcolor.eval.degrade.OldFilm`)
    applied to what the colorizers receive, never to the reference they are
    scored against; the reports are then named ``<stem>-<its name>`` (``<stem>-oldfilm``).

    ``clean``: with ``degrade``, twins of some of the colorizers (same names, their own temporal
    state) that get the clean frames. Each adds two rows: ``<name>, clean`` (its run on the clean
    clip) and ``<name>, clean colour on damaged L`` (that run's Lab ab on the damaged frames'
    lightness). The damaged row then gets ``flicker_rise``, its flicker over the clean run's, and
    ``flicker_rise_same_colour``, over the clean colour on the damaged lightness: the measure's own
    rise (8-bit rounding and gamut clipping of an unchanged colour at another lightness) taken out,
    what is left is the colorizer's colour moving more.
    """
    source, out_dir, clean = Path(source), Path(out_dir), dict(clean or {})
    runs = _runs(colorizers, clean, degrade, batch)
    stem = source.name if source.is_dir() else source.stem
    stem += "" if degrade is None else "-" + getattr(degrade, "name", "oldfilm")

    info, frames = open_frames(source, max_frames)
    if source.is_dir():
        batch = 1  # photos of a folder differ in size: a batch is a stack of equal frames
    tally = _Tally(runs)
    with closing(frames):
        for chunk in itertools.batched(frames, batch):
            chunk = list(chunk)
            tally.add(chunk, _colorize_chunk(chunk, tally.n, runs, clean, degrade, tally.scores))
            if progress:
                _progress(stem, tally.n, info["total"])
    if progress:
        _progress(stem, tally.n, info["total"], final=True)
    if tally.n == 0:
        raise InvalidInput(f"{source}: no frames could be decoded; check that it is a colour video and not empty")

    result = {
        "source": str(source),
        "name": stem,
        "kind": info["kind"],
        "frames": tally.n,
        "width": tally.size[0],
        "height": tally.size[1],
        "source_fps": info["fps"],
        # share of pixels the flicker figures rest on (mean over frame pairs)
        "flicker_valid_fraction": _mean(tally.valid),
        "settings": {"auc_thresholds": [0, AUC_MAX_THRESHOLD], "batch": batch, "flicker": tally.meter.settings()},
        "rows": tally.rows(clean, derived={DAMAGED, *(name + CLEAN_ON_DAMAGED for name in clean)}),
        "per_frame": {
            "psnr": {name: s.psnr for name, s in tally.scores.items()},
            # entry t is the pair (t-1, t); entry 0 (and any size change) is NaN
            "flicker": tally.flicker,
        },
    }
    _write_outputs(result, out_dir)
    return result


def _runs(colorizers: Mapping[str, Colorizer], clean: dict[str, Colorizer], degrade,
          batch: int) -> dict[str, Colorizer | None]:
    """The report's rows in order, each with its colorizer (None: a row made from other rows' outputs);
    the arguments checked."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    for name in colorizers:
        if name in (GRAY, ORIGINAL, DAMAGED) or name.endswith((CLEAN, CLEAN_ON_DAMAGED)):
            raise ValueError(f"the colorizer name {name!r} is reserved for the built-in reference")
    if clean and degrade is None:
        raise ValueError("clean twins are compared with a damaged run: give degrade too")
    if clean.keys() - colorizers.keys():
        raise ValueError(f"clean twins of unknown colorizers: {', '.join(sorted(clean.keys() - colorizers.keys()))}")
    runs: dict[str, Colorizer | None] = {**colorizers, GRAY: _gray}
    if degrade is not None:
        runs[DAMAGED] = None  # built from the reference too, below
    for name in clean:
        runs[name + CLEAN] = runs[name + CLEAN_ON_DAMAGED] = None  # likewise
    return runs


def _colorize_chunk(chunk: list[np.ndarray], first: int, runs: Mapping[str, Colorizer | None],
                    clean: Mapping[str, Colorizer], degrade, scores: dict[str, _Scores]) -> dict[str, list[np.ndarray]]:
    """Every row's output for a batch of original frames (the ``first``-th onwards); the colorizers'
    time added to ``scores``."""
    outputs = {}
    damaged = [degrade(first + i, f) for i, f in enumerate(chunk)] if degrade is not None else chunk
    jobs = [(name, colorize, damaged) for name, colorize in runs.items() if colorize is not None]
    jobs += [(name + CLEAN, twin, chunk) for name, twin in clean.items()]
    for name, colorize, frames_in in jobs:
        # copies, so a colorizer that works in place cannot alter the reference
        inputs = [f.copy() for f in frames_in]
        start = time.perf_counter()
        result = colorize(inputs)
        scores[name].seconds += time.perf_counter() - start
        outputs[name] = _check_outputs(name, chunk, result)
    if degrade is not None:
        outputs[DAMAGED] = _on_damaged_luma(chunk, damaged)
    for name in clean:
        outputs[name + CLEAN_ON_DAMAGED] = _on_damaged_luma(outputs[name + CLEAN], damaged)
    return outputs


class _Tally:
    """Every row's scores over the frames seen so far, the original's flicker floor among them."""

    def __init__(self, runs: Mapping[str, Colorizer | None]) -> None:
        self.runs = list(runs)
        self.scores = {name: _Scores() for name in runs}
        self.meter = FlickerMeter()
        self.flicker: dict[str, list[float]] = {name: [] for name in [*runs, ORIGINAL]}
        self.cdc: dict[str, list[float]] = {name: [] for name in [*runs, ORIGINAL]}
        self.valid: list[float] = []
        self.original_colourfulness = 0.0
        self.n = 0
        self.size: tuple[int, int] | None = None

    def add(self, chunk: list[np.ndarray], outputs: Mapping[str, list[np.ndarray]]) -> None:
        """Score each row's outputs of a batch against the original frames."""
        for i, ref in enumerate(chunk):
            self.size = self.size or (ref.shape[1], ref.shape[0])
            self.original_colourfulness += colourfulness(ref)
            for name in self.runs:
                self.scores[name].add(ref, outputs[name][i])
            step = self.meter.update(ref, {name: outputs[name][i] for name in self.runs})
            if step:
                self.valid.append(step["valid"])
            for name in self.flicker:
                self.flicker[name].append(step["warp"][name] if step else math.nan)
                self.cdc[name].append(step["cdc"][name] if step else math.nan)
        self.n += len(chunk)

    def rows(self, clean: Mapping[str, Colorizer], derived: set[str]) -> list[dict]:
        """The report's rows: the runs', then the original's (``derived`` rows have no time of their own)."""
        n = self.n
        floor = _mean(self.flicker[ORIGINAL])
        mean_cf = self.original_colourfulness / n
        rows = []
        for name, s in self.scores.items():
            cf = s.colourfulness / n
            fl = _mean(self.flicker[name])
            rows.append({"name": name, "psnr": _mean(s.psnr), "ssim": _mean(s.ssim), "ab_auc": s.auc.value(),
                         "colourfulness": cf, "colourfulness_ratio": _ratio(cf, mean_cf),
                         "hue_share": _ratio(*s.hue), "flicker": fl, "flicker_ratio": _ratio(fl, floor),
                         "cdc": _mean(self.cdc[name]), "frames": n,
                         "seconds": None if name in derived else s.seconds,
                         "fps": None if name in derived else _ratio(n, s.seconds)})
        by_name = {row["name"]: row for row in rows}
        for name in clean:
            fl = by_name[name]["flicker"]
            by_name[name]["flicker_rise"] = _ratio(fl, by_name[name + CLEAN]["flicker"])
            by_name[name]["flicker_rise_same_colour"] = _ratio(fl, by_name[name + CLEAN_ON_DAMAGED]["flicker"])
        rows.append({"name": ORIGINAL, "psnr": None, "ssim": None, "ab_auc": None, "colourfulness": mean_cf,
                     "colourfulness_ratio": 1.0, "flicker": floor, "flicker_ratio": 1.0 if floor > 0 else math.nan,
                     "cdc": _mean(self.cdc[ORIGINAL]), "frames": n, "seconds": None, "fps": None})
        return rows


def _json_safe(value: object) -> object:
    # strict JSON has no NaN/Infinity; readers get null instead
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _write_outputs(result: dict, out_dir: Path) -> None:
    stem = result["name"]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{stem}.json").write_text(json.dumps(_json_safe(result), indent=1, allow_nan=False) + "\n")
        (out_dir / f"{stem}.md").write_text(_markdown_report(result))
        _plot(result, out_dir / f"{stem}.png")
    except OSError as err:
        raise OutputError(f"{out_dir}: cannot write the evaluation report ({one_line(err)}); choose a writable folder") from err


def _cell(value: object, fmt: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return fmt.format(value)


def markdown_table(results: list[dict]) -> str:
    """One Markdown table with a row per (source, method) of ``evaluate`` results.

    Works on the returned dicts and on ones loaded back from the JSON files.
    """
    header = ["Source", "Method", *(title for _, title, _ in _COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * len(_COLUMNS)) + "|"]
    for result in results:
        for row in result["rows"]:
            cells = [result["name"], row["name"], *(_cell(row.get(key), fmt) for key, _, fmt in _COLUMNS)]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _markdown_report(result: dict) -> str:
    fps = f", {result['source_fps']:.4g} fps" if result["source_fps"] else ""
    settings = result["settings"]["flicker"]
    share = result.get("flicker_valid_fraction")
    valid = "n/a" if share is None or math.isnan(share) else f"{share:.0%}"
    return (
        f"# Evaluation: {result['name']}\n\n"
        f"Source `{result['source']}` ({result['kind']}, {result['width']}x{result['height']}, "
        f"{result['frames']} frames{fps}).\n\n"
        + markdown_table([result])
        + "\n"
        "- PSNR and SSIM on RGB, means over frames; ab-AuC: fraction of pixels within an ab distance of "
        f"0..{result['settings']['auc_thresholds'][1]} (Zhang et al. 2016), pooled over all frames.\n"
        "- Colourful. ratio: mean Hasler-Süsstrunk colourfulness of the output over the original's.\n"
        "- Hue ≤45°: share of the original's clearly coloured pixels (Lab chroma > 15) whose output hue is "
        "within 45 degrees of the original's, pooled over all frames (gray: 0).\n"
        "- Flicker: mean ab difference (CIE Lab units) between each frame and the previous one warped by "
        "optical flow of the original, on pixels where the flow is consistent and the original's own L "
        f"changes by less than {settings['luma_threshold_L']:g} ({valid} of the pixels); the original row is "
        "the floor set by flow errors and noise. Smooth or faint chroma warps more easily, so a ratio below 1 "
        "is not better than the original: read flicker beside the colourfulness ratio. "
        "CDC: L1 distance (0..2) of the ab histograms of neighbouring frames.\n"
        + (f"- {DAMAGED}: the original's colour (its Lab ab) on the damaged frames' lightness: the colour a "
           "colorizer that keeps the input's luma would show with perfect chroma, so its flicker is the floor "
           "for the damaged clip.\n" if any(r["name"] == DAMAGED for r in result["rows"]) else "")
        + _rise_lines([r for r in result["rows"] if "flicker_rise" in r])
        + "- Seconds and FPS: time spent in the colorizer only.\n"
    )


def _rise_lines(rows: list[dict]) -> str:
    if not rows:
        return ""
    return (f"- Rise under the damage: each colorizer's flicker over that of its run on the clean clip (`NAME{CLEAN}`) "
            f"and over that run's colour shown on the damaged lightness (`NAME{CLEAN_ON_DAMAGED}`). An unchanged "
            "colour already measures higher there (8-bit rounding and gamut clipping at another lightness), so "
            "the second is what the damage does to the colorizer's own colour:\n"
            + "".join(f"  - {r['name']}: {_cell(r['flicker_rise'], '{:.2f}')}x, "
                      f"{_cell(r['flicker_rise_same_colour'], '{:.2f}')}x\n" for r in rows))


def _plot(result: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # a bare Figure with the Agg canvas: no pyplot state, no display needed
    fig = Figure(figsize=(10, 6), layout="constrained")
    FigureCanvasAgg(fig)
    ax_psnr, ax_flicker = fig.subplots(2, 1, sharex=True)
    for name, values in result["per_frame"]["psnr"].items():
        ax_psnr.plot([v if v is not None and math.isfinite(v) else np.nan for v in values], label=name, lw=1)
    for name, values in result["per_frame"]["flicker"].items():
        style = {"color": "black", "ls": "--"} if name == ORIGINAL else {}
        ax_flicker.plot([np.nan if v is None else v for v in values], label=name, lw=1, **style)
    ax_psnr.set_ylabel("PSNR (dB)")
    ax_flicker.set_ylabel("ab warp error")
    ax_flicker.set_xlabel("frame")
    ax_psnr.set_title(f"{result['name']}: per-frame PSNR and flicker")
    ax_psnr.legend(fontsize="small", loc="best")
    ax_flicker.legend(fontsize="small", loc="best")
    for ax in (ax_psnr, ax_flicker):
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=100)
