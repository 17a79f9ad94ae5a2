"""The streaming engine: PyAV decode -> batched model -> PyAV encode.

Three stages, each in its own thread, joined by bounded queues (`vidcolor.io.stages`),
so decoding (`vidcolor.io.decode`), inference and encoding overlap and memory does
not grow with the film. The luma plane of every frame goes to the output untouched;
only the chroma planes are replaced (`vidcolor.io.frames`). Audio, subtitle and data
packets travel through the same queues, in order, and are muxed without re-encoding
into a container set up as `vidcolor.io.output` does it, written under a temporary
name (`vidcolor.atomic.atomic_output`).
"""

from __future__ import annotations

import dataclasses
import pathlib
import queue
import sys
import threading
import time

import av

from vidcolor.atomic import atomic_output
from vidcolor.colorizer import Colorizer, check_frame_size
from vidcolor.errors import InvalidInput, OutputError, TruncatedInput
from vidcolor.io.decode import Decoder, Warm
from vidcolor.io.frames import FrameLayout, colorize_frames, frame_layout, to_planes
from vidcolor.io.media import expected_seconds, frame_seconds, open_input, reason, video_seconds
from vidcolor.io.output import add_video_stream, check_pix_fmt, close_output, configure_video, open_output, write_header
from vidcolor.io.stages import END, QUEUE_FRAMES, OneStop, Worker, get, put

#: no film lasts longer (31 years); larger times overflow FFmpeg's 64-bit timestamps.
MAX_SECONDS = 1e9


