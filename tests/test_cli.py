"""The `vidcolor` command: in-process through `main()`, and as a process for signals.

Every bad input must give one line on stderr that names the file, a non-zero
exit status and no traceback, and must leave the input as it was and no
temporary file behind.
"""

from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time

import av
import cv2
import numpy as np
import pytest

from conftest import default_sigint, make_video, probe, sha256, texture
from vidcolor.cli import main


def vidcolor(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def partials(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


def bt601_luma(bgr: np.ndarray) -> np.ndarray:
    b, g, r = (bgr[..., k].astype(float) for k in range(3))
    return 0.299 * r + 0.587 * g + 0.114 * b


# --------------------------------------------------------------------------
# videos
# --------------------------------------------------------------------------


def test_video_default_name_lossless(capsys, media, tmp_path):
    src = tmp_path / "reel.mkv"
    src.write_bytes(media("cli.mkv", audio="aac").read_bytes())
    rc, out, err = vidcolor(capsys, src, "--codec", "ffv1")
    dst = tmp_path / "reel.colorized.mkv"
    assert rc == 0, err
    assert f"wrote {dst}: 12 frames" in err
    a, b = probe(src), probe(dst)
    assert b.pts == a.pts
    assert all(np.array_equal(fa[0], fb[0]) for fa, fb in zip(a.planes, b.planes))
    assert [x[2] for x in b.audio] == [x[2] for x in a.audio]
    assert partials(tmp_path) == []


def test_video_crf_zero_is_lossless_for_luma(capsys, media, tmp_path):
    src = media("cli-x264.mp4", codec="libx264", options={"qp": "0"})
    dst = tmp_path / "out.mp4"
    rc, _, err = vidcolor(capsys, src, "-o", dst, "--crf", "0", "--preset", "ultrafast", "--quiet")
    assert rc == 0, err
    assert err == ""
    a, b = probe(src), probe(dst)
    assert b.codec == "h264" and b.pts == a.pts
    assert all(np.array_equal(fa[0], fb[0]) for fa, fb in zip(a.planes, b.planes))


def test_start_and_duration(capsys, media, tmp_path):
    src = media("cli-window.mkv", frames=36, audio="aac")
    dst = tmp_path / "out.mkv"
    rc, _, err = vidcolor(capsys, src, "-o", dst, "--start", "0.5", "--duration", "0.5", "--codec", "ffv1", "--quiet")
    assert rc == 0, err
    assert len(probe(dst).pts) == 12


def test_pix_fmt_option(capsys, media, tmp_path):
    src = media("cli.mkv", audio="aac")
    dst = tmp_path / "out.mkv"
    rc, _, err = vidcolor(capsys, src, "-o", dst, "--codec", "ffv1", "--pix-fmt", "yuv444p10le", "--quiet")
    assert rc == 0, err
    b = probe(dst)
    assert b.pix_fmt == "yuv444p10le"
    assert b.planes[0][1].shape == b.planes[0][0].shape


def test_preview_writes_a_png_contact_sheet(capsys, media, tmp_path):
    src = tmp_path / "reel.mkv"
    src.write_bytes(media("cli-preview.mkv", size=(96, 64), frames=24).read_bytes())
    rc, _, err = vidcolor(capsys, src, "--preview", "3")
    sheet = tmp_path / "reel.preview.png"
    assert rc == 0, err
    assert f"wrote {sheet} (3 frames)" in err
    img = cv2.imread(str(sheet), cv2.IMREAD_UNCHANGED)
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert img.shape == (3 * 320, 2 * 480, 3)  # 3 rows of gray | colour at 480 px wide
    left, right = img[:, :480].astype(int), img[:, 480:].astype(int)
    assert (left[..., 0] == left[..., 2]).all()  # the gray half is gray
    assert np.abs(right[..., 2] - right[..., 0]).mean() > 2  # the colour half is not


def test_models_lists_the_registry(capsys):
    rc, out, _ = vidcolor(capsys, "models")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["name", "input", "params"]
    names = [line.split()[0] for line in lines[1:]]
    assert "zhang2016" in names and "zhang2016-full" in names
    shipped = next(line for line in lines if line.startswith("zhang2016 "))
    assert "zhang2016.safetensors" in shipped
    from vidcolor.models import DEFAULT_MODEL

    assert [line.split()[0] for line in lines if line.endswith("(default)")] == [DEFAULT_MODEL]


# --------------------------------------------------------------------------
# still images
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["jpg", "png16", "png-alpha", "png-rgb"])
def test_still_image(capsys, tmp_path, kind):
    gray = texture(3, 60, 80)
    if kind == "jpg":
        src, pixels = tmp_path / "photo.jpg", (gray * 255).round().astype(np.uint8)
    elif kind == "png16":
        src, pixels = tmp_path / "scan.png", (gray * 65535).round().astype(np.uint16)
    elif kind == "png-alpha":
        g8 = (gray * 255).round().astype(np.uint8)
        alpha = np.tile(np.linspace(0, 255, 80).astype(np.uint8), (60, 1))
        src, pixels = tmp_path / "logo.png", np.dstack([g8, g8, g8, alpha])
    else:
        g8 = (gray * 255).round().astype(np.uint8)
        src, pixels = tmp_path / "frame.png", np.dstack([g8, g8, g8])
    assert cv2.imwrite(str(src), pixels)
    before = sha256(src)
    rc, _, err = vidcolor(capsys, src)
    dst = src.with_name(f"{src.stem}.colorized.png")
    assert rc == 0, err
    assert f"wrote {dst}" in err
    assert sha256(src) == before
    inp = cv2.imread(str(src), cv2.IMREAD_UNCHANGED)
    out = cv2.imread(str(dst), cv2.IMREAD_UNCHANGED)
    assert out.dtype == inp.dtype and out.shape[:2] == inp.shape[:2]
    assert out.shape[2] == (4 if kind == "png-alpha" else 3)
    level = inp if inp.ndim == 2 else inp[..., 0]  # R = G = B in (a JPEG decodes as it was written)
    # Luma is kept to rounding: each channel is rounded once, so at most half a level.
    assert np.abs(bt601_luma(out) - level).max() <= 0.5 + 1e-6
    peak = 65535 if out.dtype == np.uint16 else 255
    assert np.abs(out[..., 2].astype(float) - out[..., 0]).mean() > 0.01 * peak  # coloured
    if kind == "png-alpha":
        assert np.array_equal(out[..., 3], inp[..., 3])


# --------------------------------------------------------------------------
# bad inputs and outputs: one line, non-zero, no traceback, input untouched
# --------------------------------------------------------------------------


def _setup_bad(case, tmp_path, media):
    """(args, the file the message must name, the input to check, the output folder)."""
    good = tmp_path / "good.mkv"
    good.write_bytes(media("cli.mkv", audio="aac").read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    dst = out / "result.mkv"
    if case == "missing":
        src = tmp_path / "nowhere.mkv"
        return [src, "-o", dst], src, None, out
    if case == "text":
        src = tmp_path / "notes.mp4"
        src.write_text("shopping list\n" * 20)
        return [src, "-o", dst], src, src, out
    if case == "zero-bytes":
        src = tmp_path / "empty.mkv"
        src.write_bytes(b"")
        return [src, "-o", dst], src, src, out
    if case == "truncated-mp4":  # moov at the end: the cut leaves no index
        whole = media("cli-x264.mp4", codec="libx264", options={"qp": "0"})
        src = tmp_path / "cut.mp4"
        data = whole.read_bytes()
        src.write_bytes(data[: len(data) // 2])
        return [src, "-o", dst], src, src, out
    if case == "no-video":
        src = tmp_path / "song.m4a"
        with av.open(str(src), "w") as c:
            s = c.add_stream("aac", rate=48000)
            s.layout = "stereo"
            from conftest import _write_audio

            _write_audio(c, s, 0.3)
        return [src, "-o", dst], src, src, out
    if case == "unknown-codec":
        src = tmp_path / "odd.avi"
        src.write_bytes(media("mjpeg.avi", codec="mjpeg", pix_fmt="yuvj420p").read_bytes().replace(b"MJPG", b"ZQ9X"))
        return [src, "-o", dst], src, src, out
    if case == "not-an-image":
        src = tmp_path / "picture.png"
        src.write_text("not a png")
        return [src, "-o", out / "result.png"], src, src, out
    if case == "output-under-a-file":
        blocker = out / "plain-file"
        blocker.write_text("x")
        target = blocker / "result.mkv"
        return [good, "-o", target], target, good, out
    if case == "output-in-proc":  # refused even to root
        target = "/proc/self/result.mkv"
        return [good, "-o", target], target, good, out
    if case == "output-folder-missing":
        target = out / "no" / "such" / "result.mkv"
        return [good, "-o", target], target, good, out
    if case == "output-is-input":
        return [good, "-o", good], good, good, out
    if case == "output-is-input-by-hard-link":
        link = out / "same.mkv"
        os.link(good, link)
        return [good, "-o", link], link, good, out
    if case == "output-exists":
        dst.write_bytes(b"precious")
        return [good, "-o", dst], dst, good, out
    if case == "bad-pix-fmt":
        return [good, "-o", dst, "--pix-fmt", "rgb24"], "--pix-fmt", good, out
    # options the encoder or torch would only trip over later (a clamp, a traceback, inverted colour)
    options = {"bad-batch": ["--batch", "0"], "bad-crf": ["--crf", "-5"], "bad-preset": ["--preset", "nonsense"],
               "bad-saturation": ["--saturation", "-1"], "start-nan": ["--start", "nan"],
               "start-1e308": ["--start", "1e+308"], "duration-nan": ["--duration", "nan"],
               "preview-0": ["--preview", "0"]}
    if case == "image-to-mp4":  # a still is written as an image, whatever -o says
        src = tmp_path / "photo.png"
        cv2.imwrite(str(src), (texture(0, 48, 64) * 255).astype(np.uint8))
        return [src, "-o", out / "result.mp4"], out / "result.mp4", src, out
    if case in options:
        flag, value = options[case]
        return [good, "-o", dst, flag, value], f"{flag} {value}", good, out
    raise AssertionError(case)


BAD = ["missing", "text", "zero-bytes", "truncated-mp4", "no-video", "unknown-codec", "not-an-image",
       "output-under-a-file", "output-in-proc", "output-folder-missing", "output-is-input",
       "output-is-input-by-hard-link", "output-exists", "bad-pix-fmt", "bad-batch", "bad-crf", "bad-preset",
       "bad-saturation", "start-nan", "start-1e308", "duration-nan", "preview-0", "image-to-mp4"]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_one_line_error(capsys, media, tmp_path, case):
    args, named, src, out_dir = _setup_bad(case, tmp_path, media)
    before = sha256(src) if src else None
    existing = {p.name: sha256(p) for p in out_dir.iterdir() if p.is_file()}
    rc, stdout, err = vidcolor(capsys, *args, "--quiet")
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("vidcolor: error: ")
    assert str(named) in lines[0]
    assert "Traceback" not in err and stdout == ""
    if src:
        assert sha256(src) == before
    assert {p.name: sha256(p) for p in out_dir.iterdir() if p.is_file()} == existing
    assert partials(out_dir) == [] and partials(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a mode-555 folder; see output-under-a-file")
def test_read_only_folder(capsys, media, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        rc, _, err = vidcolor(capsys, media("cli.mkv", audio="aac"), "-o", ro / "out.mkv", "--quiet")
    finally:
        ro.chmod(0o755)
    assert rc == 1 and "not writable" in err and str(ro / "out.mkv") in err
    assert list(ro.iterdir()) == []


def test_truncated_matroska_writes_what_decodes_and_exits_1(capsys, media, tmp_path):
    """Decided behaviour for a cut file whose header states its length (Matroska, MP4 with
    the index first, AVI): the decodable frames are colorized and the output is kept,
    and the exit status is 1 with one line saying where the video stopped."""
    whole = media("cli-whole.mkv", size=(96, 64), frames=30, audio="aac")
    src = tmp_path / "cut.mkv"
    data = whole.read_bytes()
    src.write_bytes(data[: len(data) // 2])
    before = sha256(src)
    n = len(probe(src).pts)
    dst = tmp_path / "cut.colorized.mkv"
    rc, _, err = vidcolor(capsys, src, "--codec", "ffv1", "--quiet")
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert str(src) in lines[0] and "truncated" in lines[0] and f"after frame {n}" in lines[0]
    assert f"the {n} frames before it were written to {dst}" in lines[0]
    assert sha256(src) == before
    assert len(probe(dst).pts) == n
    assert partials(tmp_path) == []


def test_overwrite(capsys, media, tmp_path):
    src = media("cli.mkv", audio="aac")
    dst = tmp_path / "out.mkv"
    dst.write_bytes(b"old")
    rc, _, err = vidcolor(capsys, src, "-o", dst, "--codec", "ffv1", "--quiet")
    assert rc == 1 and "already exists" in err and dst.read_bytes() == b"old"
    rc, _, err = vidcolor(capsys, src, "-o", dst, "--codec", "ffv1", "--quiet", "--overwrite")
    assert rc == 0, err
    assert len(probe(dst).pts) == 12
    assert partials(tmp_path) == []


def test_failure_during_the_run_leaves_no_temporary_file(capsys, media, tmp_path):
    """Input and output are fine, but the window holds no frame: the output was begun."""
    src = media("cli.mkv", audio="aac")
    rc, _, err = vidcolor(capsys, src, "-o", tmp_path / "out.mkv", "--start", "30", "--quiet")
    assert rc == 1 and str(src) in err and "\n" not in err.strip()
    assert "--start 30 is past the end of the video (0.50 s)" in err  # it says how long the video is
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------
# interruption: a real process and real signals
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("long") / "long.mkv"
    return make_video(path, codec="libx264", size=(320, 240), frames=400, rate=25, audio="aac",
                      options={"preset": "ultrafast"})


def _start(src, dst, cwd):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "vidcolor", str(src), "-o", str(dst), "--device", "cpu"],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            preexec_fn=default_sigint)
    chunks: list[bytes] = []

    def pump():
        for chunk in iter(lambda: proc.stderr.read1(4096), b""):
            chunks.append(chunk)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    return proc, chunks, reader


def _wait_for_progress(proc, chunks, timeout=90) -> None:
    """Until the progress bar shows at least one colorized frame."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(rb"\b[1-9]\d* frames, ", b"".join(chunks)):
            return
        if proc.poll() is not None:
            raise AssertionError(f"vidcolor exited early ({proc.returncode}): {b''.join(chunks).decode()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("no progress within the time limit")


@pytest.fixture(scope="module")
def short_video(tmp_path_factory):
    """Long enough (300 small frames) to be caught running, short enough for the quick suite."""
    path = tmp_path_factory.mktemp("short") / "short.mkv"
    return make_video(path, codec="libx264", size=(160, 120), frames=300, rate=25, audio="aac",
                      options={"preset": "ultrafast"})


@pytest.mark.parametrize("video", [pytest.param("short_video", id="quick"),
                                   pytest.param("long_video", id="full", marks=pytest.mark.slow)])
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_removes_partial_output(request, video, tmp_path, sig, code):
    _signal_removes_partial_output(request.getfixturevalue(video), tmp_path, [sig], code)


def test_two_ctrl_c_within_a_tenth_of_a_second_still_clean_up(short_video, tmp_path):
    """The second Ctrl-C lands in the cleanup of the first: it must not abort it (exit 134,
    the partial file left, a message saying it was removed)."""
    _signal_removes_partial_output(short_video, tmp_path, [signal.SIGINT, signal.SIGINT], 130)


def test_signals_during_cleanup_quick(short_video, tmp_path):
    _signal_removes_partial_output(short_video, tmp_path, [signal.SIGTERM, signal.SIGINT, signal.SIGTERM], 143)


def _signal_removes_partial_output(video, tmp_path, sigs, code):
    long_video, sig = video, sigs[0]
    before = sha256(long_video)
    dst = tmp_path / "out.mkv"
    proc, chunks, reader = _start(long_video, dst, tmp_path)
    try:
        _wait_for_progress(proc, chunks)
        # While it runs: only the temporary name exists.
        assert not dst.exists()
        assert len(partials(tmp_path)) == 1
        for i, s in enumerate(sigs):
            if i:
                time.sleep(0.03)
            proc.send_signal(s)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    err = b"".join(chunks).decode(errors="replace")
    assert rc == code, err
    assert "Traceback" not in err and "terminate called" not in err
    assert err.rstrip().splitlines()[-1].endswith(
        f"vidcolor: interrupted ({sig.name}); the partial output was removed")
    assert list(tmp_path.iterdir()) == []
    assert sha256(long_video) == before


def test_stabilize_option_keeps_luma_and_is_deterministic(tmp_path):
    """--stabilize goes through the same engine: frames, timestamps and luma are kept, and a
    second run gives the same chroma (its state starts afresh with every video). Its effect on
    flicker is tested in test_temporal.py."""
    src = make_video(tmp_path / "in.mkv", frames=12, size=(96, 64))
    runs = [tmp_path / "a.mkv", tmp_path / "b.mkv"]
    for out in runs:
        assert main([str(src), "-o", str(out), "--codec", "ffv1", "--quiet", "--stabilize"]) == 0
    a, b, c = (probe(p) for p in (src, *runs))
    assert c.pts == a.pts and len(a.pts) == 12
    assert all(np.array_equal(x[0], z[0]) for x, z in zip(a.planes, c.planes))
    assert all(np.array_equal(x[i], z[i]) for x, z in zip(b.planes, c.planes) for i in (1, 2))


def _raw_mpeg1(path, frames: int, options: dict, picture) -> None:
    """A bare MPEG-1 video stream (no container), as old capture tools and visp's cube.mpeg are."""
    import av

    with av.open(str(path), "w", format="mpeg1video") as out:
        s = out.add_stream("mpeg1video", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.codec_context.options = options
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(picture(i), format="rgb24")
            f.pts = i
            out.mux(s.encode(f))
        out.mux(s.encode())


def _bar(i: int) -> np.ndarray:
    img = np.full((48, 64, 3), 30, np.uint8)
    img[:, i: i + 6] = 220  # a bright bar moving one pixel a frame
    return img


def test_bare_stream_with_a_low_header_bit_rate_is_not_called_truncated(capsys, tmp_path):
    # The header says 50 kbit/s, the pictures take far more: FFmpeg guesses 4.9 s for 2 s of video,
    # which the truncation check took for a cut file (exit 1 with all 50 frames written).
    rng = np.random.default_rng(0)
    src = tmp_path / "noise.m1v"
    _raw_mpeg1(src, 50, {"qscale": "2", "maxrate": "50k", "bufsize": "400k"},
               lambda i: rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    rc, _, err = vidcolor(capsys, src, "-o", tmp_path / "out.mkv", "--codec", "ffv1")
    assert rc == 0, err
    assert len(probe(tmp_path / "out.mkv").planes) == 50
    # the progress bar's total comes from the packets' timestamps (2 s at 25 fps), not the guess (4.9 s)
    totals = {float(m) for m in re.findall(r"[\d.]+/([\d.]+) s \[", err)}
    assert totals and all(abs(t - 2.0) <= 0.05 for t in totals), totals


def test_progress_of_a_variable_frame_rate_video_is_in_seconds(capsys, tmp_path):
    # 20 pictures over 1.6 s of a 25 fps stream (every other frame dropped, as in AVIs with drop
    # chunks or phones' variable rate): a frame count of 40 left the bar at 20/40 when it was done
    from fractions import Fraction

    src = tmp_path / "vfr.mkv"
    with av.open(str(src), "w") as out:
        s = out.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(20):
            f = av.VideoFrame.from_ndarray(_bar(i), format="rgb24").reformat(format="yuv420p")
            f.pts, f.time_base = 2 * i, Fraction(1, 25)
            out.mux(s.encode(f))
        out.mux(s.encode())
    rc, _, err = vidcolor(capsys, src, "-o", tmp_path / "out.mkv")
    assert rc == 0, err
    assert len(probe(tmp_path / "out.mkv").planes) == 20
    totals = {float(m) for m in re.findall(r"[\d.]+/([\d.]+) s \[", err)}
    assert totals == {1.6}, totals


def test_preview_of_a_bare_stream_spans_it(capsys, tmp_path):
    # Flagged VBR, the header's bit rate is a marker: FFmpeg guesses 0.3 ms for 2 s of video, and
    # the preview took its N "evenly spaced" frames all from the first one.
    src = tmp_path / "bar.m1v"
    _raw_mpeg1(src, 50, {"qscale": "4"}, _bar)
    rc, _, err = vidcolor(capsys, src, "--preview", "3", "-o", tmp_path / "sheet.png")
    assert rc == 0, err
    sheet = cv2.imread(str(tmp_path / "sheet.png"), cv2.IMREAD_GRAYSCALE)
    rows = [cv2.resize(sheet[k * 360:(k + 1) * 360, :480], (64, 48), interpolation=cv2.INTER_AREA) for k in range(3)]
    bars = [int(np.argmax(r.mean(axis=0))) for r in rows]  # where each row's bar is: its frame number
    # frames at 1/6, 3/6 and 5/6 of the 2 s clip: about 8, 25 and 41 (the bar's centre is 2.5 px on)
    assert [abs(b - (f + 2.5)) <= 2 for b, f in zip(bars, (8, 25, 41))] == [True] * 3, bars


# --------------------------------------------------------------------------
# damaged inputs: every decodable frame kept; a warning, or an error with --strict
# --------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_damaged_reel_is_colorized_past_the_damage_with_a_warning(capsys, tmp_path, suffix):
    from conftest import damaged_reel, tolerant_decode

    src = damaged_reel(tmp_path, suffix)
    n = len(tolerant_decode(src))
    dst = tmp_path / f"out{suffix}"
    rc, _, err = vidcolor(capsys, src, "-o", dst, "--codec", "ffv1", "--quiet")
    assert rc == 0 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"vidcolor: warning: {src}: the video is damaged, about "
                                                   f"{96 - n} frame")
    assert f"the {n} frames that decode were written" in lines[0]
    assert len(probe(dst).pts) == n
    rc, _, err = vidcolor(capsys, src, "-o", dst, "--codec", "ffv1", "--quiet", "--strict", "--overwrite")
    lines = err.strip().splitlines()
    assert rc == 1 and len(lines) == 1 and lines[0].startswith(f"vidcolor: error: {src}: the video is damaged")
    assert partials(tmp_path) == []


# --------------------------------------------------------------------------
# poisoned numbers: refused at load time, never painted
# --------------------------------------------------------------------------


def _shipped_state():
    import safetensors.torch

    from vidcolor.models import DEFAULT_MODEL, get_model
    from vidcolor.weights import weights_path

    return safetensors.torch.load_file(str(weights_path(get_model(DEFAULT_MODEL), None)))


@pytest.mark.parametrize("case", ["nan-weights", "inf-weights", "gain-nan", "gain-1e308", "gain-text",
                                  "saturation-inf", "saturation-nan"])
def test_poisoned_numbers_are_refused_before_anything_is_written(capsys, media, tmp_path, case):
    import safetensors.torch

    src = media("cli.mkv", audio="aac")
    state, meta, extra = _shipped_state(), {}, []
    if case.endswith("-weights"):
        key = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
        state[key] = state[key].clone()
        state[key].view(-1)[0] = float("nan" if case == "nan-weights" else "inf")
    elif case.startswith("gain"):
        meta["chroma_gain"] = {"gain-nan": "nan", "gain-1e308": "1e308", "gain-text": "high"}[case]
    else:
        extra = ["--saturation", case.split("-")[1]]
    weights = tmp_path / "w.safetensors"
    safetensors.torch.save_file(state, str(weights), metadata=meta)
    out = tmp_path / "out"
    out.mkdir()
    rc, stdout, err = vidcolor(capsys, src, "-o", out / "o.mkv", "--weights", weights, *extra, "--quiet")
    lines = err.strip().splitlines()
    assert rc == 1 and len(lines) == 1 and "Traceback" not in err, err
    named = f"--saturation {extra[1]}" if extra else str(weights)
    assert lines[0].startswith("vidcolor: error: ") and named in lines[0]
    assert list(out.iterdir()) == []


# --------------------------------------------------------------------------
# tracebacks where one line is promised; memory the input chooses
# --------------------------------------------------------------------------


def _one_error_line(rc, err, *named):
    lines = err.strip().splitlines()
    assert rc == 1 and len(lines) == 1 and lines[0].startswith("vidcolor: error: "), err
    assert "Traceback" not in err
    for n in named:
        assert str(n) in lines[0], err
    return lines[0]


def _huge_png(path, w=20000, h=20000) -> pathlib.Path:
    """A valid 8-bit gray PNG of w x h black pixels: a few hundred KB on disk, w*h bytes decoded."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(9)
    row = bytes(w + 1)  # filter byte 0 and a row of zeros
    idat = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("case", ["default-name-over-255-bytes", "path-over-PATH_MAX"])
def test_names_too_long_are_one_line_errors(capsys, media, tmp_path, case):
    if case == "default-name-over-255-bytes":
        src = tmp_path / ("r" * 245 + ".mkv")  # a valid name; its .colorized.mkv is 259 bytes
        src.write_bytes(media("cli.mkv").read_bytes())
        rc, _, err = vidcolor(capsys, src, "--quiet")
        assert "more than the 255" in _one_error_line(rc, err, "-o")
    else:
        src = media("cli.mkv")
        dst = tmp_path.joinpath(*["d" * 200] * 25, "out.mkv")  # 5000+ bytes, each name valid
        rc, _, err = vidcolor(capsys, src, "-o", dst, "--quiet")
        _one_error_line(rc, err, "-o")
    assert partials(tmp_path) == []


def test_an_output_name_of_255_bytes_is_written(capsys, media, tmp_path):
    """The hidden temporary name is cut to fit (it overflowed: `.NAME.partial-PID.mkv`)."""
    dst = tmp_path / ("n" * 251 + ".mkv")
    rc, _, err = vidcolor(capsys, media("cli.mkv"), "-o", dst, "--codec", "ffv1", "--quiet")
    assert rc == 0, err
    assert len(probe(dst).pts) == 12 and partials(tmp_path) == []


def test_a_huge_picture_in_a_small_png_is_refused_before_decoding(capsys, tmp_path, monkeypatch):
    src = _huge_png(tmp_path / "bomb.png")
    assert src.stat().st_size < 1_000_000  # decoded, 400 MB (RGB float: 4.8 GB)
    rc, _, err = vidcolor(capsys, src, "-o", tmp_path / "out.png", "--quiet")
    line = _one_error_line(rc, err, src, "20000x20000")
    assert "VIDCOLOR_MAX_PIXELS=400000000" in line
    assert not (tmp_path / "out.png").exists() and partials(tmp_path) == []
    # The limit is the user's to raise: a small one refuses an ordinary picture too.
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), (texture(0, 48, 64) * 255).astype(np.uint8))
    monkeypatch.setenv("VIDCOLOR_MAX_PIXELS", "1000")
    rc, _, err = vidcolor(capsys, small, "-o", tmp_path / "small-out.png", "--quiet")
    _one_error_line(rc, err, small, "64x48", "1000")
    monkeypatch.setenv("VIDCOLOR_MAX_PIXELS", "3072")
    rc, _, err = vidcolor(capsys, small, "-o", tmp_path / "small-out.png", "--quiet")
    assert rc == 0, err


def test_a_video_over_the_pixel_limit_is_refused_before_anything_is_written(capsys, media, tmp_path, monkeypatch):
    monkeypatch.setenv("VIDCOLOR_MAX_PIXELS", "3000")  # the clip is 64x48 = 3072
    src = media("cli.mkv")
    rc, _, err = vidcolor(capsys, src, "-o", tmp_path / "out.mkv", "--quiet")
    _one_error_line(rc, err, src, "VIDCOLOR_MAX_PIXELS=3072")
    assert list(tmp_path.iterdir()) == []


def test_preview_of_a_damaged_file_is_not_a_traceback(capsys, tmp_path):
    from conftest import damage_middle

    whole = make_video(tmp_path / "w.mp4", codec="ffv1", size=(160, 120), frames=24, rate=24,
                       container_options={"movflags": "faststart"})
    src = damage_middle(whole, tmp_path / "bad.mp4", size=whole.stat().st_size // 2)
    rc, _, err = vidcolor(capsys, src, "--preview", "3", "-o", tmp_path / "sheet.png", "--quiet")
    assert "Traceback" not in err and rc == 0, err  # the frames that decode (was: InvalidDataError)
    assert cv2.imread(str(tmp_path / "sheet.png")) is not None
    garbage = tmp_path / "garbage.mp4"
    data = bytearray(whole.read_bytes())
    data[len(data) // 8:] = np.random.default_rng(1).integers(0, 256, len(data) - len(data) // 8,
                                                             dtype=np.uint8).tobytes()
    garbage.write_bytes(bytes(data))
    rc, _, err = vidcolor(capsys, garbage, "--preview", "3", "-o", tmp_path / "sheet2.png", "--quiet")
    if rc:
        _one_error_line(rc, err, garbage)
    assert "Traceback" not in err


def test_a_truncated_jpeg_is_reported_as_damaged(capsys, tmp_path):
    whole = tmp_path / "whole.jpg"
    cv2.imwrite(str(whole), (texture(0, 240, 320) * 255).astype(np.uint8))
    src = tmp_path / "cut.jpg"
    src.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    dst = tmp_path / "out.png"
    rc, _, err = vidcolor(capsys, src, "-o", dst, "--quiet")
    lines = [l for l in err.strip().splitlines() if l.startswith("vidcolor")]
    assert rc == 0 and len(lines) == 1 and lines[0].startswith(f"vidcolor: warning: {src}: the JPEG is truncated")
    assert dst.exists()
    rc, _, err = vidcolor(capsys, src, "-o", dst, "--quiet", "--strict", "--overwrite")
    assert rc == 1 and f"vidcolor: error: {src}: the JPEG is truncated" in err
    rc, _, err = vidcolor(capsys, whole, "-o", tmp_path / "whole-out.png", "--quiet", "--strict")
    assert rc == 0 and err == ""


def test_torch_warnings_on_a_malicious_pth_are_not_printed(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    bad = tmp_path / "evil.pth"
    bad.write_bytes(pickle.dumps({"w": Evil()}, protocol=4))  # protocol 4: torch warns before refusing
    for args in (["convert-weights", bad, tmp_path / "out.safetensors"],
                 [tmp_path / "x.png", "--weights", bad, "--quiet"]):
        if args[0] != "convert-weights":
            cv2.imwrite(str(args[0]), np.zeros((8, 8), np.uint8))
        r = subprocess.run([sys.executable, "-m", "vidcolor", *map(str, args)], capture_output=True, text=True,
                           cwd=tmp_path)
        assert r.returncode == 1 and r.stdout == ""
        assert r.stderr.strip().splitlines() == [f"vidcolor: error: {bad}: not a readable weights file "
                                                 "(UnpicklingError); pass a .safetensors or a PyTorch "
                                                 "state_dict .pth"], r.stderr


def test_an_output_made_by_another_program_meanwhile_is_not_replaced(short_video, tmp_path):
    dst = tmp_path / "out.mkv"
    proc, chunks, reader = _start(short_video, dst, tmp_path)
    try:
        _wait_for_progress(proc, chunks)
        dst.write_bytes(b"another program's file")  # after vidcolor checked that the name was free
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    err = b"".join(chunks).decode(errors="replace")
    assert rc == 1, err
    assert err.rstrip().splitlines()[-1].startswith(f"vidcolor: error: {dst}: another program created this file")
    assert "Traceback" not in err
    assert dst.read_bytes() == b"another program's file" and partials(tmp_path) == []


def test_partials_of_a_killed_run_are_swept_by_the_next(capsys, short_video, tmp_path):
    dst = tmp_path / "out.mkv"
    proc, chunks, reader = _start(short_video, dst, tmp_path)
    try:
        _wait_for_progress(proc, chunks)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    left = partials(tmp_path)
    assert left == [f".out.partial-{proc.pid}.mkv"]
    # The partial of a writer that is still running is its own: left alone.
    other = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / f".out.partial-{other.pid}.mkv").write_bytes(b"being written")
        rc, _, err = vidcolor(capsys, short_video, "-o", dst, "--duration", "0.2", "--codec", "ffv1", "--quiet")
    finally:
        other.kill()
        other.wait()
    assert rc == 0, err
    assert partials(tmp_path) == [f".out.partial-{other.pid}.mkv"] and len(probe(dst).pts) == 5
