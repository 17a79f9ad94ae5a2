"""Stage 1 of `VideoJob`: demux and decode the window of the input, and note what is damaged.

The decoder passes on, in file order, the frames inside the window (``--start``,
``--duration``), the warm-up frames before it (`Warm`, colorized but not written),
and the packets of the streams copied to the output; then `END`. It seeks to the
window and checks that the seek did not overshoot (formats without an index land
late: it then decodes from the start). Like FFmpeg it skips an undecodable packet
and goes on; what was lost is told in one line by `damage_line`.
"""

from __future__ import annotations

import dataclasses
import pathlib
import queue
import threading

import av

from vidcolor.io.media import declared_end, frame_seconds, reason
from vidcolor.io.stages import END, Stopped, put

#: `Decoder.frame` says: the seek overshot, decode from the beginning.
_RESTART = "restart"
#: `Decoder.frame` says: the window's last frame has passed.
_DONE = "done"


class Warm:
    """A frame before --start that only warms the colorizer's temporal state."""

    __slots__ = ("frame",)

    def __init__(self, frame):
        self.frame = frame


@dataclasses.dataclass
class _Window:
    """Where the decoder is in the input, counted in the file's own seconds."""

    start: float
    end: float
    origin: float
    warm_from: float
    #: items held back after a seek until a frame shows that decoding starts early enough.
    held: list | None = None
    #: copied streams whose packets may still come after the window's last video frame.
    trailing: set = dataclasses.field(default_factory=set)
    decoded: int = 0  # frames passed on
    reached: float | None = None  # end time of the last one
    video_done: bool = False
    packets: int = 0  # non-empty video packets in the window
    prev_t: float | None = None  # decode time of the previous video packet

    @property
    def windowed(self) -> bool:
        return self.start > self.origin or self.end < float("inf")

    def inside(self, t: float) -> bool:
        return self.start - 1e-6 <= t < self.end


