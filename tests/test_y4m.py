"""The YUV4MPEG2 pipe (vidcolor/io/y4m.py): round trips in memory and through the real ffmpeg.

ffmpeg is Debian's binary (`apt-get install -y ffmpeg`; .ci/run installs it);
the tests that need it skip, saying so, where it cannot be found.
"""

from __future__ import annotations

import fractions
import io
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import make_video, probe, texture
from vidcolor.io.stages import QUEUE_FRAMES
from vidcolor.errors import InvalidInput, TruncatedInput, UnsupportedFormat
from vidcolor.runtime import Runtime
from vidcolor.io.y4m import colorize_y4m

W, H = 64, 48
FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="the ffmpeg binary is not installed "
                                  "(apt-get install -y ffmpeg; .ci/run installs it)")


class _Small:
    """The session's colorizer with a small batch, so a few frames make several batches."""

    def __init__(self, colorizer, batch=3):
        self._c, self.runtime = colorizer, Runtime(batch=batch)

    def chroma(self, *a, **kw):
        return self._c.chroma(*a, **kw)


@pytest.fixture(scope="module")
def small(colorizer):
    return _Small(colorizer)


# --------------------------------------------------------------------------
# writing and reading y4m in the test, independently of the module under test
# --------------------------------------------------------------------------

_LAYOUT = {  # C tag -> (bits, chroma subsampling or None for mono, alpha)
    None: (8, (2, 2), False), "420jpeg": (8, (2, 2), False), "420paldv": (8, (2, 2), False),
    "420mpeg2": (8, (2, 2), False), "420": (8, (2, 2), False), "411": (8, (4, 1), False),
    "422": (8, (2, 1), False), "444": (8, (1, 1), False), "444alpha": (8, (1, 1), True),
    "mono": (8, None, False), "mono10": (10, None, False), "mono16": (16, None, False),
    "420p10": (10, (2, 2), False), "422p12": (12, (2, 1), False), "444p16": (16, (1, 1), False),
    "420p9": (9, (2, 2), False),
}


