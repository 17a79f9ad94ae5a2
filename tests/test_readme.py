"""The README's commands, run as a user runs them: each line exactly as written, through bash, in
the user's own folder (a fresh temporary one per line) that holds small real inputs made here
with PyAV, with the installed `vidcolor` script first on PATH.

Every line of every ```sh block of README.md is either run here or listed in ELSEWHERE with
the test (or CI step) that covers it and why it is not run here; a new line in neither fails
`test_every_readme_command_is_run_or_listed`. The ```python block (the VapourSynth snippet) is
run with `python -c` from a folder outside the checkout.

The vidcolor processes run two at a time (the machine this was written on has 2 cores), all
started by one module fixture; each test then checks one line's promised output.
"""

from __future__ import annotations

import concurrent.futures
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import av
import cv2
import numpy as np
import pytest

from conftest import make_video, probe, texture
from test_y4m import read_y4m

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BIN = pathlib.Path(sys.executable).parent  # the virtual environment's bin: its `vidcolor` script
FFMPEG = shutil.which("ffmpeg")
TIMEOUT = 1200  # per line; a 2-core machine shared with other test runs is slow

# ---------------------------------------------------------------------------------------------
# the README, read as a user reads it
# ---------------------------------------------------------------------------------------------


def code_blocks(lang: str) -> list[tuple[str, list[str]]]:
    """(the `## ` section it is in, its lines) for each ```lang block of README.md."""
    blocks, section, inside = [], "", None
    for line in README.read_text().splitlines():
        if inside is None and line.startswith("## "):
            section = line[3:].strip()
        elif inside is None and line.strip() == f"```{lang}":
            inside = []
        elif inside is not None and line.strip() == "```":
            blocks.append((section, inside))
            inside = None
        elif inside is not None:
            inside.append(line)
    return blocks


def command(line: str) -> str:
    """A README line without its trailing `# comment`."""
    return re.sub(r"\s+#\s.*$", "", line).strip()


def readme_lines() -> dict[str, tuple[str, str]]:
    """command -> (the whole line as written, its section), for every line of every ```sh block."""
    out = {}
    for section, lines in code_blocks("sh"):
        for line in lines:
            if line.strip():
                out[command(line)] = (line, section)
    return out


# Run here: each "Using it" line, and the YUV4MPEG2 pipe. The value is the test that checks it.
RUN = {
    "vidcolor film.mp4": "test_film_mp4",
    "vidcolor film.mkv -o out.mkv --codec ffv1": "test_film_mkv_ffv1",
    "vidcolor reel.mov --start 60 --duration 10 -o part.mov": "test_reel_part",
    "vidcolor reel.mov --preview 6": "test_reel_preview",
    "vidcolor reel.mov --compare": "test_reel_compare",
    "vidcolor reel.mov --stabilize -o steady.mov": "test_reel_stabilize",
    "vidcolor reel.mov --model temporal_unet -o video.mov": "test_reel_temporal_unet",
    "vidcolor photo.jpg": "test_photo",
    "vidcolor models": "test_models",
    "ffmpeg -i in.mkv -f yuv4mpegpipe - | vidcolor - -o - | ffmpeg -i - -i in.mkv -map 0:v -map 1:a? -c:a copy out.mkv":
        "test_y4m_pipe",
}

