"""Colorize a YUV4MPEG2 (y4m) stream: the `vidcolor - -o -` pipe for editors and ffmpeg.

``ffmpeg -i in.mkv -f yuv4mpegpipe - | vidcolor - -o - | ffmpeg -i - out.mkv``

The output has the input's header, token for token (size, frame rate,
interlacing, pixel aspect, XCOLORRANGE and every other X tag), and each
frame's FRAME line; the luma plane (and the alpha plane of ``C444alpha``) is
copied byte for byte, only Cb and Cr are new. Streaming: a few frames (the
runtime's batch) are held at a time, whatever the length of the stream.

Colour spaces read: ``C420jpeg``, ``C420paldv``, ``C420mpeg2``, ``C420``
(and no C tag, which means 420jpeg), ``C411``, ``C422``, ``C444``,
``C444alpha``, ``Cmono`` and the high-bit-depth ``C420pN``, ``C422pN``,
``C444pN``, ``CmonoN`` (N = 9..16, little-endian samples, as ffmpeg writes them).

A grayscale (``Cmono*``) stream has no chroma planes to fill, so it comes out
as 4:2:0 of the same bit depth (``C420jpeg`` for 8 bits, ``C420pN`` above):
what every encoder takes, with the luma kept exact. ffmpeg tags gray as full
range (``XCOLORRANGE=FULL``); a mono stream without the tag is read as full
range too. A YUV stream without the tag is limited range, the YUV4MPEG2
default. The output always says which range its chroma was written for
(``XCOLORRANGE=LIMITED`` or ``FULL``, as FFmpeg's muxer writes it and its
demuxer reads it), so readers decode it as it was meant.

The matrix of the new chroma is BT.709 for frames of 720 lines and more,
BT.601 below, as the CLI engine assumes for untagged video. No tag says so:
FFmpeg's yuv4mpeg muxer (libavformat/yuv4mpegenc.c) writes no matrix, only
XCOLORRANGE, and players give untagged video the same rule by height.
Reading, writing and the model run in three threads, as in file mode.
"""

from __future__ import annotations

import dataclasses
import queue
import re
import sys
import threading
from typing import BinaryIO

import numpy as np

from vidcolor.errors import InvalidInput, TruncatedInput, UnsupportedFormat
from vidcolor.io.stages import END, QUEUE_FRAMES, Worker, get, put
from vidcolor.planes import code_dtype, colorize_codes, default_matrix, has_colour

MAGIC = b"YUV4MPEG2"
_HEADER_LIMIT = 4096
_FRAME_LIMIT = 1024
_HINT = "pipe one in with `ffmpeg -i INPUT -f yuv4mpegpipe -`"

# C tag -> (horizontal, vertical) chroma subsampling; None for mono.
_SUBSAMPLING = {"420": (2, 2), "420jpeg": (2, 2), "420paldv": (2, 2), "420mpeg2": (2, 2),
                "411": (4, 1), "422": (2, 1), "444": (1, 1), "444alpha": (1, 1), "mono": None}
_HIGH = re.compile(r"^(420|422|444|mono)(?:p)?(9|1[0-6])$")


