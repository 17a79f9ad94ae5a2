"""The streaming engine: PyAV decode -> batched model -> PyAV encode.

Three stages, each in its own thread, joined by bounded queues, so decoding,
inference and encoding overlap and memory does not grow with the film. The
luma plane of every frame goes to the output untouched; only the chroma planes
are replaced. Audio, subtitle and data packets travel through the same queues,
in order, and are muxed without re-encoding.
"""

from __future__ import annotations

import dataclasses
import errno
import fractions
import os
import pathlib
import queue
import signal
import sys
import threading
import time

import av
import av.logging
import numpy as np

from vidcolor.colorizer import Colorizer, check_frame_size
from vidcolor.errors import InvalidInput, OutputError, TruncatedInput, UnsupportedFormat
from vidcolor.planes import MATRIX_CODES, colorize_codes, default_matrix, has_colour

# libavutil's colour tags (H.273 numbering), as PyAV exposes them.
_HD = {"colorspace": 1, "color_primaries": 1, "color_trc": 1}
_SD = {"colorspace": 6, "color_primaries": 6, "color_trc": 6}
_RANGE_LIMITED, _RANGE_FULL = 1, 2
_FIELD_PROGRESSIVE = 1  # AVFieldOrder: 0 unknown, 1 progressive, 2..5 TT, BB, TB, BT
# Inputs whose samples cover the whole range by nature.
_FULL_RANGE_FAMILIES = ("gray", "rgb", "bgr", "gbr", "pal8", "argb", "abgr", "rgba", "bgra", "ya", "yuvj")

DEFAULT_CRF = {"libx264": 18, "libx265": 20, "libvpx-vp9": 24, "libsvtav1": 28}
DEFAULT_PRESET = {"libx264": "medium", "libx265": "medium", "libsvtav1": "8"}
QUEUE_FRAMES = 4  # batches in flight between two stages
_FRAME_RATE_TIME_BASE = {"mpeg1video", "mpeg2video", "mpeg4", "msmpeg4", "msmpeg4v2", "h263", "h263p"}


@dataclasses.dataclass(frozen=True)
class EncodeOptions:
    codec: str = "libx264"
    crf: int | None = None
    preset: str | None = None
    #: planar YUV format of the output; None follows the input's bit depth.
    pix_fmt: str | None = None
    start: float | None = None
    duration: float | None = None
    #: The input time (seconds, counted like --start) that becomes 0 in the output;
    #: None: --start. `vidcolor batch --segments` writes each segment on the whole
    #: film's clock (0 or the film's --start) so the segments join without retiming.
    timestamps_from: float | None = None
    #: Frames that already have colour keep their own chroma instead of the model's (--keep-colour).
    keep_colour: bool = False
    #: Seconds before --start decoded and colorized but not written: a stateful colorizer
    #: (--stabilize, temporal models) reaches --start warm, as in a run through the whole
    #: film (`vidcolor batch --segments` gives each segment after the first this overlap).
    warmup: float = 0.0

    def __post_init__(self) -> None:
        # --start/--duration as video tools write them: seconds, MM:SS or HH:MM:SS(.ms)
        for name in ("start", "duration"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, parse_time(value, f"--{name}"))


def parse_time(text: str, name: str = "time") -> float:
    """Seconds from ``12.5``, ``MM:SS(.ms)`` or ``HH:MM:SS(.ms)``, as ffmpeg's -ss and -t take them."""
    parts = text.strip().split(":")
    try:
        if len(parts) > 3 or any(not p.strip() for p in parts) or len(parts) > 1 and "-" in text:
            raise ValueError
        seconds = 0.0
        for p in parts[:-1]:
            seconds = seconds * 60 + int(p)
        last = float(parts[-1])
        if len(parts) > 1 and not 0 <= last < 60:
            raise ValueError
        return seconds * 60 + last if len(parts) > 1 else last
    except ValueError:
        raise InvalidInput(f"{name} {text}: give seconds (90.5), MM:SS (1:30.5) or HH:MM:SS (0:01:30.5)") from None


class _Warm:
    """A frame before --start that only warms the colorizer's temporal state."""

    __slots__ = ("frame",)

    def __init__(self, frame):
        self.frame = frame


