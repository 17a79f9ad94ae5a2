"""The streaming engine on real encoded media, with the shipped model.

Inputs are made by PyAV in the tests (see conftest.make_video): a moving
grayscale texture in the pixel format, codec and container under test. The
engine must keep every frame and timestamp, copy audio and subtitles
untouched, keep the luma plane (bit for bit through a lossless codec) and tag
the output's colours.
"""

from __future__ import annotations

import fractions
import math
import pathlib

import av
import numpy as np
import pytest
import torch

from conftest import make_video, probe, vfr_pts
from vidcolor.io.engine import EncodeOptions, colorize_video
from vidcolor.errors import InvalidInput, OutputError, TruncatedInput, UnsupportedFormat

FFV1 = EncodeOptions(codec="ffv1")
X264_LOSSLESS = EncodeOptions(codec="libx264", crf=0)


def run(colorizer, src, dst, opts=FFV1):
    return colorize_video(src, dst, colorizer, opts, progress=False)


def leftovers(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


def gray_reference(path) -> list[np.ndarray]:
    """The gray level of every frame of an RGB-family input (R = G = B)."""
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24")[..., 1].astype(int) for f in c.decode(video=0)]


# --------------------------------------------------------------------------
# luma, frames and timestamps through a lossless codec
# --------------------------------------------------------------------------

LOSSLESS = [
    # id, make_video kwargs, container, output options, output pix_fmt
    ("yuv420p", dict(codec="ffv1", pix_fmt="yuv420p"), ".mkv", FFV1, "yuv420p"),
    ("yuv422p", dict(codec="ffv1", pix_fmt="yuv422p"), ".mkv", FFV1, "yuv420p"),
    ("yuv444p", dict(codec="ffv1", pix_fmt="yuv444p"), ".mkv", FFV1, "yuv420p"),
    ("gray", dict(codec="ffv1", pix_fmt="gray"), ".mkv", FFV1, "yuv420p"),
    ("gray10le", dict(codec="ffv1", pix_fmt="gray10le"), ".mkv", FFV1, "yuv420p10le"),
    ("gray16le", dict(codec="ffv1", pix_fmt="gray16le"), ".mkv", FFV1, "yuv420p16le"),
    ("yuv420p10le", dict(codec="ffv1", pix_fmt="yuv420p10le"), ".mkv", FFV1, "yuv420p10le"),
    ("odd-65x49", dict(codec="ffv1", pix_fmt="yuv420p", size=(65, 49)), ".mkv", FFV1, "yuv420p"),
    ("odd-yuv444p-33x17", dict(codec="ffv1", pix_fmt="yuv444p", size=(33, 17)), ".mkv", FFV1, "yuv420p"),
    ("mp4-x264-qp0", dict(codec="libx264", options={"qp": "0"}), ".mp4", X264_LOSSLESS, "yuv420p"),
    ("mov-mjpeg-yuvj420p", dict(codec="mjpeg", pix_fmt="yuvj420p"), ".mov", X264_LOSSLESS, "yuvj420p"),
    ("avi-ffv1", dict(codec="ffv1", pix_fmt="yuv420p"), ".avi", FFV1, "yuv420p"),
    ("mp4-x264-10bit-qp0", dict(codec="libx264", pix_fmt="yuv420p10le", options={"qp": "0"}), ".mkv", FFV1,
     "yuv420p10le"),
]


@pytest.mark.parametrize("kw,suffix,opts,out_fmt", [c[1:] for c in LOSSLESS], ids=[c[0] for c in LOSSLESS])
def test_luma_frames_and_timestamps_kept_exactly(colorizer, media, tmp_path, kw, suffix, opts, out_fmt):
    src = media(f"lossless-{kw['codec']}-{kw.get('pix_fmt', 'yuv420p')}-{kw.get('size', (64, 48))[0]}{suffix}", **kw)
    dst = tmp_path / f"out{suffix}"
    stats = run(colorizer, src, dst, opts)
    a, b = probe(src), probe(dst)
    assert stats.frames == len(a.pts) == len(b.pts) == 12
    assert b.pix_fmt == out_fmt
    assert (b.width, b.height) == (a.width, a.height)
    assert [float(t) for t in b.times] == pytest.approx([float(t) for t in a.times], abs=1e-9)
    assert b.average_rate == a.average_rate
    for i, (fa, fb) in enumerate(zip(a.planes, b.planes)):
        assert np.array_equal(fa[0], fb[0]), f"frame {i}: luma changed"
    assert leftovers(tmp_path) == []


RGB_LIKE = [
    ("bgr0-ffv1", dict(codec="ffv1", pix_fmt="bgr0"), ".mkv"),
    ("rgb24-x264rgb-qp0", dict(codec="libx264rgb", pix_fmt="rgb24", options={"qp": "0"}), ".mkv"),
    ("pal8-png-avi", dict(codec="png", pix_fmt="pal8"), ".avi"),
]


@pytest.mark.parametrize("kw,suffix", [c[1:] for c in RGB_LIKE], ids=[c[0] for c in RGB_LIKE])
def test_rgb_family_input_luma_is_the_gray_level(colorizer, media, tmp_path, kw, suffix):
    """R = G = B input: the full-range luma of the output is that gray level, to rounding."""
    src = media(f"rgb-{kw['codec']}-{kw['pix_fmt']}{suffix}", **kw)
    dst = tmp_path / "out.mkv"
    run(colorizer, src, dst)
    ref, b = gray_reference(src), probe(dst)
    assert len(b.planes) == len(ref) == 12
    assert b.pix_fmt == "yuv420p"
    assert b.stream["color_range"] == 2  # RGB is full range: no level squeezing
    for i, (g, fb) in enumerate(zip(ref, b.planes)):
        assert np.abs(fb[0].astype(int) - g).max() <= 1, f"frame {i}"


def test_lossy_output_keeps_luma_within_encoder_tolerance(colorizer, media, tmp_path):
    src = media("lossy-src.mkv", size=(160, 120), frames=12)
    dst = tmp_path / "out.mkv"
    run(colorizer, src, dst, EncodeOptions())  # libx264, crf 18
    a, b = probe(src), probe(dst)
    assert b.codec == "h264" and len(b.planes) == 12
    diff = np.stack([fa[0].astype(float) - fb[0].astype(float) for fa, fb in zip(a.planes, b.planes)])
    # The texture carries per-frame sensor noise, which is what crf 18 gives up first.
    psnr = 10 * np.log10(255**2 / np.mean(diff**2))
    assert psnr > 35
    assert abs(diff.mean()) < 0.5  # no level shift: the same luma, only coded


def test_ten_bit_input_gives_ten_bit_output_by_default(colorizer, media, tmp_path):
    src = media("ten-bit.mkv", pix_fmt="yuv420p10le")
    dst = tmp_path / "out.mkv"
    run(colorizer, src, dst, EncodeOptions())  # the default codec, libx264
    b = probe(dst)
    assert b.pix_fmt == "yuv420p10le"
    assert max(int(p[0].max()) for p in b.planes) > 255  # really 10-bit samples


def test_mpeg_ps_mpeg2video(colorizer, media, tmp_path):
    """MPEG-PS with MPEG-2 video and MP2 audio, written back with the container's own codec.

    MPEG-2 video only takes 1/frame-rate as time base, and this muxer adds a
    0.5 s preload: timestamps keep their spacing exactly, and their origin to
    within half a frame.
    """
    src = media("ps.mpg", codec="mpeg2video", rate=25, frames=15, audio="mp2")
    dst = tmp_path / "out.mpg"
    run(colorizer, src, dst, EncodeOptions(codec="mpeg2video"))
    a, b = probe(src), probe(dst)
    assert b.codec == "mpeg2video" and len(b.pts) == len(a.pts) == 15
    assert [p - b.pts[0] for p in b.pts] == [p - a.pts[0] for p in a.pts]
    assert abs(b.times[0] - a.times[0]) <= 0.5 / 25 + 1e-9
    diff = np.stack([np.abs(fa[0].astype(int) - fb[0].astype(int)) for fa, fb in zip(a.planes, b.planes)])
    assert diff.mean() < 3.0
    assert [x[2] for x in b.audio] == [x[2] for x in a.audio]


# --------------------------------------------------------------------------
# timing: variable frame rate, frame rate
# --------------------------------------------------------------------------


@pytest.mark.parametrize("suffix,make_codec,opts", [
    (".mkv", "ffv1", FFV1),
    (".mp4", "libx264", X264_LOSSLESS),
])
def test_variable_frame_rate_timestamps_kept(colorizer, media, tmp_path, suffix, make_codec, opts):
    src = media(f"vfr{suffix}", codec=make_codec, vfr=True, frames=14,
                options={"qp": "0"} if make_codec == "libx264" else None)
    a = probe(src)
    gaps = np.diff(a.times)
    assert gaps.max() - gaps.min() > 0.04, "the input is not VFR"
    assert a.times == pytest.approx([t / 1000 for t in vfr_pts(14)], abs=1e-3)
    dst = tmp_path / f"out{suffix}"
    run(colorizer, src, dst, opts)
    b = probe(dst)
    assert len(b.pts) == 14
    assert b.time_base == a.time_base
    assert b.pts == a.pts
    for fa, fb in zip(a.planes, b.planes):
        assert np.array_equal(fa[0], fb[0])


@pytest.mark.parametrize("suffix,rate", [(".mp4", fractions.Fraction(30000, 1001)), (".mkv", 25), (".mov", 24)])
def test_frame_rate_kept(colorizer, media, tmp_path, suffix, rate):
    src = media(f"rate-{rate}{suffix}".replace("/", "_"), codec="libx264", rate=rate, frames=10)
    dst = tmp_path / f"out{suffix}"
    run(colorizer, src, dst, EncodeOptions(codec="libx264"))
    a, b = probe(src), probe(dst)
    assert a.average_rate == rate
    assert b.average_rate == rate
    assert len(b.pts) == 10 and b.pts == a.pts


# --------------------------------------------------------------------------
# audio and subtitles copied without re-encoding
# --------------------------------------------------------------------------


@pytest.mark.parametrize("suffix,audio,codec,opts", [
    (".mkv", "aac", "ffv1", FFV1),
    (".mp4", "aac", "libx264", X264_LOSSLESS),
    (".mov", "pcm_s16le", "libx264", X264_LOSSLESS),
    (".mkv", "mp2", "ffv1", FFV1),
])
def test_audio_copied_bit_exact(colorizer, media, tmp_path, suffix, audio, codec, opts):
    src = media(f"audio-{audio}{suffix}", codec=codec, audio=audio, frames=12)
    dst = tmp_path / f"out{suffix}"
    run(colorizer, src, dst, opts)
    a, b = probe(src), probe(dst)
    assert len(a.audio) > 5
    assert [(pts, data) for pts, _, data in b.audio] == [(pts, data) for pts, _, data in a.audio]
    with av.open(str(src)) as ci, av.open(str(dst)) as co:
        ai, ao = ci.streams.audio[0], co.streams.audio[0]
        assert ao.codec_context.name == ai.codec_context.name
        assert (ao.codec_context.sample_rate, ao.codec_context.channels) == (ai.codec_context.sample_rate,
                                                                             ai.codec_context.channels)


@pytest.mark.parametrize("suffix,codec,opts", [(".mkv", "ffv1", FFV1), (".mp4", "libx264", EncodeOptions())])
def test_subtitles_copied(colorizer, media, tmp_path, suffix, codec, opts):
    src = media(f"subs{suffix}", codec=codec, subtitles=True, audio="aac")
    dst = tmp_path / f"out{suffix}"
    run(colorizer, src, dst, opts)
    a, b = probe(src), probe(dst)

    def texts(p):  # the MP4 muxer fills gaps between cues with empty samples of its own
        return [(pts, data) for pts, data in p.subtitles if data.strip(b"\0")]

    assert len(texts(a)) == 2
    assert texts(b) == texts(a)
    if suffix == ".mkv":
        assert b.subtitles == a.subtitles
    assert [x[2] for x in b.audio] == [x[2] for x in a.audio]


# --------------------------------------------------------------------------
# colour tags, aspect, rotation, metadata, chapters
# --------------------------------------------------------------------------


def test_sd_untagged_gets_bt601_limited(colorizer, media, tmp_path):
    src = media("sd-untagged.mkv")
    dst = tmp_path / "out.mkv"
    run(colorizer, src, dst)
    s = probe(dst).stream
    assert (s["color_primaries"], s["color_trc"], s["colorspace"]) == (6, 6, 6)  # SMPTE 170M
    assert s["color_range"] == 1


def test_hd_untagged_gets_bt709_and_luma_kept(colorizer, media, tmp_path):
    """720p with no tags is BT.709; writing it so must not convert the luma between matrices."""
    src = media("hd-untagged.mkv", size=(1280, 720), frames=2)
    dst = tmp_path / "out.mkv"
    run(colorizer, src, dst)
    a, b = probe(src), probe(dst)
    assert (b.stream["color_primaries"], b.stream["color_trc"], b.stream["colorspace"]) == (1, 1, 1)
    assert b.stream["color_range"] == 1
    for fa, fb in zip(a.planes, b.planes):
        assert np.array_equal(fa[0], fb[0])


def test_input_colour_tags_kept(colorizer, media, tmp_path):
    tags = dict(color_primaries=9, color_trc=14, colorspace=9, color_range=1)  # BT.2020, 10-bit transfer
    src = media("bt2020.mkv", color=tags)
    assert {k: probe(src).stream[k] for k in tags} == tags
    dst = tmp_path / "out.mkv"
    run(colorizer, src, dst)
    s = probe(dst).stream
    assert {k: s[k] for k in tags} == tags


def test_full_range_input_stays_full_range(colorizer, media, tmp_path):
    src = media("gray-full.mkv", pix_fmt="gray")
    dst = tmp_path / "out.mkv"
    run(colorizer, src, dst)
    assert probe(dst).stream["color_range"] == 2


def test_aspect_rotation_and_metadata_kept(colorizer, media, tmp_path):
    src = media("rotated.mp4", codec="libx264", rotation=90, sar=(4, 3),
                metadata={"title": "Night train", "comment": "test clip"})
    a = probe(src)
    assert a.rotation == 90 and a.stream["sample_aspect_ratio"] == fractions.Fraction(4, 3)
    dst = tmp_path / "out.mp4"
    run(colorizer, src, dst, EncodeOptions())
    b = probe(dst)
    assert b.rotation == 90
    assert b.stream["sample_aspect_ratio"] == fractions.Fraction(4, 3)
    assert b.container_metadata["title"] == "Night train"
    assert b.container_metadata["comment"] == "test clip"


def test_chapters_and_title_kept_in_matroska(colorizer, media, tmp_path):
    src = media("chapters.mkv", chapters=True, metadata={"title": "Reel 1"})
    a = probe(src)
    assert [c["metadata"]["title"] for c in a.chapters] == ["One", "Two"]
    dst = tmp_path / "out.mkv"
    run(colorizer, src, dst)
    b = probe(dst)
    assert b.container_metadata["title"] == "Reel 1"
    assert [(c["start"] * c["time_base"], c["end"] * c["time_base"], c["metadata"]) for c in b.chapters] == \
        [(c["start"] * c["time_base"], c["end"] * c["time_base"], c["metadata"]) for c in a.chapters]


def test_chapters_follow_the_window(colorizer, media, tmp_path):
    src = media("chapters.mkv", chapters=True, metadata={"title": "Reel 1"})
    dst = tmp_path / "out.mkv"
    run(colorizer, src, dst, EncodeOptions(codec="ffv1", start=0.125))
    b = probe(dst)
    spans = [float(c[k] * c["time_base"]) for c in b.chapters for k in ("start", "end")]
    assert spans == pytest.approx([0.0, 0.125, 0.125, 0.375])
    assert [c["metadata"]["title"] for c in b.chapters] == ["One", "Two"]


# --------------------------------------------------------------------------
# the model really colours
# --------------------------------------------------------------------------


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv420p10le"])
def test_output_has_colour(colorizer, media, tmp_path, pix_fmt):
    src = media(f"colour-{pix_fmt}.mkv", pix_fmt=pix_fmt, size=(160, 120), frames=4)
    a = probe(src)
    mid = 512 if pix_fmt.endswith("10le") else 128
    assert all((p[1] == mid).all() and (p[2] == mid).all() for p in a.planes)  # gray in
    dst = tmp_path / "out.mkv"
    run(colorizer, src, dst)
    for planes in probe(dst).planes:
        u, v = (planes[k].astype(int) - mid for k in (1, 2))
        assert np.abs(u).mean() + np.abs(v).mean() > 2 * mid / 128
        assert np.abs(u).max() > 8 * mid / 128 or np.abs(v).max() > 8 * mid / 128


# --------------------------------------------------------------------------
# --start / --duration
# --------------------------------------------------------------------------


@pytest.mark.parametrize("suffix,kw,opts,expect", [
    (".mkv", dict(frames=36, audio="aac"), EncodeOptions(codec="ffv1", start=0.5, duration=0.5), 12),
    (".mkv", dict(frames=36, audio="aac"), EncodeOptions(codec="ffv1", duration=0.25), 6),
    (".mkv", dict(frames=36, audio="aac"), EncodeOptions(codec="ffv1", start=1.0), 12),
    (".mp4", dict(codec="libx264", frames=36, audio="aac", gop=12), EncodeOptions(start=0.6, duration=0.5), 12),
    # MPEG-PS: no index to seek with, timestamps start near 0.5 s; --start counts from there.
    (".mpg", dict(codec="mpeg2video", rate=25, frames=30, audio="mp2"),
     EncodeOptions(codec="mpeg2video", start=0.4, duration=0.4), 10),
])
def test_start_and_duration(colorizer, media, tmp_path, suffix, kw, opts, expect):
    src = media(f"window-{kw.get('codec', 'ffv1')}{suffix}", **kw)
    dst = tmp_path / f"out{suffix}"
    stats = run(colorizer, src, dst, opts)
    a, b = probe(src), probe(dst)
    assert stats.frames == len(b.pts) == expect
    origin, rate = a.times[0], float(a.average_rate)
    first = math.ceil((opts.start or 0) * rate - 1e-6)  # index of the first frame in the window
    # The frames are the ones of the window, in order, with their luma (exact for ffv1).
    ref = a.planes[first: first + expect]
    if opts.codec == "ffv1":
        assert all(np.array_equal(fa[0], fb[0]) for fa, fb in zip(ref, b.planes))
    else:  # lossy: each frame is nearest to its own original (the texture moves 3 px a frame)
        for i, fb in enumerate(b.planes):
            dist = [np.abs(fa[0].astype(int) - fb[0]).mean() for fa in a.planes]
            assert int(np.argmin(dist)) == first + i
    # Timestamps restart at (about) the window's start.
    assert b.times[0] - (origin if suffix == ".mpg" else 0) == pytest.approx(0, abs=1 / rate)
    # Audio: a run of the input's own packets, covering the window.
    in_audio = [x[2] for x in a.audio]
    out_audio = [x[2] for x in b.audio]
    assert out_audio, "the window lost its audio"
    k = in_audio.index(out_audio[0])
    assert in_audio[k: k + len(out_audio)] == out_audio
    audio_seconds = len(out_audio) * (1024 if kw["audio"] == "aac" else 1152) / 48000
    assert audio_seconds == pytest.approx(expect / rate, abs=0.05)


# --------------------------------------------------------------------------
# truncated, broken and unsuitable inputs
# --------------------------------------------------------------------------


def test_truncated_matroska_keeps_the_decodable_frames_and_says_so(colorizer, media, tmp_path):
    """A cut Matroska file demuxes without error; its header's duration shows the cut.

    Decided behaviour: the frames that decode are colorized and written (the
    output is complete and playable), and TruncatedInput names the file and
    where decoding stopped (the CLI exits 1 with that message).
    """
    whole = media("whole.mkv", size=(160, 120), frames=30, audio="aac")
    cut = tmp_path / "cut.mkv"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    decodable = probe(cut)
    assert 0 < len(decodable.pts) < 30
    dst = tmp_path / "out.mkv"
    with pytest.raises(TruncatedInput) as err:
        run(colorizer, cut, dst)
    msg = str(err.value)
    assert str(cut) in msg and "truncated" in msg and f"after frame {len(decodable.pts)}" in msg
    assert str(dst) in msg
    b = probe(dst)
    assert b.pts == decodable.pts
    assert all(np.array_equal(fa[0], fb[0]) for fa, fb in zip(decodable.planes, b.planes))
    assert leftovers(tmp_path) == []


def test_truncated_mpegts_is_colorized_as_far_as_it_goes(colorizer, media, tmp_path):
    """MPEG-TS states no duration of its own (FFmpeg measures it from the packets), so a
    cut TS is indistinguishable from a shorter one: every decodable frame is written and
    the run succeeds. The frame the cut goes through decodes with concealed damage
    (differently from one decode to the next), so only the frames before it are compared."""
    whole = media("whole.ts", codec="libx264", size=(160, 120), frames=30, gop=6)
    cut = tmp_path / "cut.ts"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    decodable = probe(cut)
    assert 0 < len(decodable.pts) < 30
    dst = tmp_path / "out.mkv"
    stats = run(colorizer, cut, dst)
    b = probe(dst)
    assert stats.frames == len(b.pts) == len(decodable.pts)
    assert all(np.array_equal(fa[0], fb[0]) for fa, fb in zip(decodable.planes[:-1], b.planes))


def _audio_only(path):
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=48000)
        stream.layout = "stereo"
        from conftest import _write_audio

        _write_audio(out, stream, 0.3)
    return path