def _planes_shape(tag, w=W, h=H):
    bits, ss, alpha = _LAYOUT[tag]
    shapes = [(h, w)]
    if ss:
        shapes += [(-(-h // ss[1]), -(-w // ss[0]))] * 2
    if alpha:
        shapes.append((h, w))
    return bits, shapes


def make_y4m(tag, frames=5, extra=("F25:1", "Ip", "A1:1"), full=False, w=W, h=H) -> bytes:
    bits, shapes = _planes_shape(tag, w, h)
    dt = np.dtype("<u2" if bits > 8 else "u1")
    s = 1 << (bits - 8)
    tokens = [f"W{w}", f"H{h}", *extra] + ([f"C{tag}"] if tag else [])
    out = [("YUV4MPEG2 " + " ".join(tokens) + "\n").encode()]
    for i in range(frames):
        y = texture(i, h, w)
        y = y * ((1 << bits) - 1) if (full or tag and tag.startswith("mono")) else 16 * s + y * 219 * s
        out.append(b"FRAME\n")
        out.append(y.round().astype(dt).tobytes())
        for shp in shapes[1:3] if len(shapes) > 1 else []:
            out.append(np.full(shp, 128 * s, dt).tobytes())
        if len(shapes) == 4:
            out.append(np.arange(h * w, dtype=np.uint32).astype(np.uint8).tobytes())
    return b"".join(out)


def _layout_of(tag):
    if tag in _LAYOUT:
        return _LAYOUT[tag]
    m = re.fullmatch(r"(420|422|444|mono)p?(\d+)", tag)
    ss = {"420": (2, 2), "422": (2, 1), "444": (1, 1), "mono": None}[m.group(1)]
    return int(m.group(2)), ss, False


def read_y4m(data: bytes):
    """(header tokens, [(frame line, [planes])]) of a y4m stream."""
    f = io.BytesIO(data)
    tokens = f.readline().decode().split()
    assert tokens[0] == "YUV4MPEG2"
    fields = {t[0]: t[1:] for t in tokens[1:]}
    w, h = int(fields["W"]), int(fields["H"])
    bits, ss, alpha = _layout_of(fields.get("C"))
    shapes = [(h, w)] + ([(-(-h // ss[1]), -(-w // ss[0]))] * 2 if ss else []) + ([(h, w)] if alpha else [])
    dt = np.dtype("<u2" if bits > 8 else "u1")
    frames = []
    while True:
        line = f.readline()
        if not line:
            break
        planes = []
        for shp in shapes:
            n = shp[0] * shp[1] * dt.itemsize
            planes.append(np.frombuffer(f.read(n), dt).reshape(shp))
        frames.append((line, planes))
    return tokens[1:], frames


def _run(data: bytes, colorizer) -> bytes:
    out = io.BytesIO()
    colorize_y4m(io.BytesIO(data), out, colorizer)
    return out.getvalue()


# --------------------------------------------------------------------------
# in memory
# --------------------------------------------------------------------------


@pytest.mark.parametrize("tag", [None, "420jpeg", "420paldv", "420mpeg2", "411", "422", "444", "444alpha",
                                 "420p10", "422p12", "444p16", "420p9"])
def test_round_trip_yuv(tag, small):
    src = make_y4m(tag)
    out = _run(src, small)
    tokens_in, frames_in = read_y4m(src)
    tokens_out, frames_out = read_y4m(out)
    assert tokens_out == tokens_in + ["XCOLORRANGE=LIMITED"]  # the range the new chroma is written for
    assert len(frames_out) == len(frames_in) == 5
    bits = _LAYOUT[tag][0]
    s = 1 << (bits - 8)
    moved = []
    for (line_i, p_in), (line_o, p_out) in zip(frames_in, frames_out):
        assert line_o == line_i == b"FRAME\n"
        np.testing.assert_array_equal(p_out[0], p_in[0])  # luma bit-exact
        if len(p_in) == 4:
            np.testing.assert_array_equal(p_out[3], p_in[3])  # alpha bit-exact
        for c in p_out[1:3]:
            assert c.shape == p_in[1].shape
            assert c.min() >= 16 * s and c.max() <= 240 * s  # limited range
            moved.append(np.abs(c.astype(np.int64) - 128 * s).mean() / s)
    assert np.mean(moved) > 0.5, "the chroma stayed neutral"


@pytest.mark.parametrize("tag,out_tag", [("mono", "420jpeg"), ("mono10", "420p10"), ("mono16", "420p16")])
def test_mono_becomes_420(tag, out_tag, small):
    src = make_y4m(tag, extra=("F24:1", "Ip", "A1:1", f"XYSCSS={tag.upper()}"))
    tokens, frames = read_y4m(_run(src, small))
    assert f"C{out_tag}" in tokens and f"XYSCSS={out_tag.upper()}" in tokens
    assert "XCOLORRANGE=FULL" in tokens  # mono is full range; the 4:2:0 output says so
    _, frames_in = read_y4m(src)
    assert len(frames) == 5
    for (_, p_in), (_, p_out) in zip(frames_in, frames):
        np.testing.assert_array_equal(p_out[0], p_in[0])
        assert p_out[1].shape == (H // 2, W // 2)


def test_header_tags_carried(small):
    extra = ("F30000:1001", "It", "A4:3", "XCOLORRANGE=FULL", "XVENDOR=test", "XLENGTH=5")
    src = make_y4m("422", extra=extra, full=True)
    tokens, frames = read_y4m(_run(src, small))
    assert tokens == [f"W{W}", f"H{H}", *extra, "C422"]
    # full range: chroma may use the whole 0..255 scale around 128
    assert len(frames) == 5


def test_frame_parameters_carried(small):
    src = make_y4m("420jpeg", frames=2).replace(b"FRAME\n", b"FRAME Ixyz\n")
    _, frames = read_y4m(_run(src, small))
    assert [line for line, _ in frames] == [b"FRAME Ixyz\n"] * 2


def test_odd_size(small):
    src = make_y4m("420jpeg", frames=2, w=33, h=17)
    tokens, frames = read_y4m(_run(src, small))
    assert frames[0][1][1].shape == (9, 17)


def test_same_output_whatever_the_batch(colorizer):
    src = make_y4m("420jpeg", frames=7)
    assert _run(src, _Small(colorizer, 2)) == _run(src, _Small(colorizer, 7))


class _Watched(io.RawIOBase):
    """Input that records how far reading ran ahead of writing."""

    def __init__(self, data: bytes, out: io.BytesIO, frame_bytes: int):
        self.data, self.pos, self.out, self.frame_bytes, self.ahead = data, 0, out, frame_bytes, 0

    def readable(self):
        return True

    def readinto(self, b):
        n = min(len(b), len(self.data) - self.pos)
        b[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        self.ahead = max(self.ahead, self.pos - len(self.out.getvalue()))
        return n


def test_streaming_constant_memory(small):
    n = 80
    src = make_y4m("420jpeg", frames=n)
    frame_bytes = len(b"FRAME\n") + W * H * 3 // 2
    out = io.BytesIO()
    watched = _Watched(src, out, frame_bytes)
    assert colorize_y4m(io.BufferedReader(watched, buffer_size=4096), out, small) == n
    # never more than the stages' queues hold (as in file mode), one frame and a read buffer ahead of the
    # output, whatever the stream's length
    held = (2 * QUEUE_FRAMES + 2) * small.runtime.batch + 1
    assert watched.ahead < held * frame_bytes + 4096 and held < n
    assert out.getvalue().count(b"FRAME") == n


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"RIFF\x00\x00\x00\x00WAVEfmt ", b"\x1aE\xdf\xa3" + bytes(100),
                                  b"YUV4MPEG2 W64 C420\n", b"YUV4MPEG2 W0 H10\n"])
def test_not_y4m(data, small):
    with pytest.raises(InvalidInput) as err:
        _run(data, small)
    assert "yuv4mpeg" in str(err.value).lower() or "y4m" in str(err.value)


def test_unsupported_colour_space(small):
    with pytest.raises(UnsupportedFormat, match="C420p8x"):
        _run(b"YUV4MPEG2 W8 H8 C420p8x\nFRAME\n" + bytes(96), small)


def test_truncated_stream_keeps_complete_frames(small):
    src = make_y4m("420jpeg", frames=4)
    out = io.BytesIO()
    with pytest.raises(TruncatedInput, match="the 3 frames before it were written"):
        colorize_y4m(io.BytesIO(src[:-100]), out, small)
    _, frames = read_y4m(out.getvalue())
    assert len(frames) == 3


def test_garbage_between_frames(small):
    src = make_y4m("420jpeg", frames=2)
    header_end = src.index(b"\n") + 1
    frame = len(b"FRAME\n") + W * H * 3 // 2
    bad = src[:header_end + frame] + b"JUNK\n" + src[header_end + frame + 6:]
    with pytest.raises(InvalidInput, match="FRAME"):
        _run(bad, small)


# --------------------------------------------------------------------------
# the real ffmpeg, both directions
# --------------------------------------------------------------------------


def _ffmpeg_to_y4m(path, *args) -> bytes:
    return subprocess.run([FFMPEG, "-v", "error", "-i", str(path), *args, "-f", "yuv4mpegpipe", "-strict", "-1", "-"],
                          capture_output=True, check=True).stdout


@needs_ffmpeg
@pytest.mark.parametrize("pix_fmt,in_tag,out_tag", [("yuv420p", "C420jpeg", "C420jpeg"),
                                                    ("yuv422p10le", "C422p10", "C422p10"),
                                                    ("gray", "Cmono", "C420jpeg")])
def test_ffmpeg_both_directions(tmp_path, pix_fmt, in_tag, out_tag, small):
    src = make_video(tmp_path / "in.mkv", codec="ffv1", pix_fmt=pix_fmt, size=(W, H), frames=6, rate=25)
    stream = _ffmpeg_to_y4m(src, "-vf", "setfield=tff,setsar=4/3")  # ffmpeg writes the y4m ...
    assert in_tag.encode() in stream.split(b"\n", 1)[0]
    out = _run(stream, small)  # ... vidcolor colours it ...
    header = out.split(b"\n", 1)[0].decode().split()
    assert out_tag in header and "F25:1" in header and "It" in header and "A4:3" in header
    dst = tmp_path / "out.mkv"  # ... and ffmpeg reads ours
    subprocess.run([FFMPEG, "-v", "error", "-f", "yuv4mpegpipe", "-i", "-", "-c:v", "ffv1", "-y", str(dst)],
                   input=out, check=True)
    a, b = probe(src), probe(dst)
    assert len(b.planes) == len(a.planes) == 6
    assert (b.width, b.height) == (W, H)
    assert b.stream["sample_aspect_ratio"] == fractions.Fraction(4, 3)
    for pa, pb in zip(a.planes, b.planes):
        np.testing.assert_array_equal(pb[0], pa[0])  # luma through ffmpeg -> vidcolor -> ffmpeg, exact
    bits = 10 if "10" in pix_fmt else 8
    mid = 128 << (bits - 8)
    chroma = np.stack([p[1] for p in b.planes] + [p[2] for p in b.planes]).astype(np.int64)
    assert np.abs(chroma - mid).mean() / (1 << (bits - 8)) > 0.5
    if pix_fmt == "gray":
        assert b.stream["color_range"] == 2 or b.stream["frame_color_range"] == 2  # full, as the input


@needs_ffmpeg
def test_ffmpeg_pipeline_in_processes(tmp_path):
    """ffmpeg | python (colorize_y4m on stdin/stdout) | ffmpeg, as an editor's external filter runs it."""
    src = make_video(tmp_path / "in.mp4", codec="libx264", pix_fmt="yuv420p", size=(W, H), frames=8, rate=24)
    dst = tmp_path / "out.mkv"
    code = ("import sys; from vidcolor.colorizer import Colorizer; from vidcolor.io.y4m import colorize_y4m; "
            "colorize_y4m(sys.stdin.buffer, sys.stdout.buffer, Colorizer())")
    p1 = subprocess.Popen([FFMPEG, "-v", "error", "-i", str(src), "-f", "yuv4mpegpipe", "-"], stdout=subprocess.PIPE)
    p2 = subprocess.Popen([sys.executable, "-c", code], stdin=p1.stdout, stdout=subprocess.PIPE)
    p1.stdout.close()
    p3 = subprocess.run([FFMPEG, "-v", "error", "-f", "yuv4mpegpipe", "-i", "-", "-c:v", "ffv1", "-y", str(dst)],
                        stdin=p2.stdout)
    p2.stdout.close()
    assert p1.wait() == 0 and p2.wait() == 0 and p3.returncode == 0
    a, b = probe(src), probe(dst)
    assert len(b.planes) == 8 and b.average_rate == 24
    for pa, pb in zip(a.planes, b.planes):
        np.testing.assert_array_equal(pb[0], pa[0])


def _cli_has_y4m() -> bool:
    from vidcolor import cli

    return "colorize_y4m" in open(cli.__file__).read()


@needs_ffmpeg
@pytest.mark.skipif(not _cli_has_y4m(), reason="`vidcolor - -o -` is not wired to vidcolor.io.y4m in cli.py yet")
def test_cli_pipe(tmp_path):
    src = make_video(tmp_path / "in.mp4", codec="libx264", pix_fmt="yuv420p", size=(W, H), frames=5, rate=24)
    stream = _ffmpeg_to_y4m(src)
    out = subprocess.run([sys.executable, "-m", "vidcolor", "-", "-o", "-"], input=stream, capture_output=True)
    assert out.returncode == 0, out.stderr.decode()
    tokens_in, frames_in = read_y4m(stream)
    tokens, frames = read_y4m(out.stdout)
    # the same header, with the range said (FFmpeg left it unsaid: limited, as y4m readers assume)
    assert len(frames) == 5 and [t for t in tokens if not t.startswith("XCOLORRANGE=")] == tokens_in
    assert "XCOLORRANGE=LIMITED" in tokens
    for (_, pi), (_, po) in zip(frames_in, frames):
        np.testing.assert_array_equal(po[0], pi[0])
    bad = subprocess.run([sys.executable, "-m", "vidcolor", "-", "-o", "-"], input=b"not a video", capture_output=True)
    assert bad.returncode != 0 and not bad.stdout and b"YUV4MPEG2" in bad.stderr


@pytest.mark.parametrize("size", ["W1000000000000000 H1000000000000000", "W100000 H100000"])
def test_a_header_claiming_a_huge_frame_is_one_line_before_any_memory(size, tmp_path):
    """The header alone chose the memory (1e30 bytes a frame: OverflowError / MemoryError tracebacks)."""
    data = f"YUV4MPEG2 {size} F25:1 C420jpeg\nFRAME\n".encode() + b"\x80" * 4096
    r = subprocess.run([sys.executable, "-m", "vidcolor", "-", "-o", "-", "--device", "cpu", "--quiet"],
                       input=data, capture_output=True, cwd=tmp_path)
    err = r.stderr.decode()
    assert r.returncode == 1 and r.stdout == b"", err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vidcolor: error: the y4m stream: its frames are "), err
    assert "VIDCOLOR_MAX_PIXELS=" in lines[0]
