"""The pure parts of building the training photos: blobs in resource bundles, decoding, filters, duplicates.

Each is a small function tested on its own (`vidcolor.training.dataset` applies
them): **size**, the short side at least `MIN_SIDE` px (`big_enough`); **colour**,
nearly grey images dropped (`is_grayscale`); **drawings**, a deliberately simple
test, `looks_like_drawing`: a picture with very few distinct colours (cartoons,
palette GIFs, clip art, diagrams); it does not catch drawings with gradients or
paintings, so `vidcolor.training.sources` also narrows the mixed sources by hand;
**duplicates**, exact and near ones found with a 64-bit difference hash of an 8x8
greyscale downscale (`image_hash`), confirmed by an 8x8 colour thumbnail; of each
group the largest image is kept (`find_duplicates`).
"""

from __future__ import annotations

import struct
from typing import Iterator

import cv2
import numpy as np

__all__ = ["scan_image_blobs", "jpeg_end", "decode_image", "big_enough", "is_grayscale", "colour_count",
           "looks_like_drawing", "image_hash", "colour_thumb", "hamming", "find_duplicates"]

MIN_SIDE = 200
DUPLICATE_DISTANCE = 4
DUPLICATE_THUMB_DIFF = 12.0
MIN_COLOURS = 300
GRAY_CHROMA = 4.0

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
    if img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8:
        # IMREAD_UNCHANGED ignores the EXIF orientation that IMREAD_COLOR applies: phone photos stand upright
        img = cv2.imdecode(arr, cv2.IMREAD_COLOR)
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
