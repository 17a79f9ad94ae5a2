"""What the `vidcolor` command says and chooses for the user: pixel formats editing codecs take,
the y4m pipe's colour tags, the start line, --keep-colour, labelled previews and video tools'
conventions (-y, HH:MM:SS times, quiet encoders, batch progress)."""

from __future__ import annotations

import re

import pytest

from conftest import make_video, probe
from vidcolor.cli import main


def vidcolor(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def lines(err: str) -> list[str]:
    """The lines left on a terminal: progress bars are redrawn with carriage returns and cleared."""
    return [x for x in err.replace("\r", "\n").splitlines() if x.strip() and "|" not in x]


# --------------------------------------------------------------------------
# 2. editing codecs and odd sizes get a pixel format that fits
# --------------------------------------------------------------------------


def test_prores_and_odd_sizes_get_a_pixel_format_that_fits(capsys, tmp_path):
    src = make_video(tmp_path / "in.mkv", size=(64, 48), frames=3)
    rc, _, err = vidcolor(capsys, src, "-o", tmp_path / "edit.mov", "--codec", "prores_ks")
    assert rc == 0, err
    assert probe(tmp_path / "edit.mov").pix_fmt == "yuv422p10le"
    said = [x for x in lines(err) if "yuv422p10le" in x]
    assert len(said) == 1 and "prores_ks" in said[0] and "--pix-fmt" in said[0], err

    odd = make_video(tmp_path / "odd.mkv", size=(63, 47), frames=3)
    rc, _, err = vidcolor(capsys, odd, "-o", tmp_path / "odd.mp4", "--quiet", "--crf", 0)
    assert rc == 0, err
    p = probe(tmp_path / "odd.mp4")
    assert (p.pix_fmt, p.width, p.height) == ("yuv444p", 63, 47)
    assert err == ""  # --quiet: not even the pixel format's line
    src_luma = probe(odd).planes
    assert all((a[0] == b[0]).all() for a, b in zip(src_luma, p.planes))  # luma kept exactly

    # an explicit --pix-fmt that does not fit: one line naming the fix, nothing written
    rc, _, err = vidcolor(capsys, odd, "-o", tmp_path / "bad.mp4", "--pix-fmt", "yuv420p")
    assert rc == 1 and len(lines(err)) == 1, err
    assert "odd.mkv" in err and "63x47" in err and "leave --pix-fmt out" in err
    rc, _, err = vidcolor(capsys, src, "-o", tmp_path / "bad.mov", "--codec", "prores_ks", "--pix-fmt", "yuv420p")
    assert rc == 1 and len(lines(err)) == 1 and "yuv422p10le" in err, err
    assert sorted(f.name for f in tmp_path.iterdir()) == ["edit.mov", "in.mkv", "odd.mkv", "odd.mp4"]


# --------------------------------------------------------------------------
# 3. the y4m pipe: file mode's threaded stages, and the range tag FFmpeg reads
# --------------------------------------------------------------------------


def _y4m_by_pyav(src, color_range=0) -> bytes:
    """The y4m stream FFmpeg's own muxer writes for ``src`` (untagged range by default)."""
    import io

    import av

    buf = io.BytesIO()
    with av.open(str(src)) as i, av.open(buf, "w", format="yuv4mpegpipe") as o:
        v = i.streams.video[0]
        s = o.add_stream("wrapped_avframe", rate=v.average_rate)
        s.width, s.height, s.pix_fmt = v.width, v.height, "yuv420p"
        s.codec_context.color_range = color_range
        for f in i.decode(v):
            f.color_range = color_range
            o.mux(s.encode(f))
        o.mux(s.encode(None))
    return buf.getvalue()


class _Pipe:
    """A pipe's read end that records how far reading ran ahead of the output."""

    def __init__(self, data: bytes, out):
        import io

        self.f, self.out, self.ahead = io.BytesIO(data), out, 0

    def _seen(self, got: bytes) -> bytes:
        self.ahead = max(self.ahead, self.f.tell() - len(self.out.getvalue()))
        return got

    def readline(self, limit=-1):
        return self._seen(self.f.readline(limit))

    def read(self, n=-1):
        return self._seen(self.f.read(n))


@pytest.mark.parametrize("color_range", [0, 2], ids=["untagged", "full"])
def test_y4m_pipe_overlaps_reading_with_the_model_and_tags_its_range(colorizer, tmp_path, color_range):
    import io

    import av

    from vidcolor.runtime import Runtime
    from vidcolor.io.y4m import colorize_y4m

    class Batch2:  # the session's model, two frames per call
        runtime = Runtime(batch=2)

        def chroma(self, *a, **kw):
            return colorizer.chroma(*a, **kw)

    n = 16
    data = _y4m_by_pyav(make_video(tmp_path / "in.mkv", frames=n), color_range)
    assert b"XCOLORRANGE" in data.split(b"\n")[0] if color_range else b"XCOLORRANGE" not in data.split(b"\n")[0]
    out = io.BytesIO()
    pipe = _Pipe(data, out)
    assert colorize_y4m(pipe, out, Batch2()) == n
    frame_bytes = len(b"FRAME\n") + 64 * 48 * 3 // 2
    # the reader thread runs ahead of the writer by more than the one batch a serial loop holds
    assert pipe.ahead > 3 * frame_bytes
    header = out.getvalue().split(b"\n")[0].split()
    assert header.count(b"XCOLORRANGE=" + (b"FULL" if color_range == 2 else b"LIMITED")) == 1
    with av.open(io.BytesIO(out.getvalue()), format="yuv4mpegpipe") as c:  # FFmpeg's demuxer reads it
        frames = list(c.decode(video=0))
        assert len(frames) == n and frames[0].color_range == (2 if color_range == 2 else 1)


# --------------------------------------------------------------------------
# 4. what ran, and an input that already has colour
# --------------------------------------------------------------------------


def colour_video(path, frames: int = 4, size=(64, 48)):
    """A lossless (FFV1) clip with colour of its own: a red-to-blue sweep over the texture."""
    import av
    import numpy as np

    from conftest import texture

    w, h = size
    with av.open(str(path), "w") as out:
        s = out.add_stream("ffv1", rate=24)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            y = texture(i, h, w)
            ramp = np.linspace(0, 1, w)[None, :]
            rgb = np.stack([y * (1 - ramp) + 0.3 * ramp, y * 0.6, y * ramp + 0.3 * (1 - ramp)], axis=2)
            frame = av.VideoFrame.from_ndarray((rgb * 255).round().astype(np.uint8), format="rgb24")
            out.mux(s.encode(frame.reformat(format="yuv420p")))
        out.mux(s.encode(None))
    return path


def test_start_line_colour_warning_and_keep_colour(capsys, tmp_path):
    import numpy as np

    src = colour_video(tmp_path / "colour.mkv")
    rc, _, err = vidcolor(capsys, src, "-o", tmp_path / "out.mkv", "--codec", "ffv1")
    assert rc == 0, err
    said = lines(err)
    start = [x for x in said if x.startswith("vidcolor: model ")]
    assert len(start) == 1 and ".safetensors" in start[0] and "device cpu" in start[0] and "float32" in start[0]
    warned = [x for x in said if "already has colour" in x]
    assert len(warned) == 1 and "colour.mkv" in warned[0] and "--keep-colour" in warned[0], err
    a, b = probe(src), probe(tmp_path / "out.mkv")
    assert any(not np.array_equal(fa[1], fb[1]) for fa, fb in zip(a.planes, b.planes))  # replaced

    rc, _, err = vidcolor(capsys, src, "-o", tmp_path / "kept.mkv", "--codec", "ffv1", "--keep-colour", "--quiet")
    assert rc == 0 and err == "", err
    k = probe(tmp_path / "kept.mkv")
    assert all(all(np.array_equal(p, q) for p, q in zip(fa, fk)) for fa, fk in zip(a.planes, k.planes))

    gray = make_video(tmp_path / "gray.mkv", frames=3)
    rc, _, err = vidcolor(capsys, gray, "-o", tmp_path / "gray-out.mkv", "--codec", "ffv1")
    assert rc == 0 and "already has colour" not in err and "vidcolor: model " in err


# --------------------------------------------------------------------------
# 5. labelled previews and --compare
# --------------------------------------------------------------------------


def test_preview_is_labelled_and_compare_adds_the_colour_original(capsys, tmp_path):
    import cv2
    import numpy as np

    src = colour_video(tmp_path / "colour.mkv", frames=6)
    rc, _, err = vidcolor(capsys, src, "-o", tmp_path / "cmp.png", "--compare", "--preview", 2)
    assert rc == 0, err
    sheet = cv2.imread(str(tmp_path / "cmp.png"))
    tile_h = sheet.shape[0] // 2
    assert sheet.shape[1] == 3 * 480 and sheet.shape[0] == 2 * tile_h
    for row in range(2):
        for col in range(3):
            tile = sheet[row * tile_h:(row + 1) * tile_h, col * 480:(col + 1) * 480]
            box = tile[:12, :60]
            assert (tile[1, 1] == 0).all() and (box == 255).all(axis=2).any()  # white text on a black box
    original = sheet[:tile_h, 960:].astype(int)
    assert np.abs(original[..., 2] - original[..., 0]).mean() > 10  # the input's own colour
    gray = sheet[:tile_h, :480].astype(int)
    assert np.abs(gray[40:, :, 2] - gray[40:, :, 0]).max() <= 1

    plain = make_video(tmp_path / "gray.mkv", frames=6)
    rc, _, err = vidcolor(capsys, plain, "-o", tmp_path / "plain.png", "--compare", "--preview", 2)
    assert rc == 0, err
    assert cv2.imread(str(tmp_path / "plain.png")).shape[1] == 2 * 480  # no original column for gray input


# --------------------------------------------------------------------------
# 6. video tools' conventions
# --------------------------------------------------------------------------


def test_y_clock_times_and_quiet_x265(capfd, tmp_path):
    src = make_video(tmp_path / "in.mkv", frames=24, rate=24)

    def run(*args):
        rc = main([str(a) for a in args])
        return rc, capfd.readouterr().err

    rc, err = run(src, "-o", tmp_path / "a.mkv", "--codec", "ffv1", "--quiet", "--start", "0.25", "--duration", "0.5")
    assert rc == 0, err
    (tmp_path / "b.mkv").write_bytes(b"old")
    rc, err = run(src, "-o", tmp_path / "b.mkv", "--codec", "ffv1", "--quiet", "-y",
                  "--start", "0:00.25", "--duration", "00:00:00.500")
    assert rc == 0, err
    a, b = probe(tmp_path / "a.mkv"), probe(tmp_path / "b.mkv")
    assert len(a.pts) == 12 and b.pts == a.pts
    rc, err = run(src, "-o", tmp_path / "c.mkv", "--start", "1:2:3:4")
    assert rc == 1 and len(lines(err)) == 1 and "--start 1:2:3:4" in err and "HH:MM:SS" in err, err
    # x265 logs on the process's stderr past FFmpeg's logger: --quiet silences it too
    rc, err = run(src, "-o", tmp_path / "d.mkv", "--codec", "libx265", "--quiet")
    assert rc == 0 and err == "", err


def test_batch_shows_progress_within_each_file_and_leaves_no_lock(capfd, tmp_path):
    src = make_video(tmp_path / "in" / "reel.mkv", frames=24, rate=24) if (tmp_path / "in").mkdir() is None else None
    out = tmp_path / "out"
    rc = main(["batch", str(src), "-o", str(out), "--codec", "ffv1", "--device", "cpu"])
    err = capfd.readouterr().err
    assert rc == 0, err
    assert "batch of 1 file into" in err and "(1 task," in err and "1 tasks" not in err, err
    assert re.search(r"reel\.mkv: .*\d+(\.\d)?/1\.0 s", err), err  # the engine's bar, in seconds of video
    assert not (out / ".vidcolor-batch.lock").exists()
    assert (out / "reel.mkv").exists()