# Not run here: why, and what runs it instead.
ELSEWHERE = {
    # Install
    "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/vidcolor film.mp4":
        "installs from the network; .ci/run installs the same way in a fresh venv, and `vidcolor film.mp4` "
        "is run here (test_film_mp4)",
    "python3 -m venv .venv && .venv/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu "
    "&& .venv/bin/pip install .":
        "installs from the network (the CPU-only torch wheel); the rest is .ci/run's install",
    # Run the tests
    ".venv/bin/pip install '.[test]' && .venv/bin/pytest": "this is what .ci/run runs (in its own venv)",
    '.venv/bin/pytest -m "not slow"': "the same suite less the slow tests; .ci/run runs all of it",
    # In VapourSynth
    "vspipe -c y4m -a src=film.mkv plugins/examples/colorize_film.vpy - | ffmpeg -i - -c:v libx264 -crf 18 "
    "film.color.mkv":
        "tests/test_vapoursynth.py::test_examples runs plugins/examples/colorize_film.vpy through the real vspipe "
        "from the user's folder with a relative -a src= (and restore_colorize.vpy, compare_models.vpy)",
    # Official checkpoints: files the user owns, not ours to ship
    "vidcolor film.mp4 --model ddcolor-large --weights ~/ddcolor_modelscope.pth":
        "needs the user's official checkpoint; tests/test_official.py and tests/test_ddcolor.py load synthetic "
        "weights in the official layout",
    "vidcolor film.mp4 --model ddcolor-tiny --weights ~/ddcolor_paper_tiny.pth":
        "needs the user's official checkpoint; tests/test_official.py, tests/test_ddcolor.py",
    "vidcolor film.mp4 --model eccv16 --weights ~/colorization_release_v2-9b330a0b.pth":
        "needs the user's official checkpoint; tests/test_official.py",
    "vidcolor film.mp4 --model siggraph17 --weights ~/siggraph17-df00044c.pth --hints hints.json":
        "needs the user's official checkpoint; tests/test_hints.py::test_cli_hints runs --hints with synthetic "
        "siggraph17 weights",
    "vidcolor convert-weights ~/ddcolor_modelscope.pth ddcolor_large.safetensors --model ddcolor-large":
        "needs the user's official checkpoint; tests/test_ddcolor.py::test_convert_weights_*",
    # Batch: the user's archive paths and a Ray cluster
    "vidcolor batch /archive/reels/ '/archive/extra/*.mkv' -o /archive/colour --jobs 2":
        "absolute paths of the user's archive; tests/test_batch.py runs batch with folders, globs and --jobs "
        "(test_pool_batch_all_done_then_resume_skips)",
    "vidcolor batch /archive/reels/ -o /archive/colour --segments 8 --ray auto":
        "needs a Ray cluster and the user's archive; tests/test_batch.py runs --segments and --ray on a local "
        "Ray cluster (test_ray_worker_killed_mid_file_job_finishes)",
    # Training and evaluation: hours of CPU, and data fetched from Debian/PyPI
    "pip install '.[train]'": "installs from the network",
    "vidcolor data data/": "downloads packages; .ci/run runs `python -m vidcolor data data`, tests/test_data.py "
                           "the extraction",
    "scripts/train_default.sh": "hours of training; tests/test_train.py trains a few steps",
    "vidcolor train data/train --model zhang2016 --out runs/zhang2016 --steps 6000 --batch 32 --crop 112":
        "hours of training on data/; tests/test_train.py::test_train_checkpoints_and_resumes",
    "vidcolor train data/train --model zhang2016 --out runs/zhang2016 --steps 6000 --resume":
        "needs the run above; tests/test_train.py::test_train_checkpoints_and_resumes",
    "vidcolor train my_colour_clips/ --init shipped --lr 0.0003 --steps 1000 --out runs/mine":
        "the user's clips and a long run; tests/test_train.py::test_init_starts_from_the_shipped_weights",
    "vidcolor eval data/eval/*.avi data/eval/*.mp4 --model zhang2016 --out eval/":
        "needs data/ (vidcolor data); tests/test_metrics.py::test_evaluate_video",
    "vidcolor eval data/eval/bikes.mp4 --model zhang2016 --stabilize --degrade --out eval/":
        "needs data/ (vidcolor data); tests/test_metrics.py::test_eval_cli_scores_chosen_damage_kinds",
}


def test_every_readme_command_is_run_or_listed():
    lines = readme_lines()
    unaccounted = [lines[c][0] for c in lines if c not in RUN and c not in ELSEWHERE]
    assert not unaccounted, f"README lines neither run by tests/test_readme.py nor listed in ELSEWHERE: {unaccounted}"
    stale = [c for c in list(RUN) + list(ELSEWHERE) if c not in lines]
    assert not stale, f"tests/test_readme.py names lines the README no longer has: {stale}"
    # all of "Using it" is run here
    assert {c for c, (_, s) in lines.items() if s == "Using it"} == {c for c in RUN if c.startswith("vidcolor ")}


def test_every_test_the_docs_name_exists():
    """`file.py::test_name` (or `test_prefix_*`) in the README, docs/ and ELSEWHERE names a test that is there."""
    texts = [README.read_text(), *(p.read_text() for p in (ROOT / "docs").glob("*.md")), *ELSEWHERE.values()]
    named = {m.groups() for t in texts for m in re.finditer(r"(test_\w+)\.py::(test_\w+\*?)", t)}
    assert named, "no test named anywhere: the pattern is wrong"

    def defined(file: str, name: str) -> bool:
        src = ROOT / "tests" / f"{file}.py"
        end = "" if name.endswith("*") else r"\("
        return src.exists() and re.search(rf"^def {name.rstrip('*')}{end}", src.read_text(), re.M) is not None

    missing = [f"{f}.py::{name}" for f, name in sorted(named) if not defined(f, name)]
    assert not missing, f"the docs name tests that are not there: {missing}"


