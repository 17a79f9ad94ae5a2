"""Still images and preview contact sheets."""

from __future__ import annotations

import pathlib

import av
import cv2
import numpy as np

from vidcolor.atomic import atomic_output
from vidcolor.colorizer import Colorizer, check_frame_size
from vidcolor.errors import InvalidInput, OutputError
from vidcolor.io.media import open_input, reason, scanned_seconds, video_seconds
from vidcolor.planes import has_colour


def write_image(path: pathlib.Path, bgr: np.ndarray, overwrite: bool = True) -> None:
    """Encode in memory, then write under a temporary name and rename (`vidcolor.atomic.atomic_output`)."""
    path = pathlib.Path(path)
    ok, buf = cv2.imencode(path.suffix or ".png", bgr)
    if not ok:
        raise OutputError(f"{path}: OpenCV cannot write this image type; use a .png output")
    try:
        with atomic_output(path, hidden=True, overwrite=overwrite) as tmp:
            tmp.write_bytes(buf.tobytes())
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror}); choose another folder with -o") from None


def _image_size(src: pathlib.Path) -> tuple[int, int] | None:
    """Width and height from the image's header, without decoding it (None if PIL cannot tell)."""
    from PIL import Image

    bomb = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # the limit is ours (check_frame_size), named in our message
    try:
        with Image.open(src) as im:
            return im.size
    except Exception:  # noqa: BLE001 - not for PIL: OpenCV decides
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = bomb


def _truncated_jpeg(src: pathlib.Path) -> bool:
    """A JPEG cut short: no end-of-image marker after its last scan (OpenCV fills the rest with gray)."""
    if src.suffix.lower() not in (".jpg", ".jpeg"):
        return False
    data = src.read_bytes()
    return data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda")


def colorize_image(src: pathlib.Path, dst: pathlib.Path, colorizer: Colorizer, overwrite: bool = True) -> str | None:
    """Colorize a still; returns one line on damage (a truncated JPEG, its lost part gray), else None."""
    src = pathlib.Path(src)
    if not src.is_file():
        raise InvalidInput(f"{src}: no such file; check the path")
    size = _image_size(src)
    if size is not None:
        check_frame_size(*size, src)  # before decoding: a 431 KB PNG can hold 20000x20000
    damage = f"{src}: the JPEG is truncated (its end is missing): the lower part of the picture is gray" \
        if _truncated_jpeg(src) else None
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
        from vidcolor.official import colorize_bgr

        out = colorize_bgr(colorizer.model, img)
        write_image(dst, out if alpha is None else np.concatenate([out, alpha], axis=2), overwrite)
        return damage
    if img.ndim == 2:
        rgb = np.repeat(img[..., None], 3, axis=2)
    else:
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    out = cv2.cvtColor(colorizer.colorize_rgb([rgb])[0], cv2.COLOR_RGB2BGR)
    if alpha is not None:
        out = np.concatenate([out, alpha], axis=2)
    write_image(dst, out, overwrite)
    return damage


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    """``tile`` with ``text`` in white on a black box in its top left corner."""
    scale = max(0.35, tile.shape[1] / 960)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    tile = np.ascontiguousarray(tile)
    cv2.rectangle(tile, (0, 0), (tw + 8, th + base + 8), (0, 0, 0), -1)
    cv2.putText(tile, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def _clock(seconds: float) -> str:
    m, s = divmod(max(seconds, 0.0), 60)
    return f"{int(m) // 60}:{int(m) % 60:02d}:{s:05.2f}"


def preview_sheet(src: pathlib.Path, dst: pathlib.Path, colorizer: Colorizer, count: int,
                  width: int = 480, overwrite: bool = True, compare: bool = False) -> int:
    """A PNG of ``count`` evenly spaced frames: the grayscale input beside the colour output, each
    labelled with its time and the model. ``compare`` adds the original where the input has colour.
    Frames that do not decode (a damaged file) are left out, as the engine skips them."""
    if count < 1:
        raise InvalidInput("--preview N needs N >= 1")
    rows = []
    failure = None
    coloured = False  # any sampled frame has colour of its own
    with open_input(src) as inp:
        stream = inp.streams.video[0]
        stream.thread_type = "AUTO"
        check_frame_size(stream.codec_context.width, stream.codec_context.height, src)
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
            frame = None
            try:
                if duration and not sequential:
                    inp.seek(int(t / stream.time_base), stream=stream, backward=True)
                for frame in inp.decode(stream):
                    if frame.time is None or frame.time >= t - 1e-3:
                        break
                rgb = frame.to_ndarray(format="rgb24") if frame is not None else None
            except av.FFmpegError as exc:
                failure = reason(exc)
                continue
            if rgb is None:
                continue
            h, w = rgb.shape[:2]
            size = (width, max(2, round(h * width / w)))
            color_rgb = colorizer.colorize_rgb([rgb])[0]
            gray = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
            ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
            coloured |= has_colour(ycc[..., 2], ycc[..., 1], 8)
            at = _clock((frame.time if frame.time is not None else t) - origin)
            rows.append([_label(cv2.resize(gray, size, interpolation=cv2.INTER_AREA), f"{at} gray"),
                         _label(cv2.resize(color_rgb, size, interpolation=cv2.INTER_AREA), f"{at} {colorizer.name}"),
                         _label(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), f"{at} original")])
            if not duration:
                break
    if not rows:
        raise InvalidInput(f"{src}: no frame could be decoded for the preview"
                           + (f" ({failure}); check that the file is complete and not damaged" if failure else ""))
    columns = 3 if compare and coloured else 2  # the original only where it has colour of its own
    sheet = np.vstack([np.hstack(row[:columns]) for row in rows])
    write_image(dst, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), overwrite)
    return len(rows)


#: the labelled tiles of contact sheets, for other sheets (the reference preview)
label_tile = _label
