"""The output container: its pixel format, its header, its video encoder, and closing it.

Shared by `VideoJob` (one video colorized into one file) and `join_segments`
(segments joined into one file), so both write the same header: the input's
metadata, its chapters inside the window, its streams in order (audio, subtitles
and data copied without re-encoding), and the video stream tagged as the input's.
The file itself is written under a temporary name (`vidcolor.atomic.atomic_output`).
"""

from __future__ import annotations

import fractions
import os
import pathlib
import sys
from collections.abc import Callable

import av
import av.logging

from vidcolor.errors import InvalidInput, OutputError
from vidcolor.io.media import reason

# libavutil's colour ranges (H.273 numbering), as PyAV exposes them.
RANGE_LIMITED, RANGE_FULL = 1, 2
_FIELD_PROGRESSIVE = 1  # AVFieldOrder: 0 unknown, 1 progressive, 2..5 TT, BB, TB, BT

DEFAULT_CRF = {"libx264": 18, "libx265": 20, "libvpx-vp9": 24, "libsvtav1": 28}
DEFAULT_PRESET = {"libx264": "medium", "libx265": "medium", "libsvtav1": "8"}
_FRAME_RATE_TIME_BASE = {"mpeg1video", "mpeg2video", "mpeg4", "msmpeg4", "msmpeg4v2", "h263", "h263p"}


# -- the pixel format ------------------------------------------------------------------------

def format_bits(fmt: av.VideoFormat) -> int:
    return max(c.bits for c in fmt.components) if fmt.name != "pal8" else 8


def output_pix_fmt(in_fmt: av.VideoFormat, requested: str | None, codec: str | None = None) -> av.VideoFormat:
    if requested:
        try:
            fmt = av.VideoFormat(requested)
        except ValueError:
            raise InvalidInput(f"--pix-fmt {requested!r} is not a pixel format FFmpeg knows") from None
        if not fmt.name.startswith("yuv") or not fmt.is_planar or len(fmt.components) != 3:
            raise InvalidInput(f"--pix-fmt {requested}: choose a planar YUV format such as yuv420p, yuv422p10le or yuv444p")
        return fmt
    bits = format_bits(in_fmt)
    if bits > 10 and codec:
        # Keep a 12/16-bit luma whole where the encoder can take it (ffv1, x265);
        # otherwise 10 bits, which every high-bit-depth encoder here accepts.
        try:
            supported = {f.name for f in av.Codec(codec, "w").video_formats or ()}
        except (ValueError, av.FFmpegError):
            supported = set()
        if f"yuv420p{bits}le" in supported:
            return av.VideoFormat(f"yuv420p{bits}le")
    return av.VideoFormat("yuv420p10le" if bits > 8 else "yuv420p")


def _subsampling(fmt: av.VideoFormat) -> tuple[int, int]:
    """(horizontal, vertical) chroma subsampling: (2, 2) for 4:2:0, (1, 1) for 4:4:4."""
    return 64 // fmt.chroma_width(64), 64 // fmt.chroma_height(64)


def _planar_yuv(name: str) -> bool:
    fmt = av.VideoFormat(name)
    return name.startswith("yuv") and not name.startswith("yuvj") and fmt.is_planar and len(fmt.components) == 3


def encoder_formats(codec: str) -> list[str]:
    """The pixel formats the encoder says it takes ([] when it does not say)."""
    try:
        return [f.name for f in av.Codec(codec, "w").video_formats or ()]
    except (ValueError, av.FFmpegError):
        return []


def _refusal(codec: str, fmt: av.VideoFormat, width: int, height: int) -> str | None:
    """Why the encoder will not open at this size and format (its own log line), or None if it opens."""
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, fmt.name
    ctx.time_base, ctx.framerate = fractions.Fraction(1, 25), 25
    if codec == "libx265":
        ctx.options = {"x265-params": "log-level=none"}  # x265 logs past FFmpeg's logger
    level, skip = av.logging.get_level(), av.logging.get_skip_repeated()
    av.logging.set_level(av.logging.ERROR)  # the logger only captures while it is installed
    av.logging.set_skip_repeated(False)  # the same refusal as an earlier trial's is still the reason
    try:
        with av.logging.Capture() as logs:
            ctx.open()
        return None
    except av.FFmpegError as exc:
        lines = [msg.strip() for lvl, _, msg in logs if lvl <= av.logging.ERROR and msg.strip()]
        return lines[-1] if lines else reason(exc)
    finally:
        av.logging.set_level(level)
        av.logging.set_skip_repeated(skip)