@dataclasses.dataclass(frozen=True)
class EncodeOptions:
    """How a job encodes, and which part of the input it colorizes; checked when made."""

    codec: str = "libx264"
    crf: int | None = None
    preset: str | None = None
    #: planar YUV format of the output; None follows the input's bit depth.
    pix_fmt: str | None = None
    #: --start/--duration: seconds, or text as video tools write it (MM:SS, HH:MM:SS.ms).
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
        for name in ("start", "duration"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = parse_time(value, f"--{name}")
                object.__setattr__(self, name, value)
            if value is not None and not 0 <= value <= MAX_SECONDS:  # NaN fails too
                raise InvalidInput(f"--{name} {value:g}: give a number of seconds from 0 to {MAX_SECONDS:g}")
        start, end = self.window
        if end <= start:
            raise InvalidInput("--duration must be > 0")

    @property
    def window(self) -> tuple[float, float]:
        """(start, end) in seconds from the input's first timestamp; end is infinite without --duration."""
        start = self.start or 0.0
        return start, start + self.duration if self.duration is not None else float("inf")


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


class VideoJob:
    """One input video colorized into one output file."""

    #: say what runs (the colorizer's summary) at the first frame, unless quiet
    announce = True

    def __init__(self, src: pathlib.Path, dst: pathlib.Path, colorizer: Colorizer,
                 opts: EncodeOptions = EncodeOptions(), progress: bool = True, overwrite: bool = True):
        self.src, self.dst = pathlib.Path(src), pathlib.Path(dst)
        self.colorizer, self.opts, self.progress = colorizer, opts, progress
        #: False: never replace a ``dst`` that appears while the job runs (`vidcolor.atomic.publish`).
        self.overwrite = overwrite
        self.batch = colorizer.runtime.batch
        self.stats = Stats()
        self.truncated: str | None = None
        #: the frames' layout, set by the model stage at the first frame; the encoder reads it
        #: after that frame came through the queue (which orders the two threads).
        self.layout: FrameLayout | None = None
        self.vstream = None
        self.decoder: Decoder | None = None
        self._colour_said = False  # the input's own colour was mentioned

    # -- stage 2: batched model ------------------------------------------------------
    def _colorize(self, frames: list) -> None:
        if frames and colorize_frames(self.colorizer, frames, self.layout, self.opts.keep_colour) \
                and not self._colour_said:
            self._colour_said = True
            self._note(f"vidcolor: {self.src}: the input already has colour: the frames that have it keep "
                       "their own (--keep-colour)" if self.opts.keep_colour else
                       f"vidcolor: warning: {self.src}: the input already has colour (its chroma is far "
                       "from neutral); it is replaced by the model's (--keep-colour keeps it)")

    def _first_frame(self, frame) -> None:
        self.layout = frame_layout(self.vstream, frame, self.opts.pix_fmt, self.opts.codec, str(self.src))
        if self.announce:  # after the layout: a --pix-fmt that does not fit is one line alone
            self._note(self.colorizer.summary)
        if self.layout.note:
            self._note(self.layout.note)

    def _infer(self, q_in, q_out, stop):
        pending: list = []  # frames and packets in decode order
        frames: list = []

        def flush():
            self._colorize(frames)
            for item in pending:
                put(q_out, item, stop)
            pending.clear()
            frames.clear()

        while True:
            item = get(q_in, stop)
            if item is END:
                flush()
                put(q_out, END, stop)
                return
            warm = isinstance(item, Warm)
            if warm:
                item = item.frame
            if isinstance(item, av.VideoFrame):
                if self.layout is None:
                    self._first_frame(item)
                item = to_planes(item, self.layout)
                frames.append(item)
            if not warm:  # warm-up frames go through the model only
                pending.append(item)
            if len(frames) >= self.batch:
                flush()

    # -- stage 3: encode and mux (main thread) -------------------------------------
    def run(self) -> Stats:
        dst, src = self.dst, self.src
        # Option errors before any file is touched (the window is checked by EncodeOptions).
        if self.opts.pix_fmt:
            check_pix_fmt(self.opts.pix_fmt, self.opts.codec)
        # A stateful colorizer (--stabilize) must not carry colour over from another video.
        reset = getattr(self.colorizer, "reset", None)
        if reset is not None:
            reset()
        inp = open_input(src)
        # From here a first signal unwinds the job, and later ones cannot cut its cleanup short.
        with OneStop() as guard:
            try:
                vstream = inp.streams.video[0]
                check_frame_size(vstream.codec_context.width, vstream.codec_context.height, src)
                vstream.thread_type = "AUTO"
                self.vstream = vstream
                t0 = time.perf_counter()
                with atomic_output(dst, hidden=True, overwrite=self.overwrite) as tmp:
                    out = open_output(tmp, dst, "; choose another folder or name with -o")
                    self._pipeline(inp, out, guard)
            finally:
                inp.close()
        self.stats.seconds = time.perf_counter() - t0
        self.stats.damage = self.decoder.damage_line()
        if self.truncated:
            raise TruncatedInput(f"{self.truncated}; the {self.stats.frames} frames before it were written to {dst}")
        return self.stats

    def _pipeline(self, inp, out, guard: OneStop) -> None:
        """The three stages from ``inp`` into ``out``; ``out`` is closed whatever happens."""
        stop = threading.Event()
        q_dec: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES * self.batch)
        q_enc: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES * self.batch)
        workers = []
        ok = False
        try:
            ostream, copies = write_header(out, inp, self.vstream, self.opts.window, self.src, self.dst,
                                           lambda o: add_video_stream(o, self.vstream, self.opts.codec))
            self.decoder = Decoder(inp, self.vstream, copies, self.opts, self.src, q_dec, stop)
            workers = [
                Worker(self.decoder.run, "vidcolor-decode"),
                Worker(lambda: self._infer(q_dec, q_enc, stop), "vidcolor-model"),
            ]
            for w in workers:
                w.start()
            try:
                self._encode(inp, out, ostream, copies, q_enc, workers)
            except av.FFmpegError as exc:  # encoder or muxer: disk full, a stream the format refuses...
                raise OutputError(f"{self.dst}: writing the output failed ({reason(exc)}) "
                                  f"while colorizing {self.src}") from None
            ok = True
        finally:
            guard.stopping = True  # from here a signal changes nothing: the job ends either way
            stop.set()
            for w in workers:
                w.join()
            if self.decoder is not None:
                self.truncated = self.decoder.truncated
            close_output(out, self.dst, ok)

    def _note(self, line: str) -> None:
        """One line of news on stderr unless quiet (progress off), kept in Stats.notes either way."""
        self.stats.notes.append(line)
        if self.progress:
            from tqdm import tqdm

            tqdm.write(line, file=sys.stderr)

    def _progress_bar(self, inp, start: float, end: float):
        from tqdm import tqdm

        # Progress in seconds of video, not frames: a variable frame rate (a phone's video, an AVI
        # with dropped frames: tree.avi's header counts 444 frames for 68 pictures) makes any
        # frame count a guess, while the frames' timestamps say exactly how far along it is.
        total = expected_seconds(self.vstream, inp, start, end, self.src if self.src.is_file() else None)
        return total, tqdm(total=total, disable=not self.progress, dynamic_ncols=True, desc=self.src.name,
                           leave=False, bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s [{elapsed}<{remaining}{postfix}]"
                           if total else "{desc}: {n:.1f} s [{elapsed}{postfix}]")

    def _next(self, q_in, workers):
        """The next item from the model stage, raising a stage's error as soon as it happens."""
        while True:
            try:
                return q_in.get(timeout=0.2)
            except queue.Empty:
                for w in workers:
                    if w.error is not None:
                        raise w.error

    def _encode(self, inp, out, ostream, copies, q_in, workers):
        vstream = self.vstream
        start, end = self.opts.window
        total, bar = self._progress_bar(inp, start, end)
        t0, origin = time.perf_counter(), None
        configured = False
        waiting: list = []  # packets that arrive before the first frame fixes the output's layout
        # Output time 0 (EncodeOptions.timestamps_from; --start by default).
        zero = start if self.opts.timestamps_from is None else self.opts.timestamps_from
        offset_v = round(zero / vstream.time_base) if zero else 0
        try:
            while (item := self._next(q_in, workers)) is not END:
                if isinstance(item, av.Packet):
                    if not configured:
                        waiting.append(item)
                    else:
                        self._mux_copy(out, item, copies, zero)
                    continue
                if not configured:
                    configure_video(ostream, vstream, self.layout, item, self.opts, quiet=not self.progress)
                    configured = True
                    for packet in waiting:
                        self._mux_copy(out, packet, copies, zero)
                    waiting.clear()
                # how far along: to the end of this frame, by its time since the first (else by the count)
                length = frame_seconds(item, vstream)
                if item.pts is not None:
                    at = float(item.pts * vstream.time_base)
                    origin = at if origin is None else origin
                    done = at - origin + length
                    item.pts -= offset_v
                else:
                    done = (self.stats.frames + 1) * length
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
                self._nothing_decoded(inp, start)
            out.mux(ostream.encode(None))
        finally:
            bar.close()

    def _nothing_decoded(self, inp, start: float) -> None:
        length = video_seconds(inp, self.vstream)
        if start and length is not None and start >= length:
            raise InvalidInput(f"{self.src}: --start {start:g} is past the end of the video "
                               f"({length:.2f} s); give an earlier --start")
        raise InvalidInput(f"{self.src}: no video frame could be decoded"
                           + (f" in the range asked for (--start {start})" if start else "")
                           + "; check that the file is complete")

    @staticmethod
    def _mux_copy(out, packet, copies, start):
        ostream = copies[packet.stream.index]
        if start:
            shift = round(start / packet.time_base)
            packet.pts = packet.pts - shift if packet.pts is not None else None
            packet.dts = packet.dts - shift if packet.dts is not None else None
        packet.stream = ostream
        out.mux(packet)


def colorize_video(src, dst, colorizer: Colorizer, opts: EncodeOptions = EncodeOptions(),
                   progress: bool = True, overwrite: bool = True) -> Stats:
    return VideoJob(src, dst, colorizer, opts, progress, overwrite).run()
