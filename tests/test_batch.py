"""`vidcolor batch`: whole folders as one resumable job, on a local process pool or on Ray.

Everything is real: clips encoded by PyAV (conftest.make_video), the shipped
model in spawned worker processes (or Ray workers), the SQLite manifest read
back with sqlite3, processes killed with real signals. Outputs are FFV1, so a
correct output is recognised exactly: the input's luma, every frame, coloured
chroma.
"""

from __future__ import annotations

import os
import pathlib
import re
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from conftest import default_sigint, make_video, probe, sha256
from vidcolor.jobs import BatchConfig
from vidcolor.jobs.manifest import MANIFEST, Manifest
from vidcolor.jobs.plan import collect_inputs
from vidcolor.cli import main
from vidcolor.io.engine import EncodeOptions, colorize_video
from vidcolor.errors import InvalidInput, OutputError
from vidcolor.io.segments import join_segments, plan_segments, segment_options

FFV1 = ["--codec", "ffv1", "--device", "cpu"]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def clip(path, frames=12, size=(64, 48), **kw) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return make_video(path, codec="ffv1", frames=frames, size=size, **kw)


def assert_same_film(a, b) -> None:
    """Two probed runs of one film colourised in other batches (segments, processes): the luma bit for bit,
    the chroma within one code value on a few samples. The network's floats differ in their last bits
    with the batch's size (CPU kernels chosen per shape: about 1e-5 ab), which now and then moves a
    chroma sample that lay on a rounding edge by one; a frame out of place differs by far more."""
    assert len(a.planes) == len(b.planes)
    moved = total = 0
    for i, (fa, fb) in enumerate(zip(a.planes, b.planes)):
        assert np.array_equal(fa[0], fb[0]), f"frame {i}: luma differs"
        for x, y in zip(fa[1:], fb[1:]):
            gap = np.abs(x.astype(int) - y)
            assert gap.max() <= 1, f"frame {i}: chroma differs by {gap.max()}"
            moved, total = moved + int(gap.sum()), total + gap.size
    assert moved <= total * 1e-3, f"{moved} of {total} chroma samples differ by one"


def batch(capsys, *args) -> tuple[int, str]:
    rc = main(["batch", *map(str, args)])
    return rc, capsys.readouterr().err


def rows(outdir) -> dict[str, sqlite3.Row]:
    db = sqlite3.connect(str(pathlib.Path(outdir) / MANIFEST))
    db.row_factory = sqlite3.Row
    try:
        return {r["input"]: r for r in db.execute("SELECT * FROM files")}
    finally:
        db.close()


def _state(outdir, name: str) -> str | None:
    """The manifest state of the input called ``name``; None while the driver is still creating it."""
    try:
        return next((r["state"] for k, r in rows(outdir).items() if pathlib.Path(k).name == name), None)
    except sqlite3.OperationalError:
        return None


def partials(folder) -> list[str]:
    return sorted(p.name for p in pathlib.Path(folder).rglob("*") if ".partial" in p.name)


def assert_colorized(src, dst) -> None:
    """Every frame of ``src`` is in ``dst`` at its time, with the luma untouched and colour added."""
    a, b = probe(src), probe(dst)
    assert b.pts == a.pts, f"{dst}: frames or timestamps differ"
    for i, (fa, fb) in enumerate(zip(a.planes, b.planes)):
        assert np.array_equal(fa[0], fb[0]), f"{dst} frame {i}: luma changed"
    assert any(np.abs(fb[1].astype(int) - 128).max() > 2 for fb in b.planes), f"{dst}: no colour"


def assert_manifest_consistent(outdir, expected: dict[pathlib.Path, pathlib.Path]) -> None:
    """One row per input, done, its output the file named, whole (checksum and size) and nothing else."""
    r = rows(outdir)
    assert sorted(r) == sorted(str(s.resolve()) for s in expected)
    for src, dst in expected.items():
        row = r[str(src.resolve())]
        assert row["state"] == "done", (src, row["state"], row["error"])
        assert row["output"] == str(dst)
        assert row["sha256"] == sha256(dst) and row["size"] == dst.stat().st_size
        assert row["frames"] == len(probe(src).pts)
    made = sorted(p for p in pathlib.Path(outdir).rglob("*") if p.is_file() and not p.name.startswith(".")
                  and p.name != MANIFEST)
    assert made == sorted(expected.values()), "an output is missing or one too many"
    assert partials(outdir) == []


def mtimes(paths) -> dict:
    return {p: p.stat().st_mtime_ns for p in paths}


def _start(args, cwd, **kw) -> tuple[subprocess.Popen, list[bytes]]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "vidcolor", "batch", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=default_sigint, **kw)
    chunks: list[bytes] = []
    threading.Thread(target=lambda: chunks.extend(iter(lambda: proc.stderr.read1(4096), b"")), daemon=True).start()
    return proc, chunks


