"""Reading a reference picture, and the first passes of a video coloured with it (``--reference``).

`Colorizer.plan_reference` reads the video's luma once to find the cuts and the shot each reference
matches, and a second time (up to the last matched frame) to carry the colour backward from it. Both
reads go through the engine's own `Decoder`, with the job's window and warm-up, so the frames are the
ones the model stage will number, in the same order. Nothing but one batch is held.
"""

from __future__ import annotations

import pathlib
import queue
import threading
from collections.abc import Iterator

import av
import cv2
import numpy as np
import torch

from vidcolor.io.decode import Decoder, Warm
from vidcolor.io.frames import frame_layout, to_planes
from vidcolor.io.media import open_input
from vidcolor.io.stages import END, Stopped
from vidcolor.errors import InvalidInput
from vidcolor.planes import luma_unit

__all__ = ["load_reference", "luma_batches", "plan_video", "reference_preview"]


def load_reference(path) -> np.ndarray:
    """RGB uint8 (H, W, 3) of a reference image file; an unreadable one is an `InvalidInput` naming it."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise InvalidInput(f"--reference {path}: no such file; give a colour image (PNG, JPEG, TIFF...) of a "
                           "frame of the film or of its scene")
    data = np.fromfile(str(path), np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise InvalidInput(f"--reference {path}: not an image that can be read; save it as PNG or JPEG")
    if img.dtype == np.uint16:
        img = (img / 257.0 + 0.5).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(img[:, :, ::-1])


def luma_batches(src: pathlib.Path, opts, batch: int = 8) -> Iterator[torch.Tensor]:
    """Luma (N,1,H,W) in 0..1 of the frames a `VideoJob` with ``opts`` would colour, ``batch`` at a time."""
    inp = open_input(pathlib.Path(src))
    stop = threading.Event()
    q: queue.Queue = queue.Queue(maxsize=4 * batch)
    vstream = inp.streams.video[0]
    vstream.thread_type = "AUTO"
    decoder = Decoder(inp, vstream, {}, opts, pathlib.Path(src), q, stop)

    failed: list[BaseException] = []

    def run():
        try:
            decoder.run()
        except Stopped:
            pass
        except BaseException as exc:  # raised below, in the reading thread
            failed.append(exc)

    worker = threading.Thread(target=run, name="vidcolor-reference-read", daemon=True)
    worker.start()
    layout, codes = None, []
    try:
        while True:
            try:
                item = q.get(timeout=0.1)
            except queue.Empty:
                if worker.is_alive():
                    continue
                if failed:
                    raise failed[0]
                break
            if item is END:
                break
            if isinstance(item, Warm):
                item = item.frame
            if not isinstance(item, av.VideoFrame):
                continue
            if layout is None:
                layout = frame_layout(vstream, item, opts.pix_fmt, opts.codec, str(src))
            planes = to_planes(item, layout)
            p = planes.planes[0]
            item_size = np.dtype(layout.dtype).itemsize
            codes.append(np.frombuffer(p, layout.dtype).reshape(p.height, p.line_size // item_size)[:, :p.width].copy())
            if len(codes) >= batch or (codes and codes[0].shape != codes[-1].shape):
                yield from _flush(codes, layout)
        if codes:
            yield from _flush(codes, layout)
    finally:
        stop.set()
        worker.join()
        inp.close()


def _flush(codes: list[np.ndarray], layout) -> Iterator[torch.Tensor]:
    # frames of one size per batch (a size change mid-stream starts a new one)
    while codes:
        first = codes[0].shape
        n = next((i for i, c in enumerate(codes) if c.shape != first), len(codes))
        yield luma_unit(np.stack(codes[:n]), layout.bits, layout.full_range)
        del codes[:n]


def plan_video(colorizer, src: pathlib.Path, opts, warn: bool = True) -> None:
    """Plan a referenced colorizer (`Colorizer.referenced`) on the video ``src`` before `colorize_video`."""
    colorizer.plan_reference(lambda: luma_batches(src, opts, colorizer.runtime.batch), warn=warn)


def reference_preview(src: pathlib.Path, dst: pathlib.Path, colorizer, count: int, opts,
                      width: int = 320, overwrite: bool = True) -> int:
    """A PNG of ``count`` evenly spaced frames: the reference serving each (or none), the gray input, the result.

    The reference's colour at a frame depends on the frames between it and the matched one, so the
    film is coloured in order (no encoding) and the chosen frames kept: as slow as the model on the
    whole window. The colorizer must be planned (`plan_video`).
    """
    from vidcolor import color
    from vidcolor.io.stills import label_tile, write_image

    track = colorizer.reference
    n = track.frames
    if n == 0:
        raise InvalidInput(f"{src}: no frame could be decoded for the preview")
    chosen = sorted({min(n - 1, int(n * (i + 0.5) / count)) for i in range(count)})
    colorizer.reset()
    rows, t = [], 0
    for y in luma_batches(src, opts, colorizer.runtime.batch):
        ab = colorizer.predict_ab(y.to(colorizer.device))
        for i in range(y.shape[0]):
            if t + i in chosen:
                yi = y[i:i + 1].float()
                a = color.resize(ab[i:i + 1].float().cpu(), tuple(yi.shape[-2:]))
                rgb = color.ycbcr_to_rgb(yi, color.chroma_for_luma(yi, a), "bt601").clamp(0, 1)
                out = (rgb[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
                gray = np.repeat((yi[0, 0].numpy() * 255 + 0.5).astype(np.uint8)[..., None], 3, 2)
                h, w = gray.shape[:2]
                size = (width, max(2, round(h * width / w)))
                served = track.served_at(t + i)
                if served is not None:
                    ref = track.sources[served.ref]
                    s = min(size[0] / ref.shape[1], size[1] / ref.shape[0])  # its own aspect, letterboxed
                    fit = cv2.resize(ref, (max(1, round(ref.shape[1] * s)), max(1, round(ref.shape[0] * s))),
                                     interpolation=cv2.INTER_AREA)
                    tile = np.zeros((size[1], size[0], 3), np.uint8)
                    oy, ox = (size[1] - fit.shape[0]) // 2, (size[0] - fit.shape[1]) // 2
                    tile[oy:oy + fit.shape[0], ox:ox + fit.shape[1]] = fit
                    ref_tile = label_tile(tile, f"reference (frame {served.frame})")
                else:
                    ref_tile = label_tile(np.zeros((size[1], size[0], 3), np.uint8), "no reference")
                rows.append(np.hstack([ref_tile,
                                       label_tile(cv2.resize(gray, size, interpolation=cv2.INTER_AREA),
                                                  f"frame {t + i} gray"),
                                       label_tile(cv2.resize(out, size, interpolation=cv2.INTER_AREA),
                                                  f"frame {t + i} {colorizer.name}+reference")]))
        t += y.shape[0]
        if t > chosen[-1]:
            break
    write_image(pathlib.Path(dst), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR), overwrite)
    return len(rows)