def check_pix_fmt(requested: str, codec: str) -> av.VideoFormat:
    """A --pix-fmt that is planar YUV and that the encoder lists (before any file is touched)."""
    fmt = output_pix_fmt(av.VideoFormat("yuv420p"), requested)
    supported = encoder_formats(codec)
    if supported and fmt.name not in supported:
        takes = ", ".join(f for f in supported if _planar_yuv(f)) or "no planar YUV format"
        raise InvalidInput(f"--pix-fmt {requested}: --codec {codec} cannot write it (it takes {takes}); "
                           "choose one of those or leave --pix-fmt out")
    return fmt


def _requested_pix_fmt(in_fmt, requested: str, codec: str, width: int, height: int, where: str) -> av.VideoFormat:
    """The --pix-fmt asked for, or one line on why it does not fit the encoder at this size."""
    preferred = output_pix_fmt(in_fmt, requested, codec)
    check_pix_fmt(requested, codec)
    sw, sh = _subsampling(preferred)
    if (width % sw or height % sh) and (why := _refusal(codec, preferred, width, height)):
        fits = choose_pix_fmt(in_fmt, None, codec, width, height)[0].name
        raise InvalidInput(f"{where}--pix-fmt {requested} does not fit --codec {codec} at {width}x{height} "
                           f"({why}); leave --pix-fmt out to let vidcolor choose, or use {fits}")
    return preferred


def choose_pix_fmt(in_fmt: av.VideoFormat, requested: str | None, codec: str, width: int, height: int,
                   name: str = "") -> tuple[av.VideoFormat, str | None]:
    """The output's pixel format, and one line when it is not the default (the encoder refused that).

    Without --pix-fmt, a format the encoder takes at this size that keeps the most of the
    source: no fewer bits, then no coarser chroma than the default, then the fewest extra samples
    (ProRes: yuv422p10le; x264 at an odd size: yuv444p). A --pix-fmt that does not fit is an error.
    """
    where = f"{name}: " if name else ""
    if requested:
        return _requested_pix_fmt(in_fmt, requested, codec, width, height, where), None
    preferred = output_pix_fmt(in_fmt, requested, codec)
    supported = encoder_formats(codec)
    sw, sh = _subsampling(preferred)
    if not supported or preferred.name in supported and not (width % sw or height % sh):
        return preferred, None
    bits, samples = format_bits(preferred), sw * sh

    def cost(f: str):
        fmt = av.VideoFormat(f)
        fw, fh = _subsampling(fmt)
        return max(0, bits - format_bits(fmt)), fw * fh > samples, abs(format_bits(fmt) - bits), -fw * fh

    candidates = sorted((f for f in supported if _planar_yuv(f) and f != preferred.name), key=cost)
    if preferred.name in supported:
        candidates.insert(0, preferred.name)
    first_why = None
    for f in candidates:
        why = _refusal(codec, av.VideoFormat(f), width, height)
        if why is None:
            if f == preferred.name:
                return preferred, None
            cause = f"cannot write {preferred.name} at {width}x{height} ({first_why})" if first_why \
                else f"takes no {preferred.name}"
            return av.VideoFormat(f), (f"vidcolor: {where}--codec {codec} {cause}: writing {f} "
                                       "(--pix-fmt chooses another)")
        first_why = first_why or why
    raise InvalidInput(f"{where}--codec {codec} cannot write a {width}x{height} video in any planar YUV format "
                       f"it takes ({first_why or 'it lists none'}); use libx264 or ffv1")


# -- the container ---------------------------------------------------------------------------

def open_output(tmp: pathlib.Path, dst: pathlib.Path, fix: str = "") -> av.container.OutputContainer:
    """The output container on the temporary file ``tmp``; ``fix``: what the user can do if it cannot be."""
    try:
        # FFmpeg opens the file only when the header is written; create it now so
        # an unwritable folder is an error here, not a traceback from the muxer.
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
        return av.open(str(tmp), "w")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise OutputError(f"{dst}: cannot write the output here ({reason(exc)}){fix}") from None


def chapters_in_window(inp, start: float, end: float) -> list[dict]:
    """The input's chapters that overlap the window, moved to its start."""
    kept = []
    for ch in inp.chapters():
        tb = ch["time_base"]
        lo, hi = max(float(ch["start"] * tb), start), min(float(ch["end"] * tb), end)
        if hi > lo:
            kept.append({**ch, "start": round((lo - start) / tb), "end": round((hi - start) / tb)})
    return kept


def copy_stream(out, s, copies: dict, src, dst) -> None:
    """Add input stream ``s`` to ``out`` for copying without re-encoding, or say why it is dropped."""
    try:
        copies[s.index] = out.add_stream_from_template(s)
    except (ValueError, av.FFmpegError) as exc:
        print(f"vidcolor: {src}: stream #{s.index} ({s.type}) cannot go into "
              f"{dst.suffix} and is dropped ({reason(exc)})", file=sys.stderr)