@pytest.mark.parametrize("case", ["missing", "text", "empty", "folder", "audio-only", "unknown-codec"])
def test_unusable_inputs_are_reported_with_the_file_name(colorizer, media, tmp_path, case):
    src = tmp_path / f"in-{case}.mkv"
    if case == "text":
        src.write_text("this is not a video\n")
    elif case == "empty":
        src.write_bytes(b"")
    elif case == "folder":
        src.mkdir()
    elif case == "audio-only":
        _audio_only(src)
    elif case == "unknown-codec":
        # A real MJPEG AVI whose FourCC is changed to one no decoder claims.
        mjpeg = media("mjpeg.avi", codec="mjpeg", pix_fmt="yuvj420p")
        src = tmp_path / "in-unknown-codec.avi"
        src.write_bytes(mjpeg.read_bytes().replace(b"MJPG", b"ZQ9X"))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    expected = UnsupportedFormat if case == "unknown-codec" else InvalidInput
    with pytest.raises(expected) as err:
        run(colorizer, src, out_dir / "out.mkv")
    assert str(src) in str(err.value)
    assert list(out_dir.iterdir()) == []


def test_nothing_left_behind_when_no_frame_is_in_the_window(colorizer, media, tmp_path):
    src = media("short.mkv", frames=6)
    with pytest.raises(InvalidInput, match="past the end of the video"):
        run(colorizer, src, tmp_path / "out.mkv", EncodeOptions(codec="ffv1", start=5.0))
    assert list(tmp_path.iterdir()) == []