@dataclasses.dataclass
class Stats:
    frames: int = 0
    seconds: float = 0.0
    #: what was lost in the middle of a damaged input (one line naming the file), or None.
    damage: str | None = None
    #: lines said while running (a pixel format chosen instead of the default...).
    notes: list = dataclasses.field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def open_input(path: pathlib.Path) -> av.container.InputContainer:
    path = pathlib.Path(path)
    if not path.exists():
        raise InvalidInput(f"{path}: no such file; check the path")
    if path.is_dir():
        raise InvalidInput(f"{path}: is a folder; give a video file (use `vidcolor batch` for folders)")
    if path.stat().st_size == 0:
        raise InvalidInput(f"{path}: the file is empty (0 bytes); give the complete video")
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise InvalidInput(f"{path}: not a video FFmpeg can read ({_reason(exc)}); "
                           "check that the file is complete and is a video") from None
    if not container.streams.video:
        container.close()
        raise InvalidInput(f"{path}: has no video stream; give a video file")
    stream = container.streams.video[0]
    if stream.codec_context is None or stream.codec_context.format is None and stream.codec_context.width == 0:
        container.close()
        raise UnsupportedFormat(f"{path}: the video codec is not supported by this FFmpeg build; "
                                "convert the file first (e.g. to H.264 or FFV1)")
    return container


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc).split(":")[-1].strip() or exc.__class__.__name__


def _bits(fmt: av.VideoFormat) -> int:
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
    bits = _bits(in_fmt)
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
        return lines[-1] if lines else _reason(exc)
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


def choose_pix_fmt(in_fmt: av.VideoFormat, requested: str | None, codec: str, width: int, height: int,
                   name: str = "") -> tuple[av.VideoFormat, str | None]:
    """The output's pixel format, and one line when it is not the default (the encoder refused that).

    Without --pix-fmt, a format the encoder takes at this size that keeps the most of the
    source: no fewer bits, then no coarser chroma than the default, then the fewest extra samples
    (ProRes: yuv422p10le; x264 at an odd size: yuv444p). A --pix-fmt that does not fit is an error.
    """
    preferred = output_pix_fmt(in_fmt, requested, codec)
    supported = encoder_formats(codec)
    where = f"{name}: " if name else ""
    if requested:
        check_pix_fmt(requested, codec)
        sw, sh = _subsampling(preferred)
        if (width % sw or height % sh) and (why := _refusal(codec, preferred, width, height)):
            fits = choose_pix_fmt(in_fmt, None, codec, width, height)[0].name
            raise InvalidInput(f"{where}--pix-fmt {requested} does not fit --codec {codec} at {width}x{height} "
                               f"({why}); leave --pix-fmt out to let vidcolor choose, or use {fits}")
        return preferred, None
    sw, sh = _subsampling(preferred)
    if not supported or preferred.name in supported and not (width % sw or height % sh):
        return preferred, None
    bits, samples = _bits(preferred), sw * sh

    def cost(f: str):
        fmt = av.VideoFormat(f)
        fw, fh = _subsampling(fmt)
        return max(0, bits - _bits(fmt)), fw * fh > samples, abs(_bits(fmt) - bits), -fw * fh

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


@dataclasses.dataclass(frozen=True)
class _FrameLayout:
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


def _layout(stream: av.video.stream.VideoStream, first: av.VideoFrame, pix_fmt: str | None,
            codec: str | None = None, name: str = "") -> _FrameLayout:
    in_fmt = first.format
    if codec:
        fmt, note = choose_pix_fmt(in_fmt, pix_fmt, codec, first.width, first.height, name)
    else:
        fmt, note = output_pix_fmt(in_fmt, pix_fmt), None
    ctx = stream.codec_context
    full = (first.color_range == _RANGE_FULL or ctx.color_range == _RANGE_FULL
            or (first.color_range != _RANGE_LIMITED and in_fmt.name.startswith(_FULL_RANGE_FAMILIES)))
    hd = first.height >= 720
    tags = dict(_HD if hd else _SD)
    for key in tags:
        value = int(getattr(first, key) or getattr(ctx, key) or 2)
        if value not in (0, 2):  # 2 = unspecified
            tags[key] = value
    matrix = MATRIX_CODES.get(tags["colorspace"], default_matrix(first.height))
    rgb_input = not in_fmt.name.startswith(("yuv", "gray", "ya", "nv", "p0", "p2", "y2"))
    return _FrameLayout(fmt, full, matrix, tags, rgb_input, note)


