"""Shared fixtures: real media encoded by PyAV inside the tests, and the shipped model.

Nothing here mocks PyAV or torch. `make_video` writes a small encoded file with a
textured, moving grayscale picture in the pixel format, codec and container asked
for, optionally with audio, subtitles and irregular (VFR) timestamps; `probe`
decodes a file back into plain numbers and arrays the tests can compare.
"""

from __future__ import annotations

import dataclasses
import fractions
import hashlib
import pathlib
import signal

import av
import numpy as np
import pytest


# --------------------------------------------------------------------------
# pictures
# --------------------------------------------------------------------------


def texture(i: int, h: int, w: int) -> np.ndarray:
    """Frame ``i`` of a moving scene, as float luma in 0..1.

    A sky-to-ground gradient, rolling stripes, a moving disc and fine noise:
    enough structure for the model to colour, and every sample level used.
    """
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    sky = 0.85 - 0.5 * yy / max(h - 1, 1)
    stripes = 0.12 * np.sin((xx + 3 * i) / 3.0) * np.cos(yy / 5.0)
    cx, cy, r = (w * (0.2 + 0.03 * i)) % w, h * 0.6, max(3.0, min(h, w) / 5)
    disc = np.where((xx - cx) ** 2 + (yy - cy) ** 2 < r * r, -0.35, 0.0)
    rng = np.random.default_rng(i)
    noise = rng.normal(0, 0.03, (h, w))
    return np.clip(sky + stripes + disc + noise, 0.0, 1.0)


def _bits(fmt: av.VideoFormat) -> int:
    return 8 if fmt.name == "pal8" else max(c.bits for c in fmt.components)


def gray_frame(i: int, w: int, h: int, pix_fmt: str) -> av.VideoFrame:
    """A grayscale frame in ``pix_fmt``: neutral chroma, the texture in luma."""
    fmt = av.VideoFormat(pix_fmt)
    y = texture(i, h, w)
    if pix_fmt == "pal8":  # swscale cannot write pal8: indices plus a gray palette
        frame = av.VideoFrame(w, h, "pal8")
        _fill(frame.planes[0], (y * 255).round().astype(np.uint8), np.uint8)
        levels = np.arange(256, dtype=np.uint32)
        np.frombuffer(frame.planes[1], np.uint32)[:] = 0xFF000000 | (levels << 16) | (levels << 8) | levels
    elif pix_fmt.startswith(("gray", "yuv")):
        bits = _bits(fmt)
        peak = (1 << bits) - 1
        full = pix_fmt.startswith(("gray", "yuvj"))
        s = 1 << (bits - 8)
        luma = y * peak if full else 16 * s + y * 219 * s
        dtype = np.uint16 if bits > 8 else np.uint8
        frame = av.VideoFrame(w, h, pix_fmt)
        _fill(frame.planes[0], luma.round().astype(dtype), dtype)
        for plane in frame.planes[1:]:
            _fill(plane, np.full((plane.height, plane.width), 128 * s, dtype), dtype)
    else:  # RGB family: r = g = b
        rgb = np.repeat((y * 255).round().astype(np.uint8)[..., None], 3, axis=2)
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        if pix_fmt != "rgb24":
            frame = frame.reformat(format=pix_fmt)
    return frame


