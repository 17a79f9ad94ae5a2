"""What a media file is: the one set of file extensions, opening an input, and what its header says.

Every part of vidcolor that looks for videos or images (the CLI, `vidcolor batch`,
training, stills) asks `is_video`/`is_image` here, so they agree on what a video is.
Lengths come from the header where it states them, else from the packets' timestamps
(demuxed, not decoded): bare elementary streams have no container clock.
"""

from __future__ import annotations

import pathlib

import av

from vidcolor.errors import InvalidInput, UnsupportedFormat

#: still images (OpenCV reads them; `vidcolor INPUT` writes a still for these).
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pgm", ".ppm"})
#: videos (FFmpeg reads them; `vidcolor batch` searches folders for these).
VIDEO_EXTS = frozenset({
    ".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm", ".mpg", ".mpeg", ".m2v", ".ts", ".m2ts", ".mts", ".mxf",
    ".wmv", ".flv", ".ogv", ".dv", ".vob", ".3gp", ".nut", ".y4m",
})

#: Demuxers of bare elementary streams: no container clock, so the duration FFmpeg reports is the
#: file size over the bit rate in the stream header, a guess (an MPEG-1 stream flagged VBR, like
#: visp's cube.mpeg, "lasts" 0.04 s of its 3.2).
_ESTIMATED_DURATION_FORMATS = {"mpegvideo", "m4v", "h261", "h263", "h264", "hevc", "vvc", "cavsvideo", "dirac",
                               "avs2", "avs3", "mjpeg"}


def is_image(path: str | pathlib.Path) -> bool:
    return pathlib.Path(path).suffix.lower() in IMAGE_EXTS


def is_video(path: str | pathlib.Path) -> bool:
    return pathlib.Path(path).suffix.lower() in VIDEO_EXTS


def reason(exc: Exception) -> str:
    """FFmpeg's (or the OS's) short reason for an error, for one line naming the file."""
    return getattr(exc, "strerror", None) or str(exc).split(":")[-1].strip() or exc.__class__.__name__


def open_input(path: pathlib.Path) -> av.container.InputContainer:
    """The input opened by PyAV, or one line on why it cannot be colorized."""
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
        raise InvalidInput(f"{path}: not a video FFmpeg can read ({reason(exc)}); "
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


def frame_seconds(frame, vstream) -> float:
    """How long ``frame`` lasts (None: a frame at the stream's nominal rate; 25 fps when it has none)."""
    if frame is not None and frame.duration and frame.time_base:
        return float(frame.duration * frame.time_base)
    rate = vstream.average_rate or vstream.guessed_rate
    return 1 / float(rate) if rate else 0.04


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


def declared_end(inp, vstream) -> float | None:
    """When the header says the video stream ends, in seconds; None if it does not say."""
    seconds = _track_seconds(vstream)
    if seconds is not None:
        return float((vstream.start_time or 0) * vstream.time_base) + seconds
    if inp.duration and len(inp.streams) == 1 and not duration_is_guessed(inp):
        return ((inp.start_time or 0) + inp.duration) / av.time_base
    return None


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


def expected_seconds(vstream, inp, start: float, end: float, src: pathlib.Path | None = None) -> float | None:
    """Seconds of video a job will colorize, for the progress bar; None when the file does not say."""
    seconds = video_seconds(inp, vstream)
    if seconds is None and src is not None and duration_is_guessed(inp):
        seconds = scanned_seconds(src)  # a bare stream: one pass over its packets, for the progress bar's ETA
    if not seconds:
        return None
    return max(0.0, min(seconds, end) - start) or None