def _to_planes(frame: av.VideoFrame, lay: _FrameLayout) -> av.VideoFrame:
    """The frame in the output's planar YUV format, its luma untouched where it was YUV."""
    # The same matrix on both sides: swscale converts YUV between matrices
    # (e.g. untagged 720p read as BT.601, written as BT.709), which would change
    # the luma; the chroma is replaced anyway. For RGB input only dst counts.
    out = frame.reformat(
        format=lay.fmt,
        src_colorspace=lay.tags["colorspace"],
        dst_colorspace=lay.tags["colorspace"],
        src_color_range=_RANGE_FULL if lay.full_range else _RANGE_LIMITED,
        dst_color_range=_RANGE_FULL if lay.full_range else _RANGE_LIMITED,
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


def colorize_frames(colorizer: Colorizer, frames: list[av.VideoFrame], lay: _FrameLayout,
                    keep_colour: bool = False) -> int:
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


class _Stop(Exception):
    pass


def _put(q: queue.Queue, item, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            pass
    raise _Stop


def _get(q: queue.Queue, stop: threading.Event):
    while not stop.is_set():
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            pass
    raise _Stop


_END = object()


class _Worker(threading.Thread):
    def __init__(self, target, name):
        super().__init__(name=name, daemon=True)
        self._target_fn, self.error = target, None

    def run(self):
        try:
            self._target_fn()
        except _Stop:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.error = exc


#: no film lasts longer (31 years); larger times overflow FFmpeg's 64-bit timestamps.
MAX_SECONDS = 1e9


def _window(opts: EncodeOptions) -> tuple[float, float]:
    for name, value in (("--start", opts.start), ("--duration", opts.duration)):
        if value is not None and not 0 <= value <= MAX_SECONDS:  # NaN fails too
            raise InvalidInput(f"{name} {value:g}: give a number of seconds from 0 to {MAX_SECONDS:g}")
    start = opts.start or 0.0
    end = start + opts.duration if opts.duration is not None else float("inf")
    if end <= start:
        raise InvalidInput("--duration must be > 0")
    return start, end


class _OneStop:
    """SIGINT/SIGTERM stop a job once: the first signal unwinds it as before, and any that come
    while it cleans up are dropped, so a second Ctrl-C cannot abort the cleanup (and leave the
    partial output behind). Only in the main thread, where Python runs signal handlers."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.stopping = False
        self.previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                prev = signal.getsignal(sig)
                if prev in (signal.SIG_IGN, None):
                    continue  # ignored stays ignored; None: not installed from Python
                self.previous[sig] = prev
                signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.stopping:
            return  # already stopping: the cleanup must finish
        self.stopping = True
        prev = self.previous[signum]
        if callable(prev):
            prev(signum, frame)
        else:  # SIG_DFL: end the way the signal would have ended the process
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def __exit__(self, *exc):
        for sig, prev in self.previous.items():
            signal.signal(sig, prev)


class VideoJob:
    """One input video colorized into one output file."""

    #: say what runs (the colorizer's summary) at the first frame, unless quiet
    announce = True

    def __init__(self, src: pathlib.Path, dst: pathlib.Path, colorizer: Colorizer,
                 opts: EncodeOptions = EncodeOptions(), progress: bool = True, overwrite: bool = True):
        self.src, self.dst = pathlib.Path(src), pathlib.Path(dst)
        self.colorizer, self.opts, self.progress = colorizer, opts, progress
        #: False: never replace a ``dst`` that appears while the job runs (`publish`).
        self.overwrite = overwrite
        self.batch = colorizer.runtime.batch
        self.stats = Stats()
        self.truncated: str | None = None
        # Damage met while decoding: times (s) of undecodable packets, spans with no video packet.
        self._bad_packets: list[float] = []
        self._holes: list[tuple[float, float]] = []
        self._colour_said = False  # the input's own colour was mentioned

    # -- stage 1: demux and decode -------------------------------------------------
    def _decode(self, inp, vstream, copies, q_out, stop):
        start, end = _window(self.opts)
        # --start/--duration count from the file's first timestamp (MPEG-PS/TS start near 0.5 s or later).
        origin = inp.start_time / av.time_base if inp.start_time else 0.0
        start, end = start + origin, end + origin
        windowed = start > origin or end < float("inf")
        warm_from = max(origin, start - self.opts.warmup) if self.opts.warmup > 0 else start
        # After a seek, packets wait here until the first frame shows that decoding
        # starts at or before --start: formats without an index (MPEG-PS/TS) may land
        # after the keyframe, and the decoder then drops frames up to the next one.
        held: list | None = None
        if warm_from > origin:
            inp.seek(int(warm_from / vstream.time_base), stream=vstream, backward=True)
            held = []
        # Streams whose packets may sit in the file after the last video frame of the window.
        trailing = {i for i, s in copies.items() if s.type in ("audio", "video")}
        decoded, reached, video_done = 0, None, False  # frames passed on; end time of the last one
        # A hole: consecutive video packets (by dts) further apart than a few frames. Empty packets
        # count as present: AVI marks dropped frames with them.
        packets, prev_t = 0, None  # non-empty video packets in the window; dts of the previous one
        nominal = _frame_seconds(None, vstream)
        hole = max(0.25, 3 * nominal)

        def send(item):
            if held is None:
                _put(q_out, item, stop)
            else:
                held.append(item)

        try:
            demuxed = inp.demux()
            while (packet := next(demuxed, None)) is not None:
                if stop.is_set():
                    raise _Stop
                t = float(packet.pts * packet.time_base) if packet.pts is not None else None
                if packet.stream.index != vstream.index:
                    if packet.stream.index in copies and packet.dts is not None:
                        if windowed and t is not None:
                            if t >= end:
                                trailing.discard(packet.stream.index)
                                if video_done and not trailing:
                                    break
                                continue
                            if t < start:
                                continue
                        send(packet)
                    continue
                if video_done:
                    if t is not None and t > end + 10:  # no stream should trail the video by that much
                        break
                    continue
                td = float(packet.dts * packet.time_base) if packet.dts is not None else t
                if td is not None and start - 1e-6 <= td < end:
                    if prev_t is not None and td - prev_t > hole:
                        self._holes.append((prev_t + nominal - origin, td - origin))
                    prev_t = td
                if packet.size and t is not None and start - 1e-6 <= t < end:
                    packets += 1
                try:
                    frames = vstream.decode(packet)
                except av.FFmpegError:
                    # As FFmpeg does: skip the damaged packet, go on with the next.
                    if t is None or start - 1e-6 <= t < end:
                        self._bad_packets.append((t if t is not None else reached or start) - origin)
                    continue
                for frame in frames:
                    ft = frame.time if frame.time is not None else decoded / float(vstream.guessed_rate or 25)
                    if ft < warm_from - 1e-6:
                        continue
                    if held is not None:
                        if ft > warm_from + _frame_seconds(frame, vstream) + 1e-3:
                            # The seek overshot: decode from the beginning instead.
                            held = None
                            inp.seek(vstream.start_time or 0, stream=vstream, backward=True)
                            demuxed = inp.demux()
                            packets, prev_t = 0, None
                            self._bad_packets.clear()
                            self._holes.clear()
                            break
                        for item in held:
                            _put(q_out, item, stop)
                        held = None
                    if ft < start - 1e-6:
                        _put(q_out, _Warm(frame), stop)
                        continue
                    if ft >= end:
                        video_done = True
                        break
                    decoded += 1
                    reached = ft + _frame_seconds(frame, vstream)
                    _put(q_out, frame, stop)
                if video_done and not trailing:
                    break
        except av.FFmpegError as exc:
            self.truncated = (f"{self.src}: decoding stopped after frame {decoded} "
                              f"({_reason(exc)}): the file is truncated or corrupt")
        if held:
            for item in held:
                _put(q_out, item, stop)
        self._missing = max(packets - decoded, sum(round((b - a) / nominal) for a, b in self._holes))
        if not video_done and not self.truncated:
            # A cut file often demuxes without any error: the header's duration tells.
            declared = _declared_end(inp, vstream)
            if reached is not None and declared is not None:
                missing = min(declared, end) - reached
                if missing > max(0.25, 3 * _frame_seconds(None, vstream)):
                    self.truncated = (f"{self.src}: the video ends after frame {decoded} at {reached - origin:.2f} s "
                                      f"but the file says it lasts {declared - origin:.2f} s: "
                                      "the file is truncated")
        _put(q_out, _END, stop)

    # -- stage 2: batched model ------------------------------------------------------
    def _infer(self, lay_box, q_in, q_out, stop):
        pending: list = []  # frames and packets in decode order
        frames: list = []

        def flush():
            if frames and colorize_frames(self.colorizer, frames, lay_box[0], self.opts.keep_colour) \
                    and not self._colour_said:
                self._colour_said = True
                self._note(f"vidcolor: {self.src}: the input already has colour: the frames that have it keep "
                           "their own (--keep-colour)" if self.opts.keep_colour else
                           f"vidcolor: warning: {self.src}: the input already has colour (its chroma is far "
                           "from neutral); it is replaced by the model's (--keep-colour keeps it)")
            for item in pending:
                _put(q_out, item, stop)
            pending.clear()
            frames.clear()

        while True:
            item = _get(q_in, stop)
            if item is _END:
                flush()
                _put(q_out, _END, stop)
                return
            warm = isinstance(item, _Warm)
            if warm:
                item = item.frame
            if isinstance(item, av.VideoFrame):
                if lay_box[0] is None:
                    lay_box[0] = _layout(self._vstream, item, self.opts.pix_fmt, self.opts.codec, str(self.src))
                    if self.announce:  # after the layout: a --pix-fmt that does not fit is one line alone
                        self._note(self.colorizer.summary)
                    if lay_box[0].note:
                        self._note(lay_box[0].note)
                item = _to_planes(item, lay_box[0])
                frames.append(item)
            if not warm:  # warm-up frames go through the model only
                pending.append(item)
            if len(frames) >= self.batch:
                flush()

    # -- stage 3: encode and mux (main thread) -------------------------------------
    def _add_video_stream(self, out, vstream):
        opts = self.opts
        rate = vstream.average_rate or vstream.guessed_rate or fractions.Fraction(25)
        try:
            ostream = out.add_stream(opts.codec, rate=rate)
        except (ValueError, av.FFmpegError) as exc:
            raise InvalidInput(f"--codec {opts.codec}: not available ({_reason(exc)}); "
                               "use libx264, libx265, prores_ks or ffv1") from None
        ostream.time_base = vstream.time_base
        ostream.metadata.update({k: v for k, v in vstream.metadata.items()
                                 if k.lower() not in ("encoder", "handler_name")})
        return ostream

    def _configure_video(self, ostream, vstream, lay: _FrameLayout, first: av.VideoFrame) -> None:
        """Settings that need the first decoded frame; the header is not written yet."""
        opts = self.opts
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
        ctx.color_range = _RANGE_FULL if lay.full_range else _RANGE_LIMITED
        for key, value in lay.tags.items():
            setattr(ctx, key, value)
        options = {}
        crf = opts.crf if opts.crf is not None else DEFAULT_CRF.get(opts.codec)
        preset = opts.preset or DEFAULT_PRESET.get(opts.codec)
        if crf is not None:
            options["crf"] = str(crf)
        if preset is not None:
            options["preset"] = preset
        if opts.codec == "libx265" and not self.progress:  # --quiet: x265 logs past FFmpeg's logger
            options["x265-params"] = "log-level=error"
        ctx.options = options
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
                               f"{lay.fmt.name} at {ctx.framerate} fps: {_reason(exc)}); {fix}") from None

    def run(self) -> Stats:
        dst, src = self.dst, self.src
        # Option errors before any file is touched.
        _window(self.opts)
        if self.opts.pix_fmt:
            check_pix_fmt(self.opts.pix_fmt, self.opts.codec)
        # A stateful colorizer (--stabilize) must not carry colour over from another video.
        reset = getattr(self.colorizer, "reset", None)
        if reset is not None:
            reset()
        inp = open_input(src)
        vstream = inp.streams.video[0]
        try:
            check_frame_size(vstream.codec_context.width, vstream.codec_context.height, src)
        except InvalidInput:
            inp.close()
            raise
        vstream.thread_type = "AUTO"
        self._vstream = vstream
        tmp = partial_path(dst)
        created = False
        try:
            # FFmpeg opens the file only when the header is written; create it now so
            # an unwritable folder is an error here, not a traceback from the muxer.
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
            created = True
            out = av.open(str(tmp), "w")
        except (av.FFmpegError, OSError, ValueError) as exc:
            inp.close()
            if created:
                tmp.unlink(missing_ok=True)
            raise OutputError(f"{dst}: cannot write the output here ({_reason(exc)}); "
                              "choose another folder or name with -o") from None
        stop = threading.Event()
        q_dec: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES * self.batch)
        q_enc: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES * self.batch)
        copies: dict[int, av.stream.Stream] = {}
        lay_box: list = [None]
        workers = []
        ok = False
        t0 = time.perf_counter()
        guard = _OneStop().__enter__()
        try:
            out.metadata.update(inp.metadata)
            chapters = _chapters(inp, *_window(self.opts))
            if chapters:
                out.set_chapters(chapters)
            for s in inp.streams:
                if s.index == vstream.index:
                    ostream = self._add_video_stream(out, vstream)
                    continue
                copy_stream(out, s, copies, src, dst)
            workers = [
                _Worker(lambda: self._decode(inp, vstream, copies, q_dec, stop), "vidcolor-decode"),
                _Worker(lambda: self._infer(lay_box, q_dec, q_enc, stop), "vidcolor-model"),
            ]
            for w in workers:
                w.start()
            try:
                self._encode(inp, out, vstream, ostream, copies, lay_box, q_enc, stop, workers)
            except av.FFmpegError as exc:  # encoder or muxer: disk full, a stream the format refuses...
                raise OutputError(f"{dst}: writing the output failed ({_reason(exc)}) while colorizing {src}") from None
            ok = True
        finally:
            guard.stopping = True  # from here a signal changes nothing: the job ends either way
            try:
                stop.set()
                for w in workers:
                    w.join()
                finish_output(out, inp, tmp, dst, ok, self.overwrite)
            finally:
                guard.__exit__()
        self.stats.seconds = time.perf_counter() - t0
        self.stats.damage = self._damage_line()
        if self.truncated:
            raise TruncatedInput(f"{self.truncated}; the {self.stats.frames} frames before it were written to {dst}")
        return self.stats

    def _note(self, line: str) -> None:
        """One line of news on stderr unless quiet (progress off), kept in Stats.notes either way."""
        self.stats.notes.append(line)
        if self.progress:
            from tqdm import tqdm

            tqdm.write(line, file=sys.stderr)

    def _damage_line(self) -> str | None:
        """One line on what a damaged input lost in the middle, or None."""
        if not self._bad_packets and not self._holes:
            return None
        where = [f"no video from {a:.2f} s to {b:.2f} s" for a, b in self._holes]
        if self._bad_packets:
            times = ", ".join(f"{t:.2f}" for t in self._bad_packets[:3]) + (" ..." if len(self._bad_packets) > 3 else "")
            n = len(self._bad_packets)
            where.append(f"{n} undecodable packet{'s' if n > 1 else ''} at {times} s")
        n = max(self._missing, 1)
        return (f"{self.src}: the video is damaged, about {n} frame{'s are' if n > 1 else ' is'} missing "
                f"({'; '.join(where)})")

    def _encode(self, inp, out, vstream, ostream, copies, lay_box, q_in, stop, workers):
        from tqdm import tqdm

        start, end = _window(self.opts)
        # Progress in seconds of video, not frames: a variable frame rate (a phone's video, an AVI
        # with dropped frames: tree.avi's header counts 444 frames for 68 pictures) makes any
        # frame count a guess, while the frames' timestamps say exactly how far along it is.
        total = _expected_seconds(vstream, inp, start, end, self.src if self.src.is_file() else None)
        bar = tqdm(total=total, disable=not self.progress, dynamic_ncols=True, desc=self.src.name, leave=False,
                   bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s [{elapsed}<{remaining}{postfix}]" if total
                   else "{desc}: {n:.1f} s [{elapsed}{postfix}]")
        t0, origin = time.perf_counter(), None
        configured = False
        waiting: list = []  # packets that arrive before the first frame fixes the output's layout
        # Output time 0 (EncodeOptions.timestamps_from; --start by default).
        zero = start if self.opts.timestamps_from is None else self.opts.timestamps_from
        offset_v = round(zero / vstream.time_base) if zero else 0
        try:
            while True:
                try:
                    item = q_in.get(timeout=0.2)
                except queue.Empty:
                    for w in workers:
                        if w.error is not None:
                            raise w.error
                    continue
                if item is _END:
                    break
                if isinstance(item, av.Packet):
                    if not configured:
                        waiting.append(item)
                    else:
                        self._mux_copy(out, item, copies, zero)
                    continue
                if not configured:
                    self._configure_video(ostream, vstream, lay_box[0], item)
                    configured = True
                    for packet in waiting:
                        self._mux_copy(out, packet, copies, zero)
                    waiting.clear()
                # how far along: to the end of this frame, by its time since the first (else by the count)
                length = _frame_seconds(item, vstream)
                if item.pts is not None:
                    at = float(item.pts * vstream.time_base)
                    origin = at if origin is None else origin
                    done = at - origin + length
                else:
                    done = (self.stats.frames + 1) * length
                if item.pts is not None:
                    item.pts -= offset_v
                item.pict_type = av.video.frame.PictureType.NONE
                out.mux(ostream.encode(item))
                self.stats.frames += 1
                n = self.stats.frames
                bar.set_postfix_str(f"{n} frames, {n / max(time.perf_counter() - t0, 1e-9):.1f} fps", refresh=False)
                bar.update(max(0.0, min(done, total or done) - bar.n))
            for w in workers:
                if w.error is not None:
                    raise w.error
            if not configured:
                length = video_seconds(inp, vstream)
                if start and length is not None and start >= length:
                    raise InvalidInput(f"{self.src}: --start {start:g} is past the end of the video "
                                       f"({length:.2f} s); give an earlier --start")
                raise InvalidInput(f"{self.src}: no video frame could be decoded"
                                   + (f" in the range asked for (--start {start})" if start else "")
                                   + "; check that the file is complete")
            out.mux(ostream.encode(None))
        finally:
            bar.close()

    @staticmethod
    def _mux_copy(out, packet, copies, start):
        ostream = copies[packet.stream.index]
        if start:
            shift = round(start / packet.time_base)
            packet.pts = packet.pts - shift if packet.pts is not None else None
            packet.dts = packet.dts - shift if packet.dts is not None else None
        packet.stream = ostream
        out.mux(packet)


def copy_stream(out, s, copies: dict, src, dst) -> None:
    """Add input stream ``s`` to ``out`` for copying without re-encoding, or say why it is dropped."""
    try:
        copies[s.index] = out.add_stream_from_template(s)
    except (ValueError, av.FFmpegError) as exc:
        print(f"vidcolor: {src}: stream #{s.index} ({s.type}) cannot go into "
              f"{dst.suffix} and is dropped ({_reason(exc)})", file=sys.stderr)


def finish_output(out, inp, tmp: pathlib.Path, dst: pathlib.Path, ok: bool, overwrite: bool = True) -> None:
    """Close the output (the muxer writes its trailer then) and the input; rename the temporary
    file into place only if everything, the close included, went well, else remove it."""
    try:
        out.close()
    except av.FFmpegError as exc:
        if ok:
            ok = False
            raise OutputError(f"{dst}: the output could not be finished ({_reason(exc)})") from None
    finally:
        inp.close()
        try:
            if ok:
                publish(tmp, dst, overwrite)
        finally:
            tmp.unlink(missing_ok=True)


#: bytes in a file name on Linux, macOS and Windows file systems.
NAME_MAX = 255
_PID_DIGITS = 7  # pid_max is at most 4194304


def partial_path(dst: pathlib.Path, pid: int | None = None) -> pathlib.Path:
    """The hidden name ``dst`` is written under (.STEM.partial-PID.EXT), its stem cut to fit NAME_MAX."""
    dst = pathlib.Path(dst)
    pid = os.getpid() if pid is None else pid
    room = NAME_MAX - len(os.fsencode(f"..partial-{'9' * _PID_DIGITS}{dst.suffix}"))
    stem = os.fsdecode(os.fsencode(dst.stem)[:max(room, 1)])
    return dst.with_name(f".{stem}.partial-{pid}{dst.suffix}")


def partials_of(dst: pathlib.Path) -> list[tuple[pathlib.Path, int]]:
    """The temporary files of ``dst`` (any writer's) and their writers' process ids."""
    import glob
    import re

    dst = pathlib.Path(dst)
    head, _, _ = partial_path(dst, 0).name.rpartition(".partial-")
    found = []
    try:
        for p in dst.parent.glob(f"{glob.escape(head)}.partial-*{glob.escape(dst.suffix)}"):
            m = re.fullmatch(r"(\d+)", p.name[len(head) + 9:len(p.name) - len(dst.suffix)])
            if m:
                found.append((p, int(m.group(1))))
    except OSError:
        pass
    return found


def sweep_stale_partials(dst: pathlib.Path) -> None:
    """Remove the temporary files of ``dst`` whose writer process is gone (killed by SIGKILL, a crash)."""
    for p, pid in partials_of(dst):
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # alive (or another user's): its file is its own
        except ProcessLookupError:
            pass
        except OSError:
            continue
        p.unlink(missing_ok=True)


def publish(tmp: pathlib.Path, dst: pathlib.Path, overwrite: bool) -> None:
    """Rename the finished ``tmp`` to ``dst``; without ``overwrite``, never over a file that appeared
    meanwhile (another program's): a hard link fails if the name exists, a rename would not."""
    if overwrite:
        os.replace(tmp, dst)
        return
    try:
        os.link(tmp, dst)
    except FileExistsError:
        raise OutputError(f"{dst}: another program created this file while vidcolor was writing; it was left "
                          "as it is: pass --overwrite to replace it or choose another name with -o") from None
    except OSError as exc:  # no hard links here (FAT, some network shares): check, then rename
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if os.path.lexists(dst):
            raise OutputError(f"{dst}: another program created this file while vidcolor was writing; it was "
                              "left as it is: pass --overwrite to replace it or choose another name with -o") from None
        os.rename(tmp, dst)
        return
    os.unlink(tmp)


def _frame_seconds(frame, vstream) -> float:
    if frame is not None and frame.duration and frame.time_base:
        return float(frame.duration * frame.time_base)
    rate = vstream.average_rate or vstream.guessed_rate
    return 1 / float(rate) if rate else 0.04


#: Demuxers of bare elementary streams: no container clock, so the duration FFmpeg reports is the
#: file size over the bit rate in the stream header, a guess (an MPEG-1 stream flagged VBR, like
#: visp's cube.mpeg, "lasts" 0.04 s of its 3.2).
_ESTIMATED_DURATION_FORMATS = {"mpegvideo", "m4v", "h261", "h263", "h264", "hevc", "vvc", "cavsvideo", "dirac",
                               "avs2", "avs3", "mjpeg"}


def duration_is_guessed(inp) -> bool:
    """Whether the container's and stream's durations are estimates, not read from the file."""
    return inp.format.name in _ESTIMATED_DURATION_FORMATS


def _track_seconds(vstream) -> float | None:
    """The video stream's own duration from the header, in seconds, if it states one."""
    if duration_is_guessed(vstream.container):
        return None
    if vstream.duration and vstream.time_base:
        return float(vstream.duration * vstream.time_base)
    tag = vstream.metadata.get("DURATION")  # Matroska's per-track tag, HH:MM:SS.nnnnnnnnn
    if tag:
        try:
            h, m, sec = tag.split(":")
            return int(h) * 3600 + int(m) * 60 + float(sec)
        except ValueError:
            return None
    return None


def _declared_end(inp, vstream) -> float | None:
    """When the header says the video stream ends, in seconds; None if it does not say."""
    seconds = _track_seconds(vstream)
    if seconds is not None:
        return float((vstream.start_time or 0) * vstream.time_base) + seconds
    if inp.duration and len(inp.streams) == 1 and not duration_is_guessed(inp):
        return ((inp.start_time or 0) + inp.duration) / av.time_base
    return None


def _chapters(inp, start: float, end: float) -> list[dict]:
    """The input's chapters that overlap the window, moved to its start."""
    kept = []
    for ch in inp.chapters():
        tb = ch["time_base"]
        lo, hi = max(float(ch["start"] * tb), start), min(float(ch["end"] * tb), end)
        if hi > lo:
            kept.append({**ch, "start": round((lo - start) / tb), "end": round((hi - start) / tb)})
    return kept


def video_seconds(inp, vstream) -> float | None:
    """The video's length by the file's header (the track's, else the container's); None if unsaid or guessed."""
    if (track := _track_seconds(vstream)) is not None:
        return track
    if inp.duration and not duration_is_guessed(inp):
        return inp.duration / av.time_base
    return None


def scanned_seconds(src: pathlib.Path) -> float:
    """The video's length from its packets' timestamps (demuxed, not decoded); 0 if they have none."""
    first = last = None
    with open_input(src) as inp:
        for packet in inp.demux(video=0):
            if packet.pts is None:
                continue
            start = float(packet.pts * packet.time_base)
            end = start + float((packet.duration or 0) * packet.time_base)
            first = start if first is None else min(first, start)
            last = end if last is None else max(last, end)
    return last - first if first is not None else 0.0


def _expected_seconds(vstream, inp, start: float, end: float, src: pathlib.Path | None = None) -> float | None:
    """Seconds of video the job will colorize, for the progress bar; None when the file does not say."""
    seconds = video_seconds(inp, vstream)
    if seconds is None and src is not None and duration_is_guessed(inp):
        seconds = scanned_seconds(src)  # a bare stream: one pass over its packets, for the progress bar's ETA
    if not seconds:
        return None
    return max(0.0, min(seconds, end) - start) or None


def colorize_video(src, dst, colorizer: Colorizer, opts: EncodeOptions = EncodeOptions(),
                   progress: bool = True, overwrite: bool = True) -> Stats:
    return VideoJob(src, dst, colorizer, opts, progress, overwrite).run()
