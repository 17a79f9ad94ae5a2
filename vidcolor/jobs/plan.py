"""What a batch will do: its inputs, where each output goes, and where a film's segments wait.

Inputs are files, folders (searched for videos) and glob patterns. The one rule that protects the
archive: no input is ever an output of the same batch, whatever the flags (`--overwrite` would
destroy it), and nothing inside OUTDIR is ever read as an input.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import os
import pathlib

from vidcolor.atomic import partials_of
from vidcolor.errors import InvalidInput, OutputError
from vidcolor.io.media import VIDEO_EXTS, is_video

SEGMENTS_DIR = ".vidcolor-segments"


@dataclasses.dataclass(frozen=True)
class Item:
    key: str  # the input's absolute path: the manifest's key
    src: pathlib.Path
    dst: pathlib.Path


def _is_hidden(rel: pathlib.Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


class _Finder:
    """The files the specs name, in order, each with its path below OUTDIR; those inside OUTDIR set apart."""

    def __init__(self, outdir: pathlib.Path):
        self.real_out = outdir.resolve()
        self.found: list[tuple[pathlib.Path, pathlib.Path]] = []  # (source, path below OUTDIR)
        self.skipped_outdir: list[pathlib.Path] = []

    def inside_outdir(self, f: pathlib.Path) -> bool:
        return f.resolve().is_relative_to(self.real_out)

    def add_folder(self, folder: pathlib.Path) -> None:
        for f in sorted(folder.rglob("*")):
            rel = f.relative_to(folder)
            if _is_hidden(rel) or not is_video(f) or not f.is_file():
                continue
            if self.inside_outdir(f):  # never our own outputs
                self.skipped_outdir.append(f)
                continue
            self.found.append((f, rel))

    def add_pattern(self, spec) -> None:
        matches = sorted(glob.glob(os.path.expanduser(str(spec)), recursive=True))
        if not matches:
            raise InvalidInput(f"{spec}: the pattern matches no file; check it (quote it so the shell leaves it)")
        for m in map(pathlib.Path, matches):
            if m.is_dir():
                self.add_folder(m)
            elif m.is_file() and not self.inside_outdir(m):
                self.found.append((m, pathlib.Path(m.name)))
            elif m.is_file() and is_video(m):
                self.skipped_outdir.append(m)

    def add(self, spec) -> None:
        path = pathlib.Path(spec).expanduser()
        if path.is_dir():
            self.add_folder(path)
        elif path.is_file():
            self.found.append((path, pathlib.Path(path.name)))
        elif glob.has_magic(str(spec)):
            self.add_pattern(spec)
        else:
            raise InvalidInput(f"{spec}: no such file or folder; check the path")


def collect_inputs(specs, outdir: pathlib.Path, ext: str | None = None) -> list[Item]:
    """Files, folders (searched recursively for videos) and glob patterns, in order, without repeats.

    A file named on the command line goes to OUTDIR/NAME; a folder's videos keep
    their paths below the folder. Two inputs that would share an output are an error.
    Nothing inside OUTDIR (compared by resolved path: `..` and symlinks count) is ever
    an input: folders and patterns skip it, a file named there is refused, and no input
    may be any item's output, whatever the flags (--overwrite would destroy it).
    """
    outdir = pathlib.Path(outdir).absolute()
    finder = _Finder(outdir)
    for spec in specs:
        finder.add(spec)
    items = _items(finder, outdir, ext)
    _refuse_inputs_as_outputs(items)
    if not items and finder.skipped_outdir:
        raise InvalidInput(f"the videos in {' '.join(map(str, specs))} lie inside the output folder {outdir}, "
                           "which the batch never reads (its own outputs go there); choose an -o outside them")
    if not items:
        raise InvalidInput(f"no video files in {' '.join(map(str, specs))} "
                           f"(folders are searched for {', '.join(sorted(VIDEO_EXTS))})")
    return items


def _items(finder: _Finder, outdir: pathlib.Path, ext: str | None) -> list[Item]:
    """One item per distinct input, each with its own output, none of them an input or inside OUTDIR."""
    items: list[Item] = []
    seen: set[str] = set()
    outputs: dict[pathlib.Path, pathlib.Path] = {}
    for src, rel in finder.found:
        key = str(src.resolve())
        if key in seen:
            continue
        seen.add(key)
        dst = outdir / rel
        if ext:
            dst = dst.with_suffix(ext)
        if dst.exists() and os.path.samefile(dst, src) or dst.resolve() == src.resolve():
            raise OutputError(f"{dst}: the output would be the input {src}; choose another folder with -o")
        if finder.inside_outdir(src):  # only files named one by one get here: the batch writes there
            raise OutputError(f"{src}: this input lies inside the output folder {outdir}, where the batch "
                              "writes (it could be overwritten); move it out or choose another -o")
        if dst in outputs:
            raise InvalidInput(f"{outputs[dst]} and {src} would both be written to {dst}; "
                               "rename one or colorize them into separate folders")
        outputs[dst] = src
        items.append(Item(key, src.absolute(), dst))
    return items


def _refuse_inputs_as_outputs(items: list[Item]) -> None:
    """An input reached under another name (a hard link, a symlinked folder) as another item's output."""
    inodes = {(st.st_dev, st.st_ino): item.src for item in items for st in [item.src.stat()]}
    for item in items:
        st = item.dst.stat() if item.dst.exists() else None
        if st is not None and (st.st_dev, st.st_ino) in inodes:
            raise OutputError(f"{item.dst}: the output would be the input {inodes[st.st_dev, st.st_ino]}; "
                              "choose another folder with -o")


def segment_folder(outdir: pathlib.Path, item: Item) -> pathlib.Path:
    """Where the segments of a long film (`--segments`) wait to be joined."""
    tag = hashlib.sha1(item.key.encode()).hexdigest()[:10]
    return outdir / SEGMENTS_DIR / f"{item.dst.stem}-{tag}"


def remove_partials(dst: pathlib.Path) -> None:
    """The engine's temporary outputs for ``dst`` (`atomic.partial_path`) left by killed workers."""
    for p, _ in partials_of(dst):
        with contextlib.suppress(OSError):
            p.unlink(missing_ok=True)
