"""Still images and preview contact sheets."""

from __future__ import annotations

import os
import pathlib

import cv2
import numpy as np

from .colorizer import Colorizer
from .engine import open_input, scanned_seconds, video_seconds
from .errors import InvalidInput, OutputError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pgm", ".ppm"}


def is_image(path: pathlib.Path) -> bool:
    return pathlib.Path(path).suffix.lower() in IMAGE_EXTS


def write_image(path: pathlib.Path, bgr: np.ndarray) -> None:
    """Encode in memory, then write under a temporary name and rename."""
    path = pathlib.Path(path)
    ok, buf = cv2.imencode(path.suffix or ".png", bgr)
    if not ok:
        raise OutputError(f"{path}: OpenCV cannot write this image type; use a .png output")
    tmp = path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")
    try:
        tmp.write_bytes(buf.tobytes())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write ({exc.strerror}); choose another folder with -o") from None


def colorize_image(src: pathlib.Path, dst: pathlib.Path, colorizer: Colorizer) -> None:
    src = pathlib.Path(src)
    if not src.is_file():
        raise InvalidInput(f"{src}: no such file; check the path")
    img = cv2.imread(str(src), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InvalidInput(f"{src}: not an image OpenCV can read; give a PNG, JPEG, TIFF or WebP file")
    if img.dtype not in (np.uint8, np.uint16):
        img = cv2.normalize(img, None, 0, 65535, cv2.NORM_MINMAX).astype(np.uint16)
    alpha = None
    if img.ndim == 3 and img.shape[2] == 4:
        alpha, img = img[..., 3:], img[..., :3]
    if hasattr(colorizer.model, "forward_rgb") and img.dtype == np.uint8:
        # DDColor's checkpoints come with an image pipeline of their own: stills get its exact result.
        from .official import colorize_bgr

        out = colorize_bgr(colorizer.model, img)
        write_image(dst, out if alpha is None else np.concatenate([out, alpha], axis=2))
        return
    if img.ndim == 2:
        rgb = np.repeat(img[..., None], 3, axis=2)
    else:
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    out = cv2.cvtColor(colorizer.colorize_rgb([rgb])[0], cv2.COLOR_RGB2BGR)
    if alpha is not None:
        out = np.concatenate([out, alpha], axis=2)
    write_image(dst, out)


def preview_sheet(src: pathlib.Path, dst: pathlib.Path, colorizer: Colorizer, count: int,
                  width: int = 480) -> int:
    """A PNG of ``count`` evenly spaced frames: the grayscale input beside the colour output."""
    if count < 1:
        raise InvalidInput("--preview N needs N >= 1")
    rows = []
    with open_input(src) as inp:
        stream = inp.streams.video[0]
        stream.thread_type = "AUTO"
        duration = video_seconds(inp, stream)
        # No length in the header (or a guessed one: a bare elementary stream, which FFmpeg would
        # seek by the guessed bit rate): one pass over the packets for the length, then the frames
        # are decoded in order.
        sequential = duration is None
        if sequential:
            duration = scanned_seconds(src)
        origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        for i in range(count):
            t = origin + duration * (i + 0.5) / count
            if duration and not sequential:
                inp.seek(int(t / stream.time_base), stream=stream, backward=True)
            frame = None
            for frame in inp.decode(stream):
                if frame.time is None or frame.time >= t - 1e-3:
                    break
            if frame is None:
                continue
            rgb = frame.to_ndarray(format="rgb24")
            h, w = rgb.shape[:2]
            size = (width, max(2, round(h * width / w)))
            color_rgb = colorizer.colorize_rgb([rgb])[0]
            gray = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
            rows.append(np.hstack([cv2.resize(gray, size, interpolation=cv2.INTER_AREA),
                                   cv2.resize(color_rgb, size, interpolation=cv2.INTER_AREA)]))
            if not duration:
                break
    if not rows:
        raise InvalidInput(f"{src}: no frame could be decoded for the preview")
    write_image(dst, cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))
    return len(rows)