def test_encoder_refusal_is_an_error_and_leaves_nothing(colorizer, media, tmp_path):
    """MPEG-2 video cannot store an odd frame rate (a VFR input's average): a clear error."""
    src = media("vfr.mp4", codec="libx264", vfr=True, frames=14, options={"qp": "0"})
    with pytest.raises(InvalidInput, match="mpeg2video cannot encode"):
        run(colorizer, src, tmp_path / "out.mpg", EncodeOptions(codec="mpeg2video"))
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_is_an_output_error(colorizer, media, tmp_path):
    src = media("short.mkv", frames=6)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(OutputError) as err:
        run(colorizer, src, blocker / "out.mkv")
    assert str(blocker / "out.mkv") in str(err.value)


def test_bad_options_fail_before_any_file_is_made(colorizer, media, tmp_path):
    src = media("short.mkv", frames=6)
    for opts in (dict(pix_fmt="rgb24"), dict(start=-1), dict(duration=0)):
        with pytest.raises(InvalidInput):  # the window when the options are made, the rest when the job starts
            run(colorizer, src, tmp_path / "out.mkv", EncodeOptions(**opts))
    with pytest.raises(InvalidInput, match="--codec no-such-codec"):
        run(colorizer, src, tmp_path / "out.mkv", EncodeOptions(codec="no-such-codec"))
    assert list(tmp_path.iterdir()) == []