@dataclasses.dataclass(frozen=True)
class Y4MFormat:
    """What the C tag says about the planes of each frame."""

    tag: str
    bits: int
    #: (horizontal, vertical) subsampling of Cb/Cr; None for mono.
    subsampling: tuple[int, int] | None
    alpha: bool = False

    @classmethod
    def parse(cls, tag: str | None) -> Y4MFormat:
        tag = tag or "420jpeg"
        if tag in _SUBSAMPLING:
            return cls(tag, 8, _SUBSAMPLING[tag], tag == "444alpha")
        m = _HIGH.match(tag)
        if m and (m.group(1) == "mono" or "p" in tag):
            base = m.group(1)
            return cls(tag, int(m.group(2)), _SUBSAMPLING["420" if base == "420" else base])
        raise UnsupportedFormat(
            f"y4m colour space C{tag} is not supported; use 420jpeg, 420mpeg2, 420paldv, 411, 422, 444, "
            "444alpha, mono or their 9..16-bit variants (e.g. 420p10), e.g. `ffmpeg ... -pix_fmt yuv420p "
            "-f yuv4mpegpipe -`")

    @property
    def mono(self) -> bool:
        return self.subsampling is None

    @property
    def itemsize(self) -> int:
        return 2 if self.bits > 8 else 1

    def output(self) -> Y4MFormat:
        """The output's format: the input's, except mono, which becomes 4:2:0."""
        if not self.mono:
            return self
        return Y4MFormat("420jpeg" if self.bits == 8 else f"420p{self.bits}", self.bits, (2, 2))

    def chroma_shape(self, width: int, height: int) -> tuple[int, int]:
        sw, sh = self.subsampling
        return -(-height // sh), -(-width // sw)


@dataclasses.dataclass
class Y4MHeader:
    tokens: list[str]  # after the magic, in order
    width: int
    height: int
    fmt: Y4MFormat
    full_range: bool

    @classmethod
    def parse(cls, line: bytes) -> Y4MHeader:
        try:
            text = line.decode("ascii").rstrip("\n")
        except UnicodeDecodeError:
            raise InvalidInput(f"the y4m header is not ASCII text; {_HINT}") from None
        tokens = text.split(" ")[1:]
        fields = {t[0]: t[1:] for t in tokens if t}
        try:
            width, height = int(fields["W"]), int(fields["H"])
        except (KeyError, ValueError):
            raise InvalidInput(f"the y4m header {text!r} has no valid W and H tags; {_HINT}") from None
        if width <= 0 or height <= 0:
            raise InvalidInput(f"the y4m header gives a size of {width}x{height}; {_HINT}")
        fmt = Y4MFormat.parse(fields.get("C"))
        rng = next((t.split("=", 1)[1].upper() for t in tokens if t.startswith("XCOLORRANGE=")), None)
        full = rng == "FULL" if rng else fmt.mono
        return cls(tokens, width, height, fmt, full)

    def output_line(self) -> bytes:
        """The header to write: the input's, with C (and XYSCSS) changed for mono input and
        XCOLORRANGE added where the input had none."""
        tokens = list(self.tokens)
        if self.fmt.mono:
            out = self.fmt.output()
            tokens = [f"C{out.tag}" if t.startswith("C") else
                      f"XYSCSS={out.tag.upper()}" if t.startswith("XYSCSS=") else t for t in tokens]
        if not any(t.startswith("XCOLORRANGE=") for t in tokens):  # the range the chroma was written for
            tokens.append("XCOLORRANGE=FULL" if self.full_range else "XCOLORRANGE=LIMITED")
        return " ".join([MAGIC.decode()] + tokens).encode("ascii") + b"\n"


def read_header(infile: BinaryIO) -> Y4MHeader:
    line = infile.readline(_HEADER_LIMIT)
    if not line:
        raise InvalidInput(f"the input is empty: no YUV4MPEG2 stream; {_HINT}")
    if not line.startswith(MAGIC + b" ") or not line.endswith(b"\n"):
        start = line[:16]
        raise InvalidInput(f"the input is not a YUV4MPEG2 stream (it starts with {start!r}); {_HINT}")
    return Y4MHeader.parse(line)


def _read_exact(infile: BinaryIO, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = infile.read(n - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


@dataclasses.dataclass(frozen=True)
class _FrameBytes:
    """Where the planes of one frame lie in its bytes, and the chroma written for it."""

    width: int
    height: int
    luma: int
    chroma: int
    alpha: int
    #: the output's chroma planes: (height, width) and little-endian sample type.
    chroma_size: tuple[int, int]
    dtype: np.dtype

    @classmethod
    def of(cls, head: Y4MHeader) -> _FrameBytes:
        fmt, w, h = head.fmt, head.width, head.height
        luma = w * h * fmt.itemsize
        if fmt.mono:
            chroma = 0
        else:
            ch, cw = fmt.chroma_shape(w, h)
            chroma = 2 * ch * cw * fmt.itemsize
        return cls(w, h, luma, chroma, luma if fmt.alpha else 0, fmt.output().chroma_shape(w, h),
                   np.dtype(code_dtype(fmt.bits)).newbyteorder("<"))

    @property
    def total(self) -> int:
        return self.luma + self.chroma + self.alpha


def _read_frames(infile: BinaryIO, fb: _FrameBytes, q_out: queue.Queue, stop: threading.Event) -> None:
    """The reader stage: (FRAME line, bytes) per frame, then END, or the error that ends the stream."""
    n = 0
    while True:
        line = infile.readline(_FRAME_LIMIT)
        if not line:
            break
        if not line.startswith(b"FRAME") or not line.endswith(b"\n") or line[5:6] not in (b"\n", b" "):
            put(q_out, InvalidInput(f"y4m frame {n} does not start with a FRAME line (found {line[:16]!r}): "
                                    "the stream is corrupt or its header's size or C tag is wrong"), stop)
            return
        data = _read_exact(infile, fb.total)
        if len(data) < fb.total:
            put(q_out, TruncatedInput(f"the y4m stream ends inside frame {n} ({len(data)} of {fb.total} "
                                      f"bytes); the {n} frames before it were written"), stop)
            return
        put(q_out, (line, data), stop)
        n += 1
    put(q_out, END, stop)


def _new_chroma(colorizer, head: Y4MHeader, fb: _FrameBytes, pending: list, keep_colour: bool):
    """The chroma bytes of a batch of frames, and whether any had colour of its own."""
    bits = head.fmt.bits
    chroma = [data[fb.luma:fb.luma + fb.chroma] for _, data in pending]
    coloured = [bool(c) and has_colour(*np.frombuffer(c, fb.dtype).reshape(2, *fb.chroma_size), bits)
                for c in chroma]
    todo = [i for i, c in enumerate(coloured) if not (keep_colour and c)]
    if todo:
        w, h = fb.width, fb.height
        y = np.stack([np.frombuffer(pending[i][1], fb.dtype, w * h).reshape(h, w) for i in todo])
        codes = colorize_codes(colorizer, y, fb.chroma_size, bits, head.full_range, default_matrix(h))
        for i, c in zip(todo, codes.astype(fb.dtype, copy=False)):
            chroma[i] = c.tobytes()
    return chroma, any(coloured)


def _colorize_batches(colorizer, head: Y4MHeader, fb: _FrameBytes, batch: int, keep_colour: bool,
                      q_in: queue.Queue, q_out: queue.Queue, stop: threading.Event) -> None:
    """The model stage: batches of frames with their new chroma, then what ended the stream."""
    pending: list[tuple[bytes, bytes]] = []
    while True:
        item = get(q_in, stop)
        if isinstance(item, tuple):
            pending.append(item)
            if len(pending) < batch:
                continue
        if pending:
            chroma, coloured = _new_chroma(colorizer, head, fb, pending, keep_colour)
            put(q_out, (pending, chroma, coloured), stop)
            pending = []
        if not isinstance(item, tuple):  # the end, or the reader's error after every frame before it
            put(q_out, item, stop)
            return


def _write_frames(outfile: BinaryIO, fb: _FrameBytes, q_in: queue.Queue, workers, bar, say,
                  keep_colour: bool) -> int:
    """The writer (main thread): each frame's FRAME line, luma, new chroma and alpha; returns the count."""
    done, said = 0, False
    while True:
        try:
            item = q_in.get(timeout=0.2)
        except queue.Empty:
            for worker in workers:
                if worker.error is not None:
                    raise worker.error
            continue
        if item is END:
            return done
        if isinstance(item, Exception):
            raise item
        pending, chroma, coloured = item
        if coloured and not said:
            said = True
            say("vidcolor: the input already has colour: the frames that have it keep their own (--keep-colour)"
                if keep_colour else "vidcolor: warning: the input already has colour (its chroma is far from "
                "neutral); it is replaced by the model's (--keep-colour keeps it)")
        for (line, data), c in zip(pending, chroma):
            outfile.write(line)
            outfile.write(data[:fb.luma])
            outfile.write(c)
            if fb.alpha:
                outfile.write(data[fb.luma + fb.chroma:])
        outfile.flush()
        done += len(pending)
        bar.update(len(pending))


def colorize_y4m(infile: BinaryIO, outfile: BinaryIO, colorizer, *, progress: bool = False,
                 keep_colour: bool = False) -> int:
    """Colorize the YUV4MPEG2 stream ``infile`` into ``outfile``; returns the number of frames.

    ``progress`` also allows the lines on stderr (what runs, an input that has colour);
    ``keep_colour``: frames that have colour of their own keep it.

    Raises ``InvalidInput`` for a stream that is not y4m, ``UnsupportedFormat``
    for a colour space it cannot hold, and ``TruncatedInput`` (after writing
    every complete frame) when the stream ends inside a frame.
    """
    from tqdm import tqdm

    from vidcolor.colorizer import check_frame_size

    head = read_header(infile)
    check_frame_size(head.width, head.height, "the y4m stream")  # before a frame's worth of memory is asked for
    fb = _FrameBytes.of(head)
    batch = max(1, int(getattr(colorizer.runtime, "batch", 8) or 1))

    # The engine's three stages, as in file mode: a reader thread, the model in batches in another,
    # writing here; the pipe's other ends (ffmpeg decoding and encoding) keep running meanwhile.
    stop = threading.Event()
    q_read: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES * batch)
    q_done: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES)

    def say(line: str) -> None:
        if progress:
            tqdm.write(line, file=sys.stderr)

    if hasattr(colorizer, "summary"):
        say(colorizer.summary)
    outfile.write(head.output_line())
    bar = tqdm(disable=not progress, unit="frame", dynamic_ncols=True, desc="y4m", leave=False)
    workers = [Worker(lambda: _read_frames(infile, fb, q_read, stop), "vidcolor-y4m-read"),
               Worker(lambda: _colorize_batches(colorizer, head, fb, batch, keep_colour, q_read, q_done, stop),
                      "vidcolor-model")]
    try:
        for worker in workers:
            worker.start()
        return _write_frames(outfile, fb, q_done, workers, bar, say, keep_colour)
    finally:
        stop.set()
        workers[1].join()  # the reader may sit in a blocking read of the pipe: a daemon, not waited for
        bar.close()