class Decoder:
    """Decodes ``inp``'s video (and passes its ``copies``' packets) into ``q_out`` until ``stop``.

    ``opts``: the job's `EncodeOptions` (its window and warm-up). After `run`: ``truncated``
    (one line, or None), ``bad_packets`` (times of undecodable packets), ``holes`` (spans
    without video packets) and ``missing`` (frames lost in the middle).
    """

    def __init__(self, inp, vstream, copies: dict, opts, src: pathlib.Path, q_out: queue.Queue,
                 stop: threading.Event):
        self.inp, self.vstream, self.copies, self.opts, self.src = inp, vstream, copies, opts, src
        self.q_out, self.stop = q_out, stop
        self.truncated: str | None = None
        self.bad_packets: list[float] = []
        self.holes: list[tuple[float, float]] = []
        self.missing = 0
        self.nominal = frame_seconds(None, vstream)
        # A hole: consecutive video packets (by dts) further apart than a few frames. Empty packets
        # count as present: AVI marks dropped frames with them.
        self.hole = max(0.25, 3 * self.nominal)

    def _window(self) -> _Window:
        start, end = self.opts.window
        # --start/--duration count from the file's first timestamp (MPEG-PS/TS start near 0.5 s or later).
        inp = self.inp
        origin = inp.start_time / av.time_base if inp.start_time else 0.0
        start, end = start + origin, end + origin
        warm_from = max(origin, start - self.opts.warmup) if self.opts.warmup > 0 else start
        w = _Window(start, end, origin, warm_from,
                    trailing={i for i, s in self.copies.items() if s.type in ("audio", "video")})
        # After a seek, packets wait here until the first frame shows that decoding
        # starts at or before --start: formats without an index (MPEG-PS/TS) may land
        # after the keyframe, and the decoder then drops frames up to the next one.
        if warm_from > origin:
            inp.seek(int(warm_from / self.vstream.time_base), stream=self.vstream, backward=True)
            w.held = []
        return w

    def run(self) -> None:
        w = self._window()
        try:
            demuxed = self.inp.demux()
            while (packet := next(demuxed, None)) is not None:
                if self.stop.is_set():
                    raise Stopped
                if packet.stream.index != self.vstream.index:
                    if self.copy_packet(w, packet):
                        break
                    continue
                step = self.video_packet(w, packet)
                if step == _RESTART:
                    demuxed = self.inp.demux()
                elif step == _DONE:
                    break
        except av.FFmpegError as exc:
            self.truncated = (f"{self.src}: decoding stopped after frame {w.decoded} "
                              f"({reason(exc)}): the file is truncated or corrupt")
        if w.held:
            for item in w.held:
                put(self.q_out, item, self.stop)
        self.missing = max(w.packets - w.decoded, sum(round((b - a) / self.nominal) for a, b in self.holes))
        if not w.video_done and not self.truncated:
            self.truncated = self._cut_short(w)
        put(self.q_out, END, self.stop)

    def _send(self, w: _Window, item) -> None:
        if w.held is None:
            put(self.q_out, item, self.stop)
        else:
            w.held.append(item)

    def copy_packet(self, w: _Window, packet) -> bool:
        """Pass on a packet of a copied stream if it is in the window; True: nothing more to read."""
        if packet.stream.index not in self.copies or packet.dts is None:
            return False
        t = float(packet.pts * packet.time_base) if packet.pts is not None else None
        if w.windowed and t is not None:
            if t >= w.end:
                w.trailing.discard(packet.stream.index)
                return w.video_done and not w.trailing
            if t < w.start:
                return False
        self._send(w, packet)
        return False

    def video_packet(self, w: _Window, packet) -> str | None:
        """Decode a video packet and pass its frames on; `_RESTART`, `_DONE` or None (go on)."""
        t = float(packet.pts * packet.time_base) if packet.pts is not None else None
        if w.video_done:
            return _DONE if t is not None and t > w.end + 10 else None  # no stream should trail the video by that much
        td = float(packet.dts * packet.time_base) if packet.dts is not None else t
        if td is not None and w.inside(td):
            if w.prev_t is not None and td - w.prev_t > self.hole:
                self.holes.append((w.prev_t + self.nominal - w.origin, td - w.origin))
            w.prev_t = td
        if packet.size and t is not None and w.inside(t):
            w.packets += 1
        try:
            frames = self.vstream.decode(packet)
        except av.FFmpegError:
            # As FFmpeg does: skip the damaged packet, go on with the next.
            if t is None or w.inside(t):
                self.bad_packets.append((t if t is not None else w.reached or w.start) - w.origin)
            return None
        for frame in frames:
            step = self.frame(w, frame)
            if step == _RESTART:
                self._restart(w)
                return _RESTART
            if step == _DONE:
                break
        return _DONE if w.video_done and not w.trailing else None

    def frame(self, w: _Window, frame) -> str | None:
        """Pass on a decoded frame: a warm-up one, one in the window, or note the window's end."""
        ft = frame.time if frame.time is not None else w.decoded / float(self.vstream.guessed_rate or 25)
        if ft < w.warm_from - 1e-6:
            return None
        if w.held is not None:
            if ft > w.warm_from + frame_seconds(frame, self.vstream) + 1e-3:
                return _RESTART
            for item in w.held:
                put(self.q_out, item, self.stop)
            w.held = None
        if ft < w.start - 1e-6:
            put(self.q_out, Warm(frame), self.stop)
            return None
        if ft >= w.end:
            w.video_done = True
            return _DONE
        w.decoded += 1
        w.reached = ft + frame_seconds(frame, self.vstream)
        put(self.q_out, frame, self.stop)
        return None

    def _restart(self, w: _Window) -> None:
        """The seek overshot: decode from the beginning instead."""
        w.held = None
        self.inp.seek(self.vstream.start_time or 0, stream=self.vstream, backward=True)
        w.packets, w.prev_t = 0, None
        self.bad_packets.clear()
        self.holes.clear()

    def _cut_short(self, w: _Window) -> str | None:
        """A cut file often demuxes without any error: the header's duration tells."""
        declared = declared_end(self.inp, self.vstream)
        if w.reached is None or declared is None:
            return None
        if min(declared, w.end) - w.reached > max(0.25, 3 * frame_seconds(None, self.vstream)):
            return (f"{self.src}: the video ends after frame {w.decoded} at {w.reached - w.origin:.2f} s "
                    f"but the file says it lasts {declared - w.origin:.2f} s: the file is truncated")
        return None

    def damage_line(self) -> str | None:
        """One line on what a damaged input lost in the middle, or None."""
        if not self.bad_packets and not self.holes:
            return None
        where = [f"no video from {a:.2f} s to {b:.2f} s" for a, b in self.holes]
        if self.bad_packets:
            times = ", ".join(f"{t:.2f}" for t in self.bad_packets[:3]) + (" ..." if len(self.bad_packets) > 3 else "")
            n = len(self.bad_packets)
            where.append(f"{n} undecodable packet{'s' if n > 1 else ''} at {times} s")
        n = max(self.missing, 1)
        return (f"{self.src}: the video is damaged, about {n} frame{'s are' if n > 1 else ' is'} missing "
                f"({'; '.join(where)})")