def test_output_appears_only_when_complete(colorizer, media, tmp_path):
    """While the engine runs, only a hidden temporary name exists in the output folder."""
    import threading
    import time

    src = media("atomic.mkv", size=(160, 120), frames=24)
    dst = tmp_path / "out.mkv"
    snapshots: list[set[str]] = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            snapshots.append({p.name for p in tmp_path.iterdir()})
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        run(colorizer, src, dst)
    finally:
        done.set()
        watcher.join()
    partial = [any(n.startswith(".out.partial-") for n in snap) for snap in snapshots]
    final = ["out.mkv" in snap for snap in snapshots]
    assert any(partial), "no temporary file was seen"
    # The final name appears (by an atomic rename) only once the temporary one is gone.
    last_partial = max(i for i, p in enumerate(partial) if p)
    assert not any(final[: last_partial + 1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mkv"]


def test_atomic_output_renames_when_complete_and_removes_the_temporary_file_otherwise(tmp_path):
    """The one temp-and-rename of every writer (videos, stills, weights): whole or nothing."""
    from vidcolor.atomic import atomic_output, partial_path

    dst = tmp_path / "w.safetensors"
    with atomic_output(dst, fsync=True) as tmp:
        assert tmp == tmp_path / "w.safetensors.partial"
        tmp.write_bytes(b"new")
    assert dst.read_bytes() == b"new" and leftovers(tmp_path) == []
    for error in (OSError, KeyboardInterrupt):
        with pytest.raises(error), atomic_output(dst) as tmp:
            tmp.write_bytes(b"half")
            raise error
        assert dst.read_bytes() == b"new" and leftovers(tmp_path) == []
    clip = tmp_path / "clip.mkv"
    with pytest.raises(OutputError, match="another program created this file"):
        with atomic_output(clip, hidden=True, overwrite=False) as tmp:
            assert tmp == partial_path(clip)
            tmp.write_bytes(b"ours")
            clip.write_bytes(b"theirs")
    assert clip.read_bytes() == b"theirs" and leftovers(tmp_path) == []


# --------------------------------------------------------------------------
# a device that runs out of memory
# --------------------------------------------------------------------------


class _Tight(torch.nn.Module):
    """The real network behind a memory limit: more than ``most`` frames at once raise what
    CUDA raises when it runs out (no GPU here to fill; the network itself is untouched)."""

    def __init__(self, net: torch.nn.Module, most: int):
        super().__init__()
        self.net, self.most, self.calls = net, most, []

    def forward(self, l, *rest):
        self.calls.append(l.shape[0])
        if l.shape[0] > self.most:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {l.shape[0] * 512} MiB")
        return self.net(l, *rest)

    def decode(self, raw):
        return self.net.decode(raw)


def test_out_of_memory_retries_smaller_batches_and_keeps_every_frame(colorizer, media, tmp_path):
    src = media("oom.mkv", frames=12)
    run(colorizer.fresh(), src, tmp_path / "want.mkv")
    tight = colorizer.fresh()
    tight.model = _Tight(colorizer.model, most=3)
    run(tight, src, tmp_path / "got.mkv")
    want, got = probe(tmp_path / "want.mkv"), probe(tmp_path / "got.mkv")
    # every frame, the same luma, the same colour up to the network's batch-size rounding
    assert len(got.planes) == len(want.planes) == 12
    for a, b in zip(got.planes, want.planes):
        assert np.array_equal(a[0], b[0])
        assert all(np.abs(a[k].astype(int) - b[k]).max() <= 1 for k in (1, 2))
    # the first batch of 8 was retried as 4 (refused), then 2s; later batches go straight to 2
    assert tight.model.calls[:3] == [8, 4, 2] and tight.chunk == 2 and max(tight.model.calls[3:]) == 2


def test_out_of_memory_for_one_frame_is_a_one_line_error(colorizer):
    from vidcolor.errors import OutOfMemory

    tight = colorizer.fresh()
    tight.model = _Tight(colorizer.model, most=0)
    with pytest.raises(OutOfMemory) as e:
        tight.chroma(torch.rand(3, 1, 48, 64), (24, 32), "bt601")
    assert isinstance(e.value, MemoryError) and "\n" not in str(e.value) and "--device cpu" in str(e.value)


@pytest.mark.parametrize("suffix,hole", [(".mp4", False), (".mkv", True)])
def test_damage_in_the_middle_keeps_every_decodable_frame_and_is_reported(colorizer, tmp_path, suffix, hole):
    """4 KiB of garbage mid-file: decoding goes on past it as FFmpeg's does (MP4: one packet lost;
    Matroska: the demuxer skips half a second, video and audio). Every frame that decodes is
    written, and Stats.damage says where and how much was lost."""
    from conftest import damaged_reel, tolerant_decode

    src = damaged_reel(tmp_path, suffix)
    decodable = tolerant_decode(src)
    assert 80 <= len(decodable) < 96
    dst = tmp_path / f"out{suffix}"
    stats = run(colorizer, src, dst)
    b = probe(dst)
    assert stats.frames == len(b.pts) == len(decodable)
    assert b.times == pytest.approx(decodable)
    assert stats.damage and stats.damage.startswith(f"{src}: the video is damaged, about {96 - len(decodable)} frame")
    assert ("no video from 2.00 s to 2.50 s" in stats.damage) == hole
    assert ("undecodable packet" in stats.damage) != hole
    assert leftovers(tmp_path) == []


def test_an_undamaged_variable_frame_rate_video_reports_no_damage(colorizer, media, tmp_path):
    stats = run(colorizer, media("vfr.mkv", vfr=True, frames=14), tmp_path / "out.mkv")
    assert stats.frames == 14 and stats.damage is None


def test_a_non_finite_prediction_is_written_as_no_colour(media, tmp_path):
    """Weights that go NaN at run time (checked finite at load): the chroma written is neutral,
    inside the legal range, never the code 0 a NaN casts to (a solid green film)."""
    from vidcolor.colorizer import Colorizer

    poisoned = Colorizer()
    with torch.no_grad():
        for p in poisoned.model.parameters():
            p.fill_(float("nan"))
    src = media("short.mkv", frames=6)
    run(poisoned, src, tmp_path / "out.mkv")
    b = probe(tmp_path / "out.mkv")
    assert all(np.array_equal(f[k], np.full_like(f[k], 128)) for f in b.planes for k in (1, 2))


# --------------------------------------------------------------------------
# interlaced video
# --------------------------------------------------------------------------


def _interlaced(path, field_order: int) -> pathlib.Path:
    """Interlaced H.264 (coded as fields, the stream's field order set), as a broadcast capture."""
    from conftest import gray_frame

    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        vs.codec_context.flags |= av.codec.context.Flags.interlaced_dct
        vs.codec_context.field_order = field_order
        for i in range(6):
            frame = gray_frame(i, 64, 48, "yuv420p")
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    return path


def _field_info(path) -> tuple[int, list[bool]]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return s.codec_context.field_order, [f.interlaced_frame for f in c.decode(s)]


@pytest.mark.parametrize("codec", ["libx264", "ffv1"])
@pytest.mark.parametrize("order", [2, 3], ids=["top-first", "bottom-first"])
def test_interlaced_video_keeps_its_field_order_and_interlacing(colorizer, tmp_path, codec, order):
    src = _interlaced(tmp_path / "tape.mkv", order)
    assert _field_info(src) == (order, [True] * 6)
    dst = tmp_path / "out.mkv"
    stats = run(colorizer, src, dst, EncodeOptions(codec=codec))
    assert stats.frames == 6
    assert _field_info(dst) == (order, [True] * 6)  # was progressive (1) or unknown (0), frames progressive


def test_progressive_video_stays_progressive(colorizer, media, tmp_path):
    dst = tmp_path / "out.mkv"
    run(colorizer, media("progressive-x264.mkv", codec="libx264"), dst, EncodeOptions(codec="libx264"))
    order, flags = _field_info(dst)
    assert order in (0, 1) and not any(flags)