# ---------------------------------------------------------------------------------------------
# the user's files, made with PyAV
# ---------------------------------------------------------------------------------------------

SIZE = (64, 48)
REEL_RATE = 1  # reel.mov: 72 s at 1 fps, so `--start 60 --duration 10` is the frames 60..69


def colour_reel(path: pathlib.Path, frames: int = 12) -> pathlib.Path:
    """A colour film (warm tint on the moving texture), 1 fps H.264 in MOV."""
    w, h = SIZE
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=1)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            y = texture(i, h, w)
            rgb = np.stack([y, 0.75 * y, 0.45 * y], axis=-1)
            frame = av.VideoFrame.from_ndarray((rgb * 255).round().astype(np.uint8), format="rgb24")
            frame.pts = i
            out.mux(s.encode(frame))
        out.mux(s.encode(None))
    return path


def photo(path: pathlib.Path) -> pathlib.Path:
    w, h = 160, 120
    gray = (texture(3, h, w) * 255).round().astype(np.uint8)
    assert cv2.imwrite(str(path), cv2.merge([gray, gray, gray]), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return path


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("made")
    make_video(root / "film.mp4", codec="libx264", size=SIZE, frames=12, audio="aac")
    make_video(root / "film.mkv", codec="ffv1", size=SIZE, frames=12, audio="aac")
    make_video(root / "reel.mov", codec="libx264", size=SIZE, frames=72, rate=REEL_RATE, audio="aac")
    make_video(root / "in.mkv", codec="ffv1", size=SIZE, frames=12, audio="aac")
    photo(root / "photo.jpg")
    (root / "colour").mkdir()
    colour_reel(root / "colour" / "reel.mov")
    return root


# (name of the run, README command, the inputs the user has in the folder)
RUNS = [
    ("stabilize", "vidcolor reel.mov --stabilize -o steady.mov", ["reel.mov"]),
    ("temporal", "vidcolor reel.mov --model temporal_unet -o video.mov", ["reel.mov"]),
    ("film_mp4", "vidcolor film.mp4", ["film.mp4"]),
    ("film_mkv", "vidcolor film.mkv -o out.mkv --codec ffv1", ["film.mkv"]),
    ("part", "vidcolor reel.mov --start 60 --duration 10 -o part.mov", ["reel.mov"]),
    ("preview", "vidcolor reel.mov --preview 6", ["reel.mov"]),
    ("compare", "vidcolor reel.mov --compare", ["colour/reel.mov"]),  # a colour reel: all three panels
    ("photo", "vidcolor photo.jpg", ["photo.jpg"]),
    ("models", "vidcolor models", []),
    ("pipe", next(c for c in RUN if c.startswith("ffmpeg ")), ["in.mkv"]),
    ("snippet", None, ["film.mkv"]),
]

# The snippet as written, then lines that look at what it made (it ends at clip.set_output()).
SNIPPET_CHECK = """
import numpy as _np
_f = clip.get_frame(0)
_u = _np.asarray(_f[1]).astype(int)
print("CHECK", clip.num_frames, clip.format.name, _f.props["vidcolor_Model"], float(_np.abs(_u - 128).mean()))
"""


def snippet() -> str:
    blocks = [lines for section, lines in code_blocks("python") if "VideoSource" in "\n".join(lines)]
    assert len(blocks) == 1, "the README's VapourSynth snippet"
    return "\n".join(blocks[0])


class Ran:
    def __init__(self, folder: pathlib.Path, proc: subprocess.CompletedProcess, line: str):
        self.folder, self.proc, self.line = folder, proc, line

    def ok(self) -> Ran:
        assert self.proc.returncode == 0, f"{self.line!r} exited {self.proc.returncode}:\n{self.proc.stderr[-3000:]}"
        return self

    @property
    def err(self) -> str:
        return self.proc.stderr


def _run(name: str, cmd: str | None, inputs: list[str], made: pathlib.Path, root: pathlib.Path) -> Ran:
    folder = root / name
    folder.mkdir()
    for rel in inputs:
        shutil.copy(made / rel, folder / pathlib.Path(rel).name)
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", PWD=str(folder))
    if cmd is None:  # the Python snippet, from this folder (outside the checkout)
        line = snippet()
        args = [str(BIN / "python"), "-c", line + "\n" + SNIPPET_CHECK]
    else:
        line = readme_lines()[cmd][0]  # the whole line, comment included, exactly as the README has it
        args = ["bash", "-o", "pipefail", "-c", line]
    proc = subprocess.run(args, cwd=folder, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=TIMEOUT)
    return Ran(folder, proc, line)


# the runs each test looks at
NEEDS = {"test_film_mp4": {"film_mp4"}, "test_film_mkv_ffv1": {"film_mkv"}, "test_reel_part": {"part"},
         "test_reel_whole_runs_agree_on_luma": {"stabilize", "temporal"}, "test_reel_stabilize": {"stabilize", "part"},
         "test_reel_temporal_unet": {"temporal"}, "test_reel_preview": {"preview"}, "test_reel_compare": {"compare"},
         "test_photo": {"photo"}, "test_models": {"models"}, "test_y4m_pipe": {"pipe"},
         "test_vapoursynth_snippet_outside_the_checkout": {"snippet"}}


@pytest.fixture(scope="module")
def ran(request, made, tmp_path_factory) -> dict[str, Ran]:
    """Runs the lines the selected tests look at (all of them in a plain `pytest`), two at a time."""
    assert shutil.which("vidcolor", path=str(BIN)), f"no vidcolor script in {BIN}: pip install -e '.[test]'"
    root = tmp_path_factory.mktemp("users")
    selected = {item.originalname for item in request.session.items if item.module is request.module}
    wanted = set().union(*(NEEDS[name] for name in selected if name in NEEDS))
    todo = [r for r in RUNS if r[0] in wanted and (r[0] != "pipe" or FFMPEG)]
    if not hasattr(_vapoursynth_core(), "bs"):
        todo = [r for r in todo if r[0] != "snippet"]
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        futures = {name: pool.submit(_run, name, cmd, inputs, made, root) for name, cmd, inputs in todo}
        return {name: f.result() for name, f in futures.items()}


def _vapoursynth_core():
    try:
        import vapoursynth
    except ImportError:
        return None
    return vapoursynth.core


# ---------------------------------------------------------------------------------------------
# what each line promises
# ---------------------------------------------------------------------------------------------


def chroma(p) -> float:
    """Mean distance of the chroma planes from neutral, over all frames (8-bit)."""
    return float(np.mean([np.abs(f[k].astype(int) - 128).mean() for f in p.planes for k in (1, 2)]))


def luma_diff(a, b) -> float:
    return float(np.mean([np.abs(fa[0].astype(int) - fb[0].astype(int)).mean() for fa, fb in zip(a.planes, b.planes)]))


def audio_bytes(p) -> bytes:
    return b"".join(x[2] for x in p.audio)


def test_film_mp4(ran, made):
    r = ran["film_mp4"].ok()
    src, dst = probe(made / "film.mp4"), probe(r.folder / "film.colorized.mp4")
    assert "vidcolor: model lite_unet" in r.err  # the line saying what ran
    assert len(dst.pts) == len(src.pts) == 12 and dst.times == pytest.approx(src.times)
    assert luma_diff(src, dst) < 2.5  # the input's luma, through x264 a second time (64x48: few bits a frame)
    assert chroma(src) < 0.5 < chroma(dst)
    assert audio_bytes(dst) == audio_bytes(src) != b""  # audio copied, not re-encoded
    assert sorted(p.name for p in r.folder.iterdir()) == ["film.colorized.mp4", "film.mp4"]  # no partial left


def test_film_mkv_ffv1(ran, made):
    r = ran["film_mkv"].ok()
    src, dst = probe(made / "film.mkv"), probe(r.folder / "out.mkv")
    assert dst.codec == "ffv1" and dst.pts == src.pts
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(src.planes, dst.planes))  # lossless: the same luma
    assert chroma(dst) > 0.5
    assert audio_bytes(dst) == audio_bytes(src) != b""


