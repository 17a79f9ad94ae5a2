"""Decoded frames as the planes the colorizer works on, and their chroma replaced in place.

`frame_layout` reads the first frame once (pixel format, range, matrix, colour tags);
`to_planes` turns every frame into the output's planar YUV format with its luma
untouched where the input was YUV; `colorize_frames` fills the chroma planes.
"""

from __future__ import annotations

import dataclasses

import av
import numpy as np

from vidcolor.io.output import RANGE_FULL, RANGE_LIMITED, choose_pix_fmt, output_pix_fmt
from vidcolor.planes import MATRIX_CODES, colorize_codes, default_matrix, has_colour

# libavutil's colour tags (H.273 numbering), as PyAV exposes them.
_HD = {"colorspace": 1, "color_primaries": 1, "color_trc": 1}
_SD = {"colorspace": 6, "color_primaries": 6, "color_trc": 6}
# Inputs whose samples cover the whole range by nature.
_FULL_RANGE_FAMILIES = ("gray", "rgb", "bgr", "gbr", "pal8", "argb", "abgr", "rgba", "bgra", "ya", "yuvj")


@dataclasses.dataclass(frozen=True)
class FrameLayout:
    """How the decoded frames are turned into the planes we work on."""

    fmt: av.VideoFormat
    full_range: bool
    matrix: str
    tags: dict
    rgb_input: bool
    #: one line on why the pixel format is not the default one, or None.
    note: str | None = None

    @property
    def bits(self) -> int:
        return self.fmt.components[0].bits

    @property
    def dtype(self):
        return np.uint16 if self.bits > 8 else np.uint8


def frame_layout(stream: av.video.stream.VideoStream, first: av.VideoFrame, pix_fmt: str | None,
                 codec: str | None = None, name: str = "") -> FrameLayout:
    """The layout of a stream's frames, read from its first one (and the encoder that will take them)."""
    in_fmt = first.format
    if codec:
        fmt, note = choose_pix_fmt(in_fmt, pix_fmt, codec, first.width, first.height, name)
    else:
        fmt, note = output_pix_fmt(in_fmt, pix_fmt), None
    ctx = stream.codec_context
    full = (first.color_range == RANGE_FULL or ctx.color_range == RANGE_FULL
            or (first.color_range != RANGE_LIMITED and in_fmt.name.startswith(_FULL_RANGE_FAMILIES)))
    hd = first.height >= 720
    tags = dict(_HD if hd else _SD)
    for key in tags:
        value = int(getattr(first, key) or getattr(ctx, key) or 2)
        if value not in (0, 2):  # 2 = unspecified
            tags[key] = value
    matrix = MATRIX_CODES.get(tags["colorspace"], default_matrix(first.height))
    rgb_input = not in_fmt.name.startswith(("yuv", "gray", "ya", "nv", "p0", "p2", "y2"))
    return FrameLayout(fmt, full, matrix, tags, rgb_input, note)


def to_planes(frame: av.VideoFrame, lay: FrameLayout) -> av.VideoFrame:
    """The frame in the output's planar YUV format, its luma untouched where it was YUV."""
    # The same matrix on both sides: swscale converts YUV between matrices
    # (e.g. untagged 720p read as BT.601, written as BT.709), which would change
    # the luma; the chroma is replaced anyway. For RGB input only dst counts.
    out = frame.reformat(
        format=lay.fmt,
        src_colorspace=lay.tags["colorspace"],
        dst_colorspace=lay.tags["colorspace"],
        src_color_range=RANGE_FULL if lay.full_range else RANGE_LIMITED,
        dst_color_range=RANGE_FULL if lay.full_range else RANGE_LIMITED,
    )
    if out is frame:
        # Decoded frames may share buffers with the decoder's reference frames.
        out.make_writable()
    out.pts, out.time_base = frame.pts, frame.time_base
    return out


def _plane(frame: av.VideoFrame, i: int, dtype) -> np.ndarray:
    p = frame.planes[i]
    item = np.dtype(dtype).itemsize
    return np.frombuffer(p, dtype).reshape(p.height, p.line_size // item)[:, : p.width]


def colorize_frames(colorizer, frames: list[av.VideoFrame], lay: FrameLayout, keep_colour: bool = False) -> int:
    """Replace the chroma planes of same-sized planar YUV frames, in place; returns how many had
    colour of their own (with ``keep_colour`` those keep it and skip the model)."""
    coloured = [has_colour(_plane(f, 1, lay.dtype), _plane(f, 2, lay.dtype), lay.bits) for f in frames]
    todo = [f for f, c in zip(frames, coloured) if not (keep_colour and c)]
    if todo:
        y = np.stack([_plane(f, 0, lay.dtype) for f in todo])
        size = (todo[0].planes[1].height, todo[0].planes[1].width)
        codes = colorize_codes(colorizer, y, size, lay.bits, lay.full_range, lay.matrix)
        for f, c in zip(todo, codes):
            _plane(f, 1, lay.dtype)[:] = c[0]
            _plane(f, 2, lay.dtype)[:] = c[1]
    return sum(coloured)