def _wait(cond, proc=None, chunks=None, timeout=240.0, what="the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"vidcolor exited early ({proc.returncode}): {b''.join(chunks or []).decode()}")
        time.sleep(0.02)
    if proc is not None:
        proc.kill()
    raise AssertionError(f"timed out waiting for {what}")


def writing(outdir) -> tuple[int, str] | None:
    """A worker writing an output right now: its pid and the output's name (the engine's
    temporary file is .STEM.partial-PID.EXT)."""
    for name in partials(outdir):
        m = re.fullmatch(r"\.(.+)\.partial-(\d+)(\.\w+)", name)
        if m:
            return int(m.group(2)), m.group(1) + m.group(3)
    return None


def partial_pid(outdir) -> int | None:
    w = writing(outdir)
    return w[0] if w else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead
        return pathlib.Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Three short clips, one in a subfolder, and one with audio."""
    root = tmp_path_factory.mktemp("archive")
    return [clip(root / "a.mkv", audio="aac"), clip(root / "b.mkv", size=(80, 48)), clip(root / "reel2" / "c.mkv")]


@pytest.fixture(scope="module")
def longer(tmp_path_factory):
    """Clips long enough (40 frames) to be caught in the middle."""
    root = tmp_path_factory.mktemp("longer")
    return [clip(root / f"{n}.mkv", frames=40, size=(96, 64)) for n in "abc"]


#: the interruption and kill tests: a quick run on two clips (the quick suite), the full one on three.
SIZES = [pytest.param("quick"), pytest.param("full", marks=pytest.mark.slow)]


@pytest.fixture
def reels(request, longer):
    return longer if request.param == "full" else longer[:2]


def by_name(states: dict, **named) -> dict:
    """``named`` states for those inputs, pending for the rest."""
    return {name: named.get(name.split(".")[0], "pending") for name in states}


# --------------------------------------------------------------------------
# inputs, manifest and refusals (no worker needed)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kw,said", [({"jobs": 0}, "--jobs must be at least 1"),
                                     ({"segments": 0}, "--segments must be at least 1"),
                                     ({"batch": 0}, "--batch 0"), ({"inputs": ()}, "no inputs")])
def test_batch_config_checks_its_values(kw, said):
    """BatchConfig refuses what no batch can run, in one line, before anything is read or written."""
    with pytest.raises(InvalidInput, match=re.escape(said)):
        BatchConfig(**{"inputs": ("a.mkv",), "outdir": "out", **kw})
    cfg = BatchConfig(["a.mkv"], "out", ext="mkv")
    assert cfg.ext == ".mkv" and cfg.inputs == ("a.mkv",) and cfg.outdir == pathlib.Path("out")


def test_inputs_files_folders_and_globs(tmp_path):
    a = clip(tmp_path / "in" / "a.mkv")
    b = clip(tmp_path / "in" / "deep" / "b.mp4")
    (tmp_path / "in" / "notes.txt").write_text("not a video")
    (tmp_path / "in" / ".hidden.mkv").write_bytes(b"x")
    c = clip(tmp_path / "other" / "c.mkv")
    out = tmp_path / "out"
    items = collect_inputs([tmp_path / "in", str(tmp_path / "other" / "*.mkv"), a], out)
    assert [(i.src, i.dst) for i in items] == [(a, out / "a.mkv"), (b, out / "deep" / "b.mp4"), (c, out / "c.mkv")]
    assert collect_inputs([c], out, ".mov")[0].dst == out / "c.mov"
    # The output folder inside an input folder is never read as input.
    clip(tmp_path / "in" / "out" / "old.mkv")
    assert len(collect_inputs([tmp_path / "in"], tmp_path / "in" / "out")) == 2
    with pytest.raises(InvalidInput, match="would both be written to"):
        collect_inputs([a, clip(tmp_path / "x" / "a.mkv")], out)
    with pytest.raises(InvalidInput, match="no such file or folder"):
        collect_inputs([tmp_path / "missing.mkv"], out)
    with pytest.raises(InvalidInput, match="matches no file"):
        collect_inputs([str(tmp_path / "*.avi")], out)
    with pytest.raises(OutputError, match="would be the input"):
        collect_inputs([a], a.parent)


def test_output_folder_under_a_file_is_a_clear_error(capsys, clips, tmp_path):
    """A folder that cannot be made (a regular file is in the way, as root too)."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, err = batch(capsys, clips[0], "-o", blocker / "out", *FFV1)
    lines = err.strip().splitlines()
    assert rc == 1 and len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith(f"vidcolor: error: {blocker / 'out'}: cannot write the batch output folder")
    assert blocker.read_text() == "x"


def test_outputs_not_made_by_the_batch_are_not_replaced(capsys, clips, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.mkv").write_bytes(b"mine")
    rc, err = batch(capsys, clips[0], "-o", out, *FFV1)
    assert rc == 1 and "already exists and was not made by this batch" in err and "--overwrite" in err
    assert (out / "a.mkv").read_bytes() == b"mine"


def test_other_settings_are_refused_on_resume(capsys, clips, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    m = Manifest(out / MANIFEST)
    m.set_settings({"model": "zhang2016", "codec": "libx264"})
    m.close()
    rc, err = batch(capsys, clips[0], "-o", out, *FFV1)
    assert rc == 1 and "holds a batch made with other settings" in err and "'libx264' -> 'ffv1'" in err


# --------------------------------------------------------------------------
# segments: cut at keyframes, colorized apart, joined = the single-process run
# --------------------------------------------------------------------------


def test_plan_cuts_just_before_keyframes(tmp_path):
    src = make_video(tmp_path / "gop.mp4", codec="libx264", frames=30, gop=10, options={"preset": "ultrafast"})
    plan = plan_segments(src, 3)
    assert [s.frames for s in plan] == [10, 10, 10]
    # Half-way between frame 9 and keyframe 10 (24 fps): 9.5 / 24 s.
    assert plan[0].start is None and plan[-1].end is None
    assert plan[1].start == pytest.approx(9.5 / 24) and plan[2].start == pytest.approx(19.5 / 24)
    assert [s.frames for s in plan_segments(src, 2)] == [10, 20]  # 15 is as far from 10 as from 20
    # No keyframe to cut at: one segment.
    assert len(plan_segments(make_video(tmp_path / "one.mp4", codec="libx264", frames=12, gop=100), 4)) == 1


JOINS = [
    # id, make_video kwargs, container, options
    ("mkv-audio-subs-chapters", dict(codec="ffv1", frames=20, gop=6, audio="aac", subtitles=True, chapters=True,
                                     metadata={"title": "Reel 1"}), ".mkv", EncodeOptions(codec="ffv1")),
    ("mp4-x264-in", dict(codec="libx264", frames=20, gop=6, audio="aac", options={"preset": "ultrafast"}), ".mp4",
     EncodeOptions(codec="ffv1")),
    ("vfr", dict(codec="ffv1", frames=20, gop=5, vfr=True, audio="aac"), ".mkv", EncodeOptions(codec="ffv1")),
    ("start-duration", dict(codec="ffv1", frames=20, gop=4, audio="aac"), ".mkv",
     EncodeOptions(codec="ffv1", start=0.2, duration=0.5)),
]


@pytest.mark.parametrize("kw,suffix,opts", [j[1:] for j in JOINS], ids=[j[0] for j in JOINS])
def test_joined_segments_equal_the_single_process_run(colorizer, tmp_path, kw, suffix, opts):
    src = make_video(tmp_path / f"film{suffix}", **kw)
    single = tmp_path / f"single{suffix}"
    colorize_video(src, single, colorizer, opts, progress=False)
    plan = plan_segments(src, 3, opts)
    assert len(plan) == 3
    parts = []
    for seg in plan:
        part = tmp_path / f"part{seg.index}{suffix}"
        stats = colorize_video(src, part, colorizer, segment_options(opts, seg), progress=False)
        assert stats.frames == seg.frames  # no frame twice, none missing
        parts.append(part)
    joined = tmp_path / f"joined{suffix}"
    assert join_segments(src, parts, joined, opts) == sum(s.frames for s in plan)
    a, b = probe(single), probe(joined)
    assert b.pts == a.pts and b.time_base == a.time_base and b.average_rate == a.average_rate
    assert_same_film(a, b)
    assert b.audio == a.audio and b.subtitles == a.subtitles
    assert b.container_metadata == a.container_metadata and b.chapters == a.chapters
    assert b.stream == a.stream  # colour tags, aspect ratio, stream metadata (its duration too)


def test_joined_x264_within_encoder_tolerance(colorizer, tmp_path):
    """A lossy codec: each segment is its own GOP, so only the encoder's error differs."""
    src = make_video(tmp_path / "film.mkv", codec="ffv1", frames=20, gop=6)
    opts = EncodeOptions(codec="libx264", crf=18)
    single, joined = tmp_path / "single.mkv", tmp_path / "joined.mkv"
    colorize_video(src, single, colorizer, opts, progress=False)
    plan = plan_segments(src, 2, opts)
    parts = [tmp_path / f"p{s.index}.mkv" for s in plan]
    for seg, part in zip(plan, parts):
        colorize_video(src, part, colorizer, segment_options(opts, seg), progress=False)
    join_segments(src, parts, joined, opts)
    a, b, orig = probe(single), probe(joined), probe(src)
    assert b.pts == a.pts
    for fa, fb, fo in zip(a.planes, b.planes, orig.planes):
        err_single = np.abs(fa[0].astype(int) - fo[0]).mean()
        err_joined = np.abs(fb[0].astype(int) - fo[0]).mean()
        assert err_joined < err_single + 1.0  # the noise texture costs x264 ~3.5 levels at crf 18


def test_stabilized_segments_warm_up_before_the_join(colorizer, tmp_path):
    """--stabilize: each segment after the first starts warm (44 frames processed and dropped), so the
    joined film has every frame once and its colour at the join is the single run's, near enough; a cold
    start would take the model's own colour at the join."""
    from vidcolor.io.segments import warmup_seconds
    from vidcolor.temporal import warmup_frames

    src = make_video(tmp_path / "film.mkv", codec="ffv1", frames=72, gop=12)
    opts = EncodeOptions(codec="ffv1")
    single = tmp_path / "single.mkv"
    colorize_video(src, single, colorizer.stabilized(), opts, progress=False)
    plan = plan_segments(src, 2, opts)
    assert len(plan) == 2 and plan[1].start is not None
    warm = warmup_seconds(src, warmup_frames())
    assert warm == pytest.approx(44 / 24)
    results = {}
    for label, w in (("warm", warm), ("cold", 0.0)):
        parts = [tmp_path / f"{label}{s.index}.mkv" for s in plan]
        for seg, part in zip(plan, parts):
            opts_seg = segment_options(opts, seg, w)
            assert opts_seg.warmup == (w if seg.index else 0.0)
            stats = colorize_video(src, part, colorizer.stabilized(), opts_seg, progress=False)
            assert stats.frames == seg.frames  # warm-up frames are not written
        joined = tmp_path / f"{label}.mkv"
        join_segments(src, parts, joined, opts)
        results[label] = probe(joined)
    a = probe(single)
    cut = plan[0].frames
    for label, b in results.items():
        assert b.pts == a.pts, label
        for i in range(cut):  # the first segment is the single run's start, bit for bit
            assert all(np.array_equal(x, y) for x, y in zip(a.planes[i], b.planes[i])), f"{label}: frame {i}"

    def chroma_gap(b, i):
        return max(np.abs(a.planes[i][p].astype(int) - b.planes[i][p]).mean() for p in (1, 2))

    warm_gap = max(chroma_gap(results["warm"], i) for i in range(cut, cut + 4))
    cold_gap = max(chroma_gap(results["cold"], i) for i in range(cut, cut + 4))
    assert warm_gap < 0.25 and warm_gap < cold_gap / 4, (warm_gap, cold_gap)


# --------------------------------------------------------------------------
# the local process pool
# --------------------------------------------------------------------------


@pytest.mark.slow
def test_pool_batch_all_done_then_resume_skips(capsys, clips, tmp_path):
    out = tmp_path / "out"
    folder = clips[0].parent
    rc, err = batch(capsys, folder, "-o", out, "--jobs", "2", *FFV1)
    assert rc == 0, err
    expected = {clips[0]: out / "a.mkv", clips[1]: out / "b.mkv", clips[2]: out / "reel2" / "c.mkv"}
    for src, dst in expected.items():
        assert_colorized(src, dst)
    assert probe(out / "a.mkv").audio == probe(clips[0]).audio
    assert_manifest_consistent(out, expected)
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"vidcolor: batch into {out}: 3 of 3 files done, 0 failed; 36 frames")
    before = mtimes(expected.values())
    rc, err = batch(capsys, folder, "-o", out, "--jobs", "2", *FFV1)
    assert rc == 0, err
    assert "3 of 3 files done (3 already before), 0 failed; 0 frames" in err
    assert mtimes(expected.values()) == before
    assert_manifest_consistent(out, expected)
    # An output that was damaged since is made again.
    (out / "b.mkv").write_bytes((out / "b.mkv").read_bytes()[:-100])
    rc, err = batch(capsys, folder, "-o", out, *FFV1)
    assert rc == 0 and "(2 already before)" in err and "12 frames" in err
    assert_colorized(clips[1], out / "b.mkv")
    assert_manifest_consistent(out, expected)
    # Other model options reach the workers, and a changed setting redoes the batch only when asked.
    rc, err = batch(capsys, folder, "-o", out, "--saturation", "0", *FFV1)
    assert rc == 1 and "other settings (saturation 1.0 -> 0.0)" in err
    rc, err = batch(capsys, folder, "-o", out, "--saturation", "0", "--overwrite", *FFV1)
    assert rc == 0 and "3 of 3 files done, 0 failed; 36 frames" in err
    for dst in expected.values():
        assert all(np.abs(f[k].astype(int) - 128).max() <= 1 for f in probe(dst).planes for k in (1, 2))


@pytest.mark.slow
def test_corrupt_input_is_reported_and_the_others_done(capsys, clips, tmp_path):
    bad = tmp_path / "bad.mkv"
    bad.write_bytes(b"not a film " * 500)
    cut = tmp_path / "cut.mkv"
    whole = clip(tmp_path / "whole.mkv", frames=30).read_bytes()
    cut.write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "out"
    rc, err = batch(capsys, clips[0], bad, cut, clips[1], "-o", out, *FFV1)
    assert rc == 1
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert f"vidcolor: batch into {out}: 2 of 4 files done, 2 failed" in lines[-3]
    assert lines[-2].startswith(f"vidcolor: failed: {bad}: not a video FFmpeg can read")
    assert lines[-1].startswith(f"vidcolor: failed: {cut}: ") and "truncated" in lines[-1]
    r = rows(out)
    assert r[str(bad.resolve())]["state"] == "failed" and "not a video" in r[str(bad.resolve())]["error"]
    assert r[str(cut.resolve())]["state"] == "failed" and "truncated" in r[str(cut.resolve())]["error"]
    for src in clips[:2]:
        assert r[str(src.resolve())]["state"] == "done"
        assert_colorized(src, out / src.name)
    assert partials(out) == []
    # Failed files are tried again on the next run, the done ones are not.
    before = mtimes([out / "a.mkv", out / "b.mkv"])
    rc, err = batch(capsys, clips[0], bad, cut, clips[1], "-o", out, *FFV1)
    assert rc == 1 and "(2 already before), 2 failed" in err
    assert mtimes([out / "a.mkv", out / "b.mkv"]) == before


def _no_bigger_than(limit: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG, like a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.slow
def test_disk_refusing_writes_keeps_finished_files(clips, tmp_path):
    """The output disk refuses the big file (the kernel's file-size limit, which binds root too):
    one clear line for it, the small files done and kept; the next run does only the big one."""
    big = clip(tmp_path / "big.mkv", frames=40, size=(160, 120))
    out = tmp_path / "out"
    args = [clips[0], big, clips[2], "-o", out, *FFV1]
    proc = subprocess.run([sys.executable, "-m", "vidcolor", "batch", *map(str, args)], cwd=tmp_path,
                          capture_output=True, text=True, preexec_fn=_no_bigger_than(200_000), timeout=600)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"vidcolor: failed: {big}: ") and "File too large" in last
    r = rows(out)
    assert r[str(big.resolve())]["state"] == "failed"
    assert not (out / "big.mkv").exists() and partials(out) == []
    kept = [out / "a.mkv", out / "c.mkv"]
    for src, dst in zip([clips[0], clips[2]], kept):
        assert_colorized(src, dst)
    before = mtimes(kept)
    proc = subprocess.run([sys.executable, "-m", "vidcolor", "batch", *map(str, args)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert mtimes(kept) == before
    assert_manifest_consistent(out, {clips[0]: kept[0], big: out / "big.mkv", clips[2]: kept[1]})
    assert_colorized(big, out / "big.mkv")


@pytest.mark.parametrize("reels", SIZES, indirect=True)
def test_driver_killed_then_resumed(reels, tmp_path):
    """SIGKILL the driver with one file done and one half-written: its worker goes too, and the
    same command finishes the batch without redoing the done file or duplicating anything."""
    longer = reels
    out = tmp_path / "out"
    args = [*longer, "-o", out, "--jobs", "1", *FFV1]
    proc, chunks = _start(args, tmp_path)
    try:
        # b.mkv begun by its worker and marked running by the driver: the driver submits a file
        # before it records it, so a partial alone could be caught before the record.
        _wait(lambda: (out / "a.mkv").exists() and partial_pid(out) and _state(out, "b.mkv") == "running",
              proc, chunks, what="a.mkv done, b.mkv begun")
        worker = partial_pid(out)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # The orphaned worker notices and stops writing.
    _wait(lambda: not alive(worker), timeout=10, what="the orphaned worker to exit")
    states = {pathlib.Path(k).name: r["state"] for k, r in rows(out).items()}
    assert states == by_name(states, a="done", b="running") and len(states) == len(longer)
    before = mtimes([out / "a.mkv"])
    proc = subprocess.run([sys.executable, "-m", "vidcolor", "batch", *map(str, args)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "(1 already before)" in proc.stderr
    assert mtimes([out / "a.mkv"]) == before
    expected = {src: out / src.name for src in longer}
    assert_manifest_consistent(out, expected)
    for src, dst in expected.items():
        assert_colorized(src, dst)


def segment_states(outdir) -> list[str]:
    db = sqlite3.connect(str(pathlib.Path(outdir) / MANIFEST))
    try:
        return [r[0] for r in db.execute("SELECT state FROM segments ORDER BY idx")]
    except sqlite3.OperationalError:  # the driver is still creating the manifest
        return []
    finally:
        db.close()


@pytest.mark.parametrize("frames", [pytest.param(30, id="quick"), pytest.param(60, id="full", marks=pytest.mark.slow)])
def test_segments_resume_after_driver_killed(tmp_path, frames):
    """A film in 3 segments; the driver dies during the second: the run after it colorizes
    only the two segments not done, joins, and the film equals the single-process run."""
    src = clip(tmp_path / "film.mkv", frames=frames, size=(96, 64), gop=frames // 3, audio="aac")
    out = tmp_path / "out"
    args = [src, "-o", out, "--segments", "3", "--jobs", "1", *FFV1]
    proc, chunks = _start(args, tmp_path)
    try:
        _wait(lambda: out.exists() and (out / MANIFEST).exists() and segment_states(out)[:2] == ["done", "running"]
              and partial_pid(out / ".vidcolor-segments"), proc, chunks, what="segment 1 done, 2 begun")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    proc = subprocess.run([sys.executable, "-m", "vidcolor", "batch", *map(str, args)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert f"1 of 1 files done, 0 failed; {frames * 2 // 3} frames" in proc.stderr  # segment 1 was not colorized again
    single = tmp_path / "single.mkv"
    assert main([str(src), "-o", str(single), "--quiet", *FFV1]) == 0
    a, b = probe(single), probe(out / "film.mkv")
    assert b.pts == a.pts and b.audio == a.audio
    assert_same_film(a, b)
    assert_manifest_consistent(out, {src: out / "film.mkv"})
    assert segment_states(out) == [] and not (out / ".vidcolor-segments").exists()


@pytest.mark.parametrize("reels", SIZES, indirect=True)
def test_ctrl_c_keeps_what_finished(reels, tmp_path):
    longer = reels
    out = tmp_path / "out"
    args = [*longer, "-o", out, "--jobs", "1", *FFV1]
    proc, chunks = _start(args, tmp_path)
    try:
        # b.mkv begun by its worker and marked running by the driver: the driver submits a file
        # before it records it, so a partial alone could be caught before the record.
        _wait(lambda: (out / "a.mkv").exists() and partial_pid(out) and _state(out, "b.mkv") == "running",
              proc, chunks, what="a.mkv done, b.mkv begun")
        worker = partial_pid(out)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = b"".join(chunks).decode()
    assert rc == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"vidcolor: interrupted (SIGINT); the finished files are kept in {out}: "
                                            "run the same command again to go on")
    assert not alive(worker) and partials(out) == []
    states = {pathlib.Path(k).name: r["state"] for k, r in rows(out).items()}
    assert states == by_name(states, a="done") and len(states) == len(longer)
    assert_colorized(longer[0], out / "a.mkv")


def kill_a_writer(out, what):
    """A thread that SIGKILLs the first process seen writing an output into ``out``; (thread, [(pid, name)])."""
    killed = []

    def killer():
        pid, name = _wait(lambda: writing(out), timeout=300, what=what)
        os.kill(pid, signal.SIGKILL)
        killed.append((pid, name))

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    return t, killed


@pytest.mark.parametrize("reels", SIZES, indirect=True)
def test_pool_worker_killed_mid_file_is_retried(capsys, reels, tmp_path):
    """The pool breaks when a worker dies; the driver starts a new one and hands the file out again."""
    longer = reels
    out = tmp_path / "out"
    t, killed = kill_a_writer(out, "a worker writing")
    rc, err = batch(capsys, *longer, "-o", out, "--jobs", str(len(longer) - 1), *FFV1)
    t.join(5)
    assert rc == 0, err
    assert killed
    pid, name = killed[0]
    assert not alive(pid)
    assert rows(out)[str((longer[0].parent / name).resolve())]["runs"] == 2
    expected = {src: out / src.name for src in longer}
    assert_manifest_consistent(out, expected)
    for src, dst in expected.items():
        assert_colorized(src, dst)


@pytest.mark.slow
def test_cli_segments_join_equals_single_run(capsys, tmp_path):
    src = clip(tmp_path / "film.mkv", frames=30, gop=8, audio="aac", chapters=True, subtitles=True)
    out = tmp_path / "out"
    rc, err = batch(capsys, src, "-o", out, "--segments", "2", "--jobs", "2", *FFV1)
    assert rc == 0, err
    assert "(2 tasks, 2 local workers)" in err
    single = tmp_path / "single.mkv"
    assert main([str(src), "-o", str(single), "--quiet", *FFV1]) == 0
    a, b = probe(single), probe(out / "film.mkv")
    assert b.pts == a.pts
    assert_same_film(a, b)
    assert (b.audio, b.subtitles, b.chapters, b.container_metadata) == (a.audio, a.subtitles, a.chapters,
                                                                       a.container_metadata)
    assert_manifest_consistent(out, {src: out / "film.mkv"})
    assert not (out / ".vidcolor-segments").exists()


# --------------------------------------------------------------------------
# Ray
# --------------------------------------------------------------------------


@pytest.fixture
def ray_cluster():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'vidcolor[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.parametrize("reels", SIZES, indirect=True)
def test_ray_worker_killed_mid_file_job_finishes(capsys, ray_cluster, reels, tmp_path):
    """A Ray actor's process is SIGKILLed while it writes an output: Ray restarts it and runs the
    call again, the batch finishes, every output is whole and correct, nothing is there twice."""
    out = tmp_path / "out"
    t, killed = kill_a_writer(out, "a Ray worker writing")
    rc, err = batch(capsys, *reels, "-o", out, "--ray", "auto", "--jobs", "2", *FFV1)
    t.join(5)
    assert rc == 0, err
    assert killed
    pid, name = killed[0]
    assert not alive(pid)
    # Ray restarted the actor and ran the call again (max_restarts, max_task_retries):
    # the driver handed the file out once.
    assert rows(out)[str((reels[0].parent / name).resolve())]["runs"] == 1
    assert "2 Ray workers" in err
    expected = {src: out / src.name for src in reels}
    assert_manifest_consistent(out, expected)
    for src, dst in expected.items():
        assert_colorized(src, dst)
    if len(reels) < 3:
        return  # the quick variant stops here: a second Ray start costs half a minute
    # Run again: everything is done already.
    before = mtimes(expected.values())
    rc, err = batch(capsys, *reels, "-o", out, "--ray", "auto", "--jobs", "2", *FFV1)
    assert rc == 0 and "(3 already before)" in err
    assert mtimes(expected.values()) == before


# --------------------------------------------------------------------------
# inputs are never outputs (issue items 1 and 6)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [[], ["--overwrite"]], ids=["plain", "overwrite"])
def test_an_input_inside_outdir_is_refused_whatever_the_flags(capsys, tmp_path, flags):
    """`batch in out/sub/x.mkv -o out`: out/sub/x.mkv is where in/sub/x.mkv's output goes.
    It is refused with or without --overwrite, never overwritten, and not with advice to pass it."""
    clip(tmp_path / "in" / "sub" / "x.mkv")
    mine = clip(tmp_path / "out" / "sub" / "x.mkv", frames=6)
    before = sha256(mine)
    rc, err = batch(capsys, tmp_path / "in", mine, "-o", tmp_path / "out", *flags, *FFV1)
    lines = err.strip().splitlines()
    assert rc == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert str(mine) in lines[0] and "inside the output folder" in lines[0] and "--overwrite" not in lines[0]
    assert sha256(mine) == before and not (tmp_path / "out" / MANIFEST).exists()


def test_folders_globs_and_files_inside_outdir_are_treated_alike(tmp_path):
    a = clip(tmp_path / "in" / "a.mkv")
    clip(tmp_path / "in" / "colour" / "a.mkv")  # an earlier run's output
    old = clip(tmp_path / "in" / "colour" / "sub" / "b.mkv")
    out = tmp_path / "in" / "colour"
    assert [i.src for i in collect_inputs([tmp_path / "in"], out)] == [a]
    assert [i.src for i in collect_inputs([a, str(tmp_path / "in" / "**" / "*.mkv")], out)] == [a]
    with pytest.raises(OutputError, match="inside the output folder"):
        collect_inputs([a, old], out)


def test_a_hard_link_to_another_items_output_is_refused(tmp_path):
    a = clip(tmp_path / "in" / "a.mkv")
    b = clip(tmp_path / "other" / "b.mkv")
    (tmp_path / "out").mkdir()
    os.link(b, tmp_path / "out" / "a.mkv")  # b is also out/a.mkv, a's output
    with pytest.raises(OutputError, match="would be the input"):
        collect_inputs([a, b], tmp_path / "out")


@pytest.mark.parametrize("spelling", ["dotdot", "symlink"])
def test_outdir_spelled_through_dotdot_or_a_symlink_is_not_read_back(tmp_path, spelling):
    """-o in/x/../colour or -o link/colour (link -> in): earlier outputs are not inputs again."""
    a = clip(tmp_path / "in" / "a.mkv")
    (tmp_path / "in" / "x").mkdir()
    clip(tmp_path / "in" / "colour" / "a.mkv")
    clip(tmp_path / "in" / "colour" / "colour" / "a.mkv")
    if spelling == "dotdot":
        out = tmp_path / "in" / "x" / ".." / "colour"
    else:
        (tmp_path / "link").symlink_to(tmp_path / "in", target_is_directory=True)
        out = tmp_path / "link" / "colour"
    for inputs in ([tmp_path / "in"], [str(tmp_path / "in" / "**" / "*.mkv")]):
        assert [(i.src, i.dst) for i in collect_inputs(inputs, out)] == [(a, out.absolute() / "a.mkv")]


def test_batch_records_a_damaged_input_and_strict_fails_it(capsys, clips, tmp_path):
    """A reel damaged in the middle is done with its warning in the manifest and the summary;
    with --strict it fails. The clean file is done either way."""
    from conftest import damaged_reel, tolerant_decode

    bad = damaged_reel(tmp_path, ".mkv")
    n = len(tolerant_decode(bad))
    out = tmp_path / "out"
    rc, err = batch(capsys, clips[1], bad, "-o", out, *FFV1)
    assert rc == 0, err
    row = rows(out)[str(bad.resolve())]
    assert row["state"] == "done" and row["frames"] == n and "no video from 2.00 s to 2.50 s" in row["warning"]
    assert f"vidcolor: warning: {bad}: the video is damaged" in err and len(probe(out / bad.name).pts) == n
    rc, err = batch(capsys, clips[1], bad, "-o", tmp_path / "strict", "--strict", *FFV1)
    assert rc == 1 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"vidcolor: failed: {bad}: the video is damaged")
    assert rows(tmp_path / "strict")[str(bad.resolve())]["state"] == "failed"
    assert rows(tmp_path / "strict")[str(clips[1].resolve())]["state"] == "done"


# --------------------------------------------------------------------------
# a damaged, locked or full manifest; misleading texts; a second Ctrl-C
# --------------------------------------------------------------------------


def _one_line(rc, err) -> str:
    lines = err.strip().splitlines()
    assert rc == 1 and len(lines) == 1 and lines[0].startswith("vidcolor: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("case", ["settings-not-json", "settings-a-json-list", "garbage-page"])
def test_a_damaged_manifest_is_one_line(capsys, tmp_path, case):
    src = clip(tmp_path / "in" / "a.mkv")
    out = tmp_path / "out"
    out.mkdir()
    m = Manifest(out / MANIFEST)
    with m.tx() as db:
        for i in range(200):  # pages enough for garbage to land in one
            db.execute("INSERT INTO files (input, output, state, updated) VALUES (?, ?, 'pending', 0)",
                       (f"/x/{i:04d}" * 20, f"/y/{i:04d}" * 20))
        db.execute("INSERT OR REPLACE INTO meta VALUES ('settings', ?)",
                   ("{not json" if case == "settings-not-json" else "[1, 2]" if case == "settings-a-json-list" else "{}",))
    m.close()
    if case == "garbage-page":
        data = bytearray((out / MANIFEST).read_bytes())
        data[4096 * 2:4096 * 3] = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
        (out / MANIFEST).write_bytes(bytes(data))
    rc, err = batch(capsys, src, "-o", out, *FFV1)
    line = _one_line(rc, err)
    assert str(out / MANIFEST) in line and "remove it" in line


def test_a_locked_manifest_is_not_called_damaged(capsys, tmp_path, monkeypatch):
    src = clip(tmp_path / "in" / "a.mkv")
    out = tmp_path / "out"
    out.mkdir()
    Manifest(out / MANIFEST).close()
    monkeypatch.setattr(Manifest, "LOCK_WAIT", 0.2)
    holder = sqlite3.connect(str(out / MANIFEST), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another program (sqlite3 shell, a backup) holds it
    try:
        rc, err = batch(capsys, src, "-o", out, *FFV1)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    line = _one_line(rc, err)
    assert "in use by another process" in line and "remove it" not in line


def test_a_full_manifest_says_full_not_cannot_rollback(tmp_path):
    m = Manifest(tmp_path / MANIFEST)
    pages = m.db.execute("PRAGMA page_count").fetchone()[0]
    m.db.execute(f"PRAGMA max_page_count = {pages + 2}")  # SQLite's own size limit: SQLITE_FULL, as a full disk
    with pytest.raises(OutputError, match="database or disk is full"):
        with m.tx() as db:
            db.execute("INSERT INTO meta VALUES ('big', ?)", ("x" * 1_000_000,))
    m.close()


def test_outdir_that_is_the_input_folder_is_named_as_the_reason(capsys, tmp_path):
    folder = tmp_path / "reels"
    clip(folder / "a.mkv")
    rc, err = batch(capsys, folder, "-o", folder, *FFV1)
    line = _one_line(rc, err)
    assert "no video files" not in line and f"inside the output folder {folder}" in line


@pytest.mark.parametrize("reels", ["quick"], indirect=True)
def test_two_ctrl_c_still_stop_the_workers_and_keep_what_finished(reels, tmp_path):
    """The second Ctrl-C lands in the pool's cleanup of the first: it must not cut it short."""
    out = tmp_path / "out"
    proc, chunks = _start([*reels, "-o", out, "--jobs", "1", *FFV1], tmp_path)
    try:
        _wait(lambda: (out / "a.mkv").exists() and partial_pid(out) and _state(out, "b.mkv") == "running",
              proc, chunks, what="a.mkv done, b.mkv begun")
        worker = partial_pid(out)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.03)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = b"".join(chunks).decode()
    assert rc == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"vidcolor: interrupted (SIGINT); the finished files are kept in {out}: "
                                            "run the same command again to go on")
    assert not alive(worker) and partials(out) == []
    states = {pathlib.Path(k).name: r["state"] for k, r in rows(out).items()}
    assert states == by_name(states, a="done") and len(states) == len(reels)