def test_reel_part(ran, made):
    r = ran["part"].ok()
    src, dst = probe(made / "reel.mov"), probe(r.folder / "part.mov")
    assert len(src.pts) == 72 and len(dst.pts) == 10 * REEL_RATE
    # each output frame is the input's frame 60, 61, ... (the nearest input luma)
    nearest = [int(np.argmin([np.abs(f[0].astype(int) - g[0].astype(int)).mean() for g in src.planes]))
               for f in dst.planes]
    assert nearest == list(range(60 * REEL_RATE, 70 * REEL_RATE))
    assert chroma(dst) > 0.5
    assert dst.audio, "the part keeps its audio"


def test_reel_whole_runs_agree_on_luma(ran, made):
    src = probe(made / "reel.mov")
    for name, out in (("stabilize", "steady.mov"), ("temporal", "video.mov")):
        dst = probe(ran[name].ok().folder / out)
        assert len(dst.pts) == len(src.pts) == 72
        assert luma_diff(src, dst) < 1.5, name
        assert chroma(dst) > 0.5, name
        assert audio_bytes(dst) == audio_bytes(src) != b"", name


def frame_to_frame_chroma(p, frames) -> float:
    return float(np.mean([np.abs(p.planes[i + 1][k].astype(int) - p.planes[i][k].astype(int)).mean()
                          for i in frames[:-1] for k in (1, 2)]))