def write_header(out, inp, vstream, window: tuple[float, float], src, dst,
                 add_video: Callable[[av.container.OutputContainer], av.stream.Stream]) -> tuple[av.stream.Stream, dict]:
    """The input's metadata, its chapters inside ``window``, and its streams in order into ``out``.

    ``add_video(out)`` adds the video stream in the input's video's place; the others are
    copied. Returns that video stream and {input stream index: output stream} of the copies.
    """
    out.metadata.update(inp.metadata)
    chapters = chapters_in_window(inp, *window)
    if chapters:
        out.set_chapters(chapters)
    copies: dict[int, av.stream.Stream] = {}
    ostream = None
    for s in inp.streams:
        if s.index == vstream.index:
            ostream = add_video(out)
            continue
        copy_stream(out, s, copies, src, dst)
    return ostream, copies


def follow_video_stream(ostream, vstream) -> None:
    """The output video stream on the input's clock, with the input's metadata (not its encoder's)."""
    ostream.time_base = vstream.time_base
    ostream.metadata.update({k: v for k, v in vstream.metadata.items()
                             if k.lower() not in ("encoder", "handler_name")})


def close_output(out, dst: pathlib.Path, ok: bool) -> None:
    """Close the output (the muxer writes its trailer then); a failure is an error only if all went well
    so far (else the error that stopped the job is the one to tell)."""
    try:
        out.close()
    except av.FFmpegError as exc:
        if ok:
            raise OutputError(f"{dst}: the output could not be finished ({reason(exc)})") from None


# -- the video encoder -----------------------------------------------------------------------

def add_video_stream(out, vstream, codec: str):
    """The encoder's stream, at the input's frame rate and on its clock."""
    rate = vstream.average_rate or vstream.guessed_rate or fractions.Fraction(25)
    try:
        ostream = out.add_stream(codec, rate=rate)
    except (ValueError, av.FFmpegError) as exc:
        raise InvalidInput(f"--codec {codec}: not available ({reason(exc)}); "
                           "use libx264, libx265, prores_ks or ffv1") from None
    follow_video_stream(ostream, vstream)
    return ostream


def _encoder_options(opts, quiet: bool) -> dict[str, str]:
    options = {}
    crf = opts.crf if opts.crf is not None else DEFAULT_CRF.get(opts.codec)
    preset = opts.preset or DEFAULT_PRESET.get(opts.codec)
    if crf is not None:
        options["crf"] = str(crf)
    if preset is not None:
        options["preset"] = preset
    if opts.codec == "libx265" and quiet:  # --quiet: x265 logs past FFmpeg's logger
        options["x265-params"] = "log-level=error"
    return options


def configure_video(ostream, vstream, lay, first: av.VideoFrame, opts, quiet: bool) -> None:
    """Settings that need the first decoded frame (``lay``: its `FrameLayout`); the header is not written yet.

    ``opts``: the job's `EncodeOptions` (codec, crf, preset).
    """
    ctx = ostream.codec_context
    ctx.width, ctx.height = first.width, first.height
    ctx.pix_fmt = lay.fmt.name
    # The input's time base keeps every timestamp exact, variable frame rate
    # included; MPEG-1/2/4 Part 2 only take 1/frame-rate (or a 16-bit one).
    if opts.codec in _FRAME_RATE_TIME_BASE:
        ctx.time_base = 1 / ctx.framerate
    else:
        ctx.time_base = vstream.time_base
    if vstream.sample_aspect_ratio:
        ctx.sample_aspect_ratio = vstream.sample_aspect_ratio
    # Interlaced stays interlaced: encoders code and flag frames progressive unless told.
    order = vstream.codec_context.field_order or 0
    if order > _FIELD_PROGRESSIVE or first.interlaced_frame:
        ctx.flags |= av.codec.context.Flags.interlaced_dct | av.codec.context.Flags.interlaced_me
        if order > _FIELD_PROGRESSIVE:
            ctx.field_order = order
    ctx.color_range = RANGE_FULL if lay.full_range else RANGE_LIMITED
    for key, value in lay.tags.items():
        setattr(ctx, key, value)
    ctx.options = _encoder_options(opts, quiet)
    ctx.thread_type = "AUTO"
    if first.rotation:
        ostream.set_display_rotation(first.rotation)
    try:
        # Opened here so a refusal is a clear error, not a traceback from encode().
        ctx.open()
    except av.FFmpegError as exc:
        given = " ".join(f"--{k} {v}" for k, v in (("crf", opts.crf), ("preset", opts.preset)) if v is not None)
        # The encoder cannot tell a bad option from a bad format: name what the user chose.
        fix = f"check {given} for {opts.codec}" if given else \
            "try " + " or ".join(c for c in ("libx264", "ffv1") if c != opts.codec)
        raise InvalidInput(f"--codec {opts.codec} cannot encode this video ({first.width}x{first.height} "
                           f"{lay.fmt.name} at {ctx.framerate} fps: {reason(exc)}); {fix}") from None
