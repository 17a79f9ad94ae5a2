"""One long film in parallel: cut at keyframes, colorize the parts, join them.

`plan_segments` reads the video packets' timestamps (no decoding) and places up
to N-1 cuts at keyframes, each half-way between the keyframe and the frame
before it, so every frame falls in exactly one segment whatever the GOP
structure: the engine decodes from the keyframe at or before each window and
keeps the frames whose presentation time is in it.

Each segment is colorized by the ordinary engine (`EncodeOptions.start` and
`duration` for the window, `timestamps_from` so its frames keep the whole
film's timestamps) into a file of the final container, and `join_segments`
remuxes their video packets in order, with the audio, subtitle and data
packets, metadata and chapters taken from the ORIGINAL input exactly as the
single-process run takes them. The joined file therefore has the same frames,
timestamps, audio and metadata as `colorize_video` on the whole film (bit for
bit in the pictures with a lossless codec and a deterministic model).

Temporal models and `--stabilize` carry state from frame to frame: each
segment after the first gets a warm-up overlap (`EncodeOptions.warmup`, the
`warmup_seconds` before its start), decoded and colorized but not written, so
the state at the join is close to the single run's (the stabilizer weighs
frames older than its 44-frame warm-up by under 1%).
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import itertools
import pathlib

import av

from vidcolor.atomic import atomic_output
from vidcolor.errors import InvalidInput, OutputError
from vidcolor.io.engine import EncodeOptions
from vidcolor.io.media import open_input, reason
from vidcolor.io.output import close_output, follow_video_stream, open_output, write_header


@dataclasses.dataclass(frozen=True)
class Segment:
    index: int
    #: window in seconds counted like --start (from the file's first timestamp);
    #: None: from the film's start / to its end.
    start: float | None
    end: float | None
    #: frames in the window according to the packets' timestamps.
    frames: int


def _video_timestamps(inp, vstream) -> tuple[list[int], list[int]]:
    """Presentation timestamps of every video packet (sorted) and of the keyframes."""
    pts, keys = [], []
    for packet in inp.demux(vstream):
        if packet.size == 0:  # the demuxer's end-of-stream marker
            continue
        if packet.pts is None:
            raise InvalidInput(f"{inp.name}: video packets without timestamps; this file cannot be cut "
                               "into segments, run it without --segments")
        pts.append(packet.pts)
        if packet.is_keyframe:
            keys.append(packet.pts)
    pts.sort()
    keys.sort()
    return pts, keys


def plan_segments(src, n: int, opts: EncodeOptions = EncodeOptions()) -> list[Segment]:
    """Up to ``n`` segments of about equal frame counts, cut just before keyframes.

    Fewer when the window holds fewer keyframes; one segment (the whole
    window) when it holds none after its first frame.
    """
    if n < 1:
        raise InvalidInput("--segments must be at least 1")
    lo, hi = opts.window
    inp = open_input(pathlib.Path(src))
    try:
        vstream = inp.streams.video[0]
        tb = vstream.time_base
        origin = inp.start_time / av.time_base if inp.start_time else 0.0
        try:
            all_pts, key_pts = _video_timestamps(inp, vstream)
        except av.FFmpegError as exc:
            raise InvalidInput(f"{src}: reading the packets failed ({reason(exc)}); "
                               "the file is truncated or corrupt") from None
    finally:
        inp.close()
    times = [float(p * tb) - origin for p in all_pts]  # the engine's clock (seconds after `origin`)
    first = bisect.bisect_left(times, lo - 1e-6)
    last = bisect.bisect_left(times, hi) if hi != float("inf") else len(times)
    count = last - first
    if count <= 0:
        raise InvalidInput(f"{src}: no video frame in the range asked for; check --start/--duration")
    # Keyframes strictly inside the window (not its first frame), by their rank among the frames.
    keyset = set(key_pts)
    ranks = [i for i in range(first + 1, last) if all_pts[i] in keyset and all_pts[i] != all_pts[i - 1]]
    cuts: list[int] = []
    for j in range(1, n):
        target = first + round(j * count / n)
        if not ranks:
            break
        k = min(ranks, key=lambda r: (abs(r - target), r))
        if (not cuts or k > cuts[-1]) and k not in cuts:
            cuts.append(k)
    bounds = [None if lo == 0 and opts.start is None else lo]
    # Half-way between the keyframe and the frame before it: far from both, whatever the rounding.
    bounds += [(times[k - 1] + times[k]) / 2 for k in cuts]
    bounds.append(None if hi == float("inf") else hi)
    edges = [first] + cuts + [last]
    return [Segment(i, bounds[i], bounds[i + 1], edges[i + 1] - edges[i]) for i in range(len(edges) - 1)]


def segment_options(opts: EncodeOptions, seg: Segment, warmup: float = 0.0) -> EncodeOptions:
    """The engine options that colorize one segment on the whole film's clock.

    ``warmup``: seconds before the segment processed and dropped, for stateful
    colorizers; the first segment needs none (the single run starts there too).
    """
    start = seg.start
    duration = None if seg.end is None else seg.end - (start or 0.0)
    warm = warmup if seg.index > 0 else 0.0
    return dataclasses.replace(opts, start=start, duration=duration, timestamps_from=opts.start or 0.0, warmup=warm)


def warmup_seconds(src, frames: int) -> float:
    """How long ``frames`` frames of ``src`` last (its average frame rate; 25 fps when it has none)."""
    inp = open_input(pathlib.Path(src))
    try:
        vstream = inp.streams.video[0]
        rate = vstream.average_rate or vstream.guessed_rate or 25
    finally:
        inp.close()
    return frames / float(rate)


def _copy_packets(inp, vstream, copies, lo: float, hi: float):
    """The non-video packets the engine copies for the window [lo, hi), in file order."""
    origin = inp.start_time / av.time_base if inp.start_time else 0.0
    start, end = lo + origin, hi + origin
    windowed = start > origin or end < float("inf")
    for packet in inp.demux():
        if packet.stream.index == vstream.index or packet.stream.index not in copies or packet.dts is None:
            continue
        if windowed and packet.pts is not None:
            t = float(packet.pts * packet.time_base)
            if t >= end or t < start:
                continue
        yield packet


def join_segments(src, parts: list, dst, opts: EncodeOptions = EncodeOptions()) -> int:
    """Join colorized segments of ``src`` into ``dst`` (atomically); returns the frame count."""
    src, dst = pathlib.Path(src), pathlib.Path(dst)
    parts = [pathlib.Path(p) for p in parts]
    inp = open_input(src)
    segs = []
    try:
        try:
            segs = [av.open(str(p)) for p in parts]
        except av.FFmpegError as exc:
            raise InvalidInput(f"{src}: a segment cannot be read ({reason(exc)}); run the batch again") from None
        rotation = _first_rotation(parts[0])
        with atomic_output(dst, hidden=True) as tmp:
            out = open_output(tmp, dst)
            ok = False
            try:
                frames = _mux_joined(out, inp, segs, rotation, src, dst, opts)
                ok = True
            finally:
                close_output(out, dst, ok)
    finally:
        for seg in segs:
            seg.close()
        inp.close()
    return frames


def _mux_joined(out, inp, segs, rotation: float | None, src: pathlib.Path, dst: pathlib.Path,
                opts: EncodeOptions) -> int:
    """The header as `VideoJob` writes it, then the segments' video packets interleaved with the input's
    copied packets by decode time (so the muxer never holds more than a few); returns the frame count."""
    vstream = inp.streams.video[0]
    lo, hi = opts.window
    zero = opts.start or 0.0

    def add_video(o):
        ostream = o.add_stream_from_template(segs[0].streams.video[0])
        follow_video_stream(ostream, vstream)
        # As the engine's add_stream(codec, rate=...): the container's frame rate.
        ostream.codec_context.framerate = vstream.average_rate or vstream.guessed_rate or 25
        if rotation:
            ostream.set_display_rotation(rotation)
        return ostream

    ostream, copies = write_header(out, inp, vstream, (lo, hi), src, dst, add_video)
    dts_plan = _decode_times(segs)
    if dts_plan is None:
        raise OutputError(f"{dst}: the segments' timestamps cannot be joined in order; "
                          "run this file without --segments")
    counter = itertools.count()

    def keyed(packets, is_video):
        for p in packets:
            t = p.dts if p.dts is not None else p.pts
            yield (float(t * p.time_base) if t is not None else float("-inf"), next(counter), is_video, p)

    frames = 0
    shift_cache: dict = {}
    try:
        merged = heapq.merge(keyed(_video_packets(segs, dts_plan), True),
                             keyed(_copy_packets(inp, vstream, copies, lo, hi), False))
        for _, _, is_video, packet in merged:
            if is_video:
                packet.stream = ostream
                frames += 1
            else:
                if zero:
                    tb = packet.time_base
                    shift = shift_cache.setdefault(tb, round(zero / tb))
                    packet.pts = packet.pts - shift if packet.pts is not None else None
                    packet.dts = packet.dts - shift if packet.dts is not None else None
                packet.stream = copies[packet.stream.index]
            out.mux(packet)
    except av.FFmpegError as exc:
        raise OutputError(f"{dst}: writing the joined output failed ({reason(exc)})") from None
    return frames


def _video_packets(segs, dts_plan: list):
    """The segments' video packets in order, on the joined decode times."""
    n = 0
    for seg in segs:
        seg.seek(0)
        for packet in seg.demux(seg.streams.video[0]):
            if packet.size == 0:
                continue
            packet.dts = dts_plan[n]
            # The engine's encoders hand the muxer packets without a duration (the
            # muxer derives it, e.g. Matroska's default duration); read back from a
            # segment they carry the demuxer's guess, so drop it again.
            packet.duration = 0
            n += 1
            yield packet