def test_reel_stabilize(ran, made):
    r = ran["stabilize"].ok()
    steady, plain = probe(r.folder / "steady.mov"), probe(ran["part"].ok().folder / "part.mov")
    window = list(range(60 * REEL_RATE, 70 * REEL_RATE))
    # the same frames 60..69 colorized without --stabilize (the --start run): the colour changes less
    steady_step = frame_to_frame_chroma(steady, window)
    plain_step = frame_to_frame_chroma(plain, list(range(len(window))))
    assert steady_step < plain_step, (steady_step, plain_step)


def test_reel_temporal_unet(ran):
    r = ran["temporal"].ok()
    assert "vidcolor: model temporal_unet" in r.err


def panels(png: pathlib.Path, rows: int, columns: int) -> list[list[np.ndarray]]:
    """The sheet cut into its rows x columns panels (RGB), checking its size: 480 wide, the film's aspect."""
    sheet = cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB)
    w, h = 480, round(480 * SIZE[1] / SIZE[0])
    assert sheet.shape == (rows * h, columns * w, 3)
    return [[sheet[i * h:(i + 1) * h, j * w:(j + 1) * w] for j in range(columns)] for i in range(rows)]


def labelled(panel: np.ndarray) -> bool:
    """White text on a black box in the top left corner."""
    box = panel[:14, :120].astype(int)
    return bool((box[:3, :3] == 0).all() and (box.min(axis=-1) > 200).sum() > 20)


def is_gray(panel: np.ndarray) -> bool:
    body = panel[40:].astype(int)  # below the label
    return bool(np.abs(body - body[..., :1]).max() <= 1)


def test_reel_preview(ran):
    r = ran["preview"].ok()
    sheet = panels(r.folder / "reel.preview.png", 6, 2)  # 6 frames: grayscale beside colour
    for gray, colour in sheet:
        assert labelled(gray) and labelled(colour)
        assert is_gray(gray) and not is_gray(colour)
        g = cv2.cvtColor(colour, cv2.COLOR_RGB2GRAY).astype(int)[40:]
        assert np.abs(g - gray[40:, :, 0].astype(int)).mean() < 3  # the colour keeps the frame's lightness
    assert "(6 frames)" in r.err


def test_reel_compare(ran):
    """On a colour film: gray | result | original. (On a gray film the original is left out, as the README
    says: tests/test_usability.py::test_preview_is_labelled_and_compare_adds_the_colour_original.)"""
    r = ran["compare"].ok()
    for gray, result, original in panels(r.folder / "reel.compare.png", 6, 3):
        assert all(labelled(p) for p in (gray, result, original))
        assert is_gray(gray) and not is_gray(result) and not is_gray(original)
        body = original[40:].astype(int)
        assert (body[..., 0] - body[..., 2]).mean() > 20  # the film's own warm tint


def test_photo(ran, made):
    r = ran["photo"].ok()
    src = cv2.imread(str(made / "photo.jpg"))
    dst = cv2.imread(str(r.folder / "photo.colorized.png"))
    assert dst.shape == src.shape
    ys = cv2.cvtColor(src, cv2.COLOR_BGR2YCrCb).astype(int)
    yd = cv2.cvtColor(dst, cv2.COLOR_BGR2YCrCb).astype(int)
    assert np.abs(yd[..., 0] - ys[..., 0]).mean() < 1.5  # the photo's own lightness
    assert np.abs(yd[..., 1:] - 128).mean() > 0.5