def _fill(plane, data: np.ndarray, dtype) -> None:
    item = np.dtype(dtype).itemsize
    view = np.frombuffer(plane, dtype).reshape(plane.height, plane.line_size // item)
    view[:, : plane.width] = data


# --------------------------------------------------------------------------
# writing media
# --------------------------------------------------------------------------


def make_video(path, *, codec: str = "ffv1", pix_fmt: str = "yuv420p", size=(64, 48), frames: int = 12,
               rate=24, audio: str | None = None, subtitles: bool = False, vfr: bool = False,
               options: dict | None = None, color: dict | None = None, sar=None, rotation: float | None = None,
               metadata: dict | None = None, chapters: bool = False, gop: int | None = None,
               container_options: dict | None = None) -> pathlib.Path:
    """Write ``frames`` frames of the moving texture and return the path.

    ``vfr`` gives the frames irregular timestamps (a 1/1000 time base and gaps of
    30..90 ms). ``audio`` is an encoder name (aac, mp2, pcm_s16le...); audio
    covers the video's duration. ``color`` sets codec-context colour tags.
    """
    path = pathlib.Path(path)
    w, h = size
    rate = fractions.Fraction(rate)
    with av.open(str(path), "w", options=container_options or {}) as out:
        if metadata:
            out.metadata.update(metadata)
        vs = out.add_stream(codec, rate=rate)
        vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
        if gop:
            vs.codec_context.gop_size = gop
        if options:
            vs.codec_context.options = dict(options)
        if sar:
            vs.codec_context.sample_aspect_ratio = fractions.Fraction(*sar) if isinstance(sar, tuple) else sar
        for key, value in (color or {}).items():
            setattr(vs.codec_context, key, value)
        tb = fractions.Fraction(1, 1000) if vfr else 1 / rate
        vs.codec_context.time_base = tb
        if rotation is not None:
            vs.set_display_rotation(rotation)
        aus = None
        if audio:
            aus = out.add_stream(audio, rate=48000)
            if audio == "pcm_s16le":
                aus.format = "s16"
            aus.layout = "stereo"
        ss = None
        if subtitles:  # subtitle encoders need a header; mux ready-made SRT packets instead
            ss = out.add_mux_stream("subrip" if path.suffix == ".mkv" else "mov_text")
            ss.time_base = fractions.Fraction(1, 1000)
        if chapters:
            out.set_chapters(CHAPTERS)
        pts = vfr_pts(frames) if vfr else list(range(frames))
        for i, t in enumerate(pts):
            frame = gray_frame(i, w, h, pix_fmt)
            frame.pts, frame.time_base = t, tb
            for key, value in (color or {}).items():
                if hasattr(frame, key):
                    setattr(frame, key, value)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        end = float((pts[-1] + (60 if vfr else 1)) * tb)
        if aus is not None:
            _write_audio(out, aus, end)
        if ss is not None:
            for k in range(2):
                text = f"line {k}".encode()
                if path.suffix != ".mkv":  # a mov_text sample: 16-bit length, then the text
                    text = len(text).to_bytes(2, "big") + text
                packet = av.Packet(text)
                packet.stream = ss
                packet.time_base = fractions.Fraction(1, 1000)
                packet.pts = packet.dts = int(k * end * 500)
                packet.duration = int(end * 400)
                out.mux(packet)
    return path


CHAPTERS = [
    {"id": 1, "start": 0, "end": 250, "time_base": fractions.Fraction(1, 1000), "metadata": {"title": "One"}},
    {"id": 2, "start": 250, "end": 500, "time_base": fractions.Fraction(1, 1000), "metadata": {"title": "Two"}},
]


def vfr_pts(n: int) -> list[int]:
    """Irregular millisecond timestamps: gaps cycle through 30, 90, 41, 67 ms."""
    gaps = [30, 90, 41, 67]
    pts, t = [], 0
    for i in range(n):
        pts.append(t)
        t += gaps[i % len(gaps)]
    return pts


def _write_audio(out, stream, seconds: float) -> None:
    ctx = stream.codec_context
    fmt = av.AudioFormat(ctx.format.name if ctx.format else "fltp")
    n = 1024
    total = int(seconds * 48000)
    t0 = 0
    while t0 < total:
        k = min(n, total - t0)
        tt = (np.arange(t0, t0 + k) / 48000.0)
        tone = 0.3 * np.sin(2 * np.pi * 440 * tt)
        if fmt.name == "s16":
            data = (np.stack([tone, tone]).T.reshape(1, -1) * 32767).astype(np.int16)
        elif fmt.is_planar:
            data = np.stack([tone, tone]).astype(np.float32 if fmt.name == "fltp" else np.int16)
            if fmt.name == "s16p":
                data = (data * 32767).astype(np.int16)
        else:
            data = np.stack([tone, tone]).T.reshape(1, -1).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(data, format=fmt.name, layout="stereo")
        frame.sample_rate = 48000
        frame.pts = t0
        frame.time_base = fractions.Fraction(1, 48000)
        out.mux(stream.encode(frame))
        t0 += k
    out.mux(stream.encode(None))


# --------------------------------------------------------------------------
# reading media back
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Probe:
    codec: str
    pix_fmt: str
    width: int
    height: int
    time_base: fractions.Fraction
    average_rate: fractions.Fraction | None
    pts: list[int]
    times: list[float]
    planes: list[list[np.ndarray]]  # per frame: Y, (U, V)
    stream: dict
    container_metadata: dict
    audio: list[tuple[int | None, int | None, bytes]]
    subtitles: list[tuple[int | None, bytes]]
    chapters: list
    rotation: float | None


def _plane_array(plane, bits: int) -> np.ndarray:
    if not plane.line_size:  # pal8's palette
        return np.frombuffer(plane, np.uint8).copy()
    dtype = np.uint16 if bits > 8 else np.uint8
    item = np.dtype(dtype).itemsize
    return np.frombuffer(plane, dtype).reshape(plane.height, plane.line_size // item)[:, : plane.width].copy()


def probe(path) -> Probe:
    """Decode every video frame (pts and planes) and read every audio/subtitle packet."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        ctx = vs.codec_context
        stream = {k: getattr(ctx, k) for k in ("color_primaries", "color_trc", "colorspace", "color_range")}
        stream["sample_aspect_ratio"] = vs.sample_aspect_ratio
        stream["metadata"] = dict(vs.metadata)
        pts, times, planes, rotation = [], [], [], None
        audio, subs = [], []
        fmt_name = None
        for packet in c.demux():
            if packet.stream.type == "audio":
                if packet.size:
                    audio.append((packet.pts, packet.dts, bytes(packet)))
                continue
            if packet.stream.type == "subtitle":
                if packet.size:
                    subs.append((packet.pts, bytes(packet)))
                continue
            if packet.stream.index != vs.index:
                continue
            for frame in packet.decode():
                fmt_name = frame.format.name
                rotation = frame.rotation
                bits = _bits(frame.format)
                pts.append(frame.pts)
                times.append(frame.time)
                planes.append([_plane_array(p, bits) for p in frame.planes])
                for k in ("color_primaries", "color_trc", "colorspace", "color_range"):
                    stream.setdefault("frame_" + k, getattr(frame, k))
        return Probe(ctx.name, fmt_name or ctx.format.name, ctx.width, ctx.height, vs.time_base, vs.average_rate,
                     pts, times, planes, stream, dict(c.metadata), audio, subs, c.chapters(),
                     rotation)


def sha256(path) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def colorizer():
    """The shipped model with default arguments, loaded once."""
    from vidcolor.colorizer import Colorizer

    return Colorizer()


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """Session cache of encoded inputs: ``media(name, **make_video_kwargs)``."""
    root = tmp_path_factory.mktemp("media")
    made: dict = {}

    def get(name: str, **kw) -> pathlib.Path:
        if name not in made:
            made[name] = make_video(root / name, **kw)
        return made[name]

    return get


def default_sigint() -> None:
    """A child's SIGINT as a terminal gives it (``preexec_fn``): a shell that runs the tests in
    the background starts them with SIGINT ignored, and children inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def damage_middle(src, dst, size: int = 4096) -> pathlib.Path:
    """A copy of ``src`` with ``size`` bytes of fixed random garbage in the middle (a damaged reel)."""
    data = bytearray(pathlib.Path(src).read_bytes())
    mid = len(data) // 2
    data[mid:mid + size] = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
    pathlib.Path(dst).write_bytes(bytes(data))
    return pathlib.Path(dst)


def tolerant_decode(path) -> list[float]:
    """The times of every frame that decodes, going on past damaged packets as FFmpeg does."""
    times = []
    with av.open(str(path)) as c:
        for packet in c.demux(video=0):
            try:
                times += [f.time for f in packet.decode()]
            except av.FFmpegError:
                continue
    return times


def damaged_reel(tmp_path, suffix: str) -> pathlib.Path:
    """96 frames (4 s at 24 fps) with 4 KiB of garbage in the middle; MP4 with its index first,
    Matroska with audio."""
    kw = dict(container_options={"movflags": "faststart"}) if suffix == ".mp4" else dict(audio="aac")
    whole = make_video(tmp_path / f"whole{suffix}", codec="ffv1", size=(160, 120), frames=96, rate=24, **kw)
    return damage_middle(whole, tmp_path / f"damaged{suffix}")


# --------------------------------------------------------------------------
# quick and full variants
# --------------------------------------------------------------------------


@pytest.hookimpl(trylast=True)  # after `-m`/`-k` have deselected what they will
def pytest_collection_modifyitems(config, items):
    """A test's ``[quick]`` variant is its ``[full]`` one made small for ``pytest -m "not slow"``:
    when the full one is selected too, the quick one proves nothing more and is left out."""
    selected = {item.nodeid for item in items}

    def full_twin(item) -> str | None:
        spec = getattr(item, "callspec", None)
        ids = spec.id.split("-") if spec else []
        if "quick" not in ids:
            return None
        return item.nodeid.rsplit("[", 1)[0] + "[" + "-".join("full" if p == "quick" else p for p in ids) + "]"

    dropped = [item for item in items if full_twin(item) in selected]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]