def _decode_times(segs) -> list | None:
    """Decode timestamps for the joined video packets, in order.

    The segments' own when they are present and increase across the joins (MP4,
    intra-only codecs). Matroska does not store them for B-frame codecs: then the
    encoders' rule is rebuilt over the whole film, each packet decoding at the
    presentation time ``d`` places earlier in sorted order, ``d`` the smallest
    delay that keeps every decode time at or before its presentation time.
    """
    pts, dts = [], []
    for seg in segs:
        for packet in seg.demux(seg.streams.video[0]):
            if packet.size == 0:
                continue
            if packet.pts is None:
                return None
            pts.append(packet.pts)
            dts.append(packet.dts)
    if all(d is not None for d in dts) and all(a < b for a, b in zip(dts, dts[1:])) \
            and all(d <= p for d, p in zip(dts, pts)):
        return dts
    order = sorted(pts)
    if any(a == b for a, b in zip(order, order[1:])):
        return None
    delay = 0
    while any(order[k - delay] > pts[k] for k in range(delay, len(pts))):
        delay += 1
        if delay > 16:  # H.264/HEVC reorder at most 16 frames
            return None
    return [order[k - delay] if k >= delay else order[0] - (delay - k) for k in range(len(pts))]


def _first_rotation(path) -> float | None:
    """The display rotation the engine wrote into a segment (read from its first frame)."""
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                return frame.rotation or None
    except av.FFmpegError:
        pass
    return None