def test_models(ran):
    r = ran["models"].ok()
    table = README.read_text().split("<!-- models:start -->")[1].split("<!-- models:end -->")[0]
    names = re.findall(r"^\| `([^`]+)`( \(default\))?", table, re.M)
    listed = {line.split()[0]: line for line in r.proc.stdout.splitlines()[1:] if line.strip()}
    assert set(listed) == {n for n, _ in names} and len(names) > 10
    (default,) = [n for n, d in names if d]
    assert [n for n, line in listed.items() if "(default)" in line] == [default]


def luma_to_fed(p, fed) -> float:
    """Mean luma distance of a file's frames from the y4m frames fed to the pipe."""
    return float(np.mean([np.abs(a[0].astype(int) - y[0].astype(int)).mean() for a, (_, y) in zip(p.planes, fed)]))


@pytest.mark.skipif(FFMPEG is None, reason="the ffmpeg binary is not installed (.ci/run installs it)")
def test_y4m_pipe(ran, made):
    r = ran["pipe"].ok()
    # what the first ffmpeg of the line feeds vidcolor (FFmpeg's constant-rate y4m may repeat a frame)
    y4m = subprocess.run([FFMPEG, "-v", "error", "-i", str(made / "in.mkv"), "-f", "yuv4mpegpipe", "-"],
                         capture_output=True, check=True, stdin=subprocess.DEVNULL).stdout
    _, fed = read_y4m(y4m)
    src, dst = probe(made / "in.mkv"), probe(r.folder / "out.mkv")
    assert len(dst.pts) == len(fed) >= len(src.pts) == 12
    assert f"wrote {len(fed)} frames of YUV4MPEG2" in r.err
    # the same y4m straight into the same ffmpeg encoder: the luma loss of the last stage alone
    ref = r.folder.parent / "pipe-reference.mkv"
    subprocess.run([FFMPEG, "-v", "error", "-f", "yuv4mpegpipe", "-i", "-", str(ref)], input=y4m, check=True)
    assert luma_to_fed(dst, fed) < luma_to_fed(probe(ref), fed) + 1.0  # vidcolor passed the luma through
    assert chroma(dst) > 0.5
    assert audio_bytes(dst) == audio_bytes(src) != b""  # -c:a copy


def test_vapoursynth_snippet_outside_the_checkout(ran):
    """The README's Python snippet, as written, from a folder outside the checkout holding film.mkv."""
    if "snippet" not in ran:
        pytest.skip("vapoursynth-bestsource is not installed (pip install '.[test]')")
    r = ran["snippet"]
    assert not r.folder.resolve().is_relative_to(ROOT)
    r.ok()
    check = [line.split() for line in r.proc.stdout.splitlines() if line.startswith("CHECK ")]
    assert len(check) == 1, r.proc.stdout
    _, frames, fmt, model, u = check[0]
    assert int(frames) == 12 and fmt.startswith("YUV") and float(u) > 0.5
    assert "lite_unet" in model


def test_every_run_is_looked_at():
    tests = {name for name in globals() if name.startswith("test_")}
    assert set(NEEDS) == tests - {"test_every_readme_command_is_run_or_listed", "test_every_run_is_looked_at",
                                  "test_usage_lines_run_one_after_another_write_distinct_files",
                                  "test_every_test_the_docs_name_exists"}
    assert set().union(*NEEDS.values()) == {name for name, _, _ in RUNS}


def test_usage_lines_run_one_after_another_write_distinct_files():
    """A user who runs the "Using it" lines in turn in one folder never meets "exists, pass -y":
    each line's output (its -o, or the name vidcolor picks) is its own and none is an input."""
    from vidcolor.cli import colorize_parser, default_output
    from vidcolor.io.media import is_image

    written = {}
    for cmd, (line, section) in readme_lines().items():
        if section != "Using it" or not cmd.startswith("vidcolor ") or cmd == "vidcolor models":
            continue
        args = colorize_parser().parse_args(shlex.split(cmd)[1:])
        src = pathlib.Path(args.input)
        preview = args.preview is not None or args.compare
        dst = pathlib.Path(args.output) if args.output else default_output(src, preview, is_image(src), args.compare)
        assert dst not in written and dst.name not in {"film.mp4", "film.mkv", "reel.mov", "photo.jpg"}, line
        written[dst] = line
    assert len(written) == 8
