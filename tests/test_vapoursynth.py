"""The VapourSynth filter with the real VapourSynth core and the real vspipe (no mocks).

vspipe finds its Python through `vapoursynth config`; the `vspipe_env` fixture
writes that configuration into a private XDG_CONFIG_HOME, so the tests neither
need nor touch the user's own.
"""

from __future__ import annotations

import json
import os
import pathlib
import random
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

vs = pytest.importorskip("vapoursynth")

from conftest import make_video, probe, texture  # noqa: E402
from test_y4m import read_y4m  # noqa: E402
from vidcolor.models import DEFAULT_MODEL  # noqa: E402
from vidcolor.plugins.vs import MODEL_PROP, colorize  # noqa: E402

core = vs.core
W, H = 64, 48
EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "plugins" / "examples"


def vspipe_command() -> list[str]:
    exe = pathlib.Path(sys.executable).with_name("vspipe")
    return [str(exe)] if exe.exists() else [shutil.which("vspipe") or "vspipe"]


@pytest.fixture(scope="session")
def vspipe_env(tmp_path_factory):
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path_factory.mktemp("xdg")))
    subprocess.run([sys.executable, "-m", "vapoursynth", "config"], env=env, check=True, capture_output=True)
    return env


def vspipe(env, script, *args) -> tuple[bytes, str]:
    out = subprocess.run(vspipe_command() + list(args) + [str(script), "-"], env=env, capture_output=True)
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout, out.stderr.decode()


@pytest.fixture(scope="module")
def needs_bs():
    if not hasattr(core, "bs"):
        pytest.skip("vapoursynth-bestsource is not installed (pip install '.[test]')")


# --------------------------------------------------------------------------
# clips
# --------------------------------------------------------------------------


def textured(length=4, w=W, h=H) -> vs.VideoNode:
    """GRAYS frames of conftest's moving texture."""
    base = core.std.BlankClip(width=w, height=h, format=vs.GRAYS, length=length, fpsnum=24, fpsden=1)

    def fill(n, f):  # ModifyFrame passes n and f by keyword
        g = f.copy()
        np.copyto(np.asarray(g[0]), texture(n, h, w).astype(np.float32))
        return g

    return core.std.ModifyFrame(base, base, fill)


def in_format(fmt) -> vs.VideoNode:
    return core.resize.Bicubic(textured(), format=fmt)


def planes(frame) -> list[np.ndarray]:
    return [np.asarray(frame[p]).copy() for p in range(frame.format.num_planes)]


def unit(a: np.ndarray, fmt: vs.VideoFormat, full: bool = True) -> np.ndarray:
    """Samples as 0..1 (luma/RGB) floats."""
    a = a.astype(np.float64)
    if fmt.sample_type == vs.FLOAT:
        return a
    bits = fmt.bits_per_sample
    if full:
        return a / ((1 << bits) - 1)
    s = 1 << (bits - 8)
    return (a - 16 * s) / (219 * s)


def chroma_offset(c: np.ndarray, fmt: vs.VideoFormat) -> float:
    """Mean distance of Cb/Cr from neutral, in 8-bit steps."""
    if fmt.sample_type == vs.FLOAT:
        return float(np.abs(c.astype(np.float64)).mean() * 255)
    s = 1 << (fmt.bits_per_sample - 8)
    return float(np.abs(c.astype(np.float64) - 128 * s).mean() / s)


def rgb_luma(p, fmt) -> np.ndarray:
    r, g, b = (unit(x, fmt) for x in p)
    return 0.299 * r + 0.587 * g + 0.114 * b  # BT.601: 48 lines, untagged


# --------------------------------------------------------------------------
# the filter through vspipe on a real encoded file
# --------------------------------------------------------------------------


def test_vspipe_bestsource(tmp_path, vspipe_env, needs_bs):
    src = make_video(tmp_path / "film.mp4", codec="libx264", pix_fmt="yuv420p", size=(96, 64), frames=20, rate=24)
    script = tmp_path / "film.vpy"
    script.write_text(textwrap.dedent(f"""
        from vapoursynth import core
        from vidcolor.plugins.vs import colorize
        clip = core.bs.VideoSource({str(src)!r}, cachemode=0)
        colorize(clip).set_output()
    """))
    out, err = vspipe(vspipe_env, script, "-c", "y4m")
    assert out.startswith(b"YUV4MPEG2 ")  # nothing printed before the video
    tokens, frames = read_y4m(out)
    assert "W96" in tokens and "H64" in tokens and "F24:1" in tokens
    ref = probe(src)
    assert len(frames) == len(ref.planes) == 20
    offsets = []
    for (_, p), r in zip(frames, ref.planes):
        np.testing.assert_array_equal(p[0], r[0])  # Y bit for bit
        assert p[1].shape == r[1].shape
        offsets += [np.abs(p[1].astype(int) - 128).mean(), np.abs(p[2].astype(int) - 128).mean()]
    assert np.mean(offsets) > 1.0, "the chroma stayed neutral"


def test_vspipe_props_json(tmp_path, vspipe_env, needs_bs):
    src = make_video(tmp_path / "f.mkv", codec="ffv1", pix_fmt="yuv420p10le", size=(W, H), frames=3,
                     color={"colorspace": 1, "color_primaries": 1, "color_trc": 1, "color_range": 1})
    script = tmp_path / "p.vpy"
    script.write_text(f"from vapoursynth import core\nfrom vidcolor.plugins.vs import colorize\n"
                      f"colorize(core.bs.VideoSource({str(src)!r}, cachemode=0)).set_output()\n")
    props = tmp_path / "props.json"
    out, _ = vspipe(vspipe_env, script, "-c", "y4m", "-j", str(props))
    frames_props = json.loads(props.read_text())
    assert len(frames_props) == 3
    for p in frames_props:  # the source's BT.709 limited-range tags, kept; the model recorded
        assert p["vidcolor_Model"] == DEFAULT_MODEL
        assert (p["_Matrix"], p["_Primaries"], p["_Transfer"], p["_Range"]) == (1, 1, 1, 0)
        assert "_PictType" in p  # the source filter's own props are kept
    tokens, frames = read_y4m(out)
    assert "C420p10" in tokens and len(frames) == 3


# --------------------------------------------------------------------------
# every format family
# --------------------------------------------------------------------------

FORMATS = {
    "GRAY8": (vs.GRAY8, vs.RGB24), "GRAY10": (vs.GRAY10, vs.RGB30), "GRAY16": (vs.GRAY16, vs.RGB48),
    "GRAYH": (vs.GRAYH, vs.RGBH), "GRAYS": (vs.GRAYS, vs.RGBS),
    "YUV420P8": (vs.YUV420P8, vs.YUV420P8), "YUV422P10": (vs.YUV422P10, vs.YUV422P10),
    "YUV444P16": (vs.YUV444P16, vs.YUV444P16), "YUV444PS": (vs.YUV444PS, vs.YUV444PS),
    "RGB24": (vs.RGB24, vs.RGB24), "RGB48": (vs.RGB48, vs.RGB48), "RGBH": (vs.RGBH, vs.RGBH),
    "RGBS": (vs.RGBS, vs.RGBS),
}


@pytest.mark.parametrize("name", list(FORMATS))
def test_format(name):
    fin, fout = (core.get_video_format(f) for f in FORMATS[name])
    clip = in_format(fin)
    out = colorize(clip, batch=4)
    assert out.format.id == fout.id
    assert (out.width, out.height, out.num_frames, out.fps) == (W, H, 4, clip.fps)
    for n in range(4):
        a, b = clip.get_frame(n), out.get_frame(n)
        pa, pb = planes(a), planes(b)
        props = b.props
        assert props[MODEL_PROP] == DEFAULT_MODEL
        if fin.color_family == vs.YUV:
            np.testing.assert_array_equal(pb[0], pa[0])  # Y kept bit for bit
            assert pb[1].shape == pa[1].shape and pb[2].shape == pa[2].shape
            assert chroma_offset(pb[1], fout) + chroma_offset(pb[2], fout) > 1.0
            assert props["_Matrix"] == 6
            assert props["_Range"] == (vs.RANGE_FULL if fin.sample_type == vs.FLOAT else vs.RANGE_LIMITED)
            if fin.sample_type == vs.INTEGER:
                s = 1 << (fin.bits_per_sample - 8)
                assert min(pb[1].min(), pb[2].min()) >= 16 * s and max(pb[1].max(), pb[2].max()) <= 240 * s
        else:  # RGB out, from GRAY or RGB: same luma, now with colour
            full_in = fin.color_family == vs.RGB or fin.sample_type == vs.FLOAT or \
                a.props.get("_Range", vs.RANGE_LIMITED) == vs.RANGE_FULL
            y_in = rgb_luma(pa, fin) if fin.color_family == vs.RGB else unit(pa[0], fin, full_in)
            y_out = rgb_luma(pb, fout)
            tol = 0.01 if fout.bits_per_sample > 8 or fout.sample_type == vs.FLOAT else 0.012
            assert np.abs(np.clip(y_in, 0, 1) - y_out).mean() < tol
            r, g, bb = (unit(x, fout) for x in pb)
            assert (np.abs(r - g).mean() + np.abs(bb - g).mean()) * 255 > 1.0, "still gray"
            assert props["_Matrix"] == 0 and props["_Range"] == vs.RANGE_FULL
            assert "_ChromaLocation" not in props
        assert props["_Primaries"] == 6 and props["_Transfer"] == 6


def test_formats_agree():
    """The same picture gives the same colours whatever format it comes in."""
    ref = planes(colorize(in_format(vs.YUV444PS), batch=4).get_frame(2))
    for fmt in (vs.YUV444P16, vs.YUV444P8):
        f = colorize(in_format(fmt), batch=4).get_frame(2)
        p = planes(f)
        fmtobj = f.format
        s = 1 << (fmtobj.bits_per_sample - 8)
        for c in (1, 2):
            diff = np.abs((p[c].astype(np.float64) - 128 * s) / (224 * s) - ref[c]).mean()
            assert diff < 0.01


# --------------------------------------------------------------------------
# output selection
# --------------------------------------------------------------------------


def test_gray_to_yuv_keeps_y():
    clip = in_format(vs.GRAY10)
    out = colorize(clip, batch=4, output="yuv")
    assert out.format.id == vs.YUV444P10
    a, b = clip.get_frame(1), out.get_frame(1)
    np.testing.assert_array_equal(np.asarray(b[0]), np.asarray(a[0]))
    assert chroma_offset(np.asarray(b[1]), b.format) > 0.5


def test_output_formats():
    yuv = in_format(vs.YUV420P8)
    assert colorize(yuv, batch=4, output="rgb").format.id == vs.RGB24
    out = colorize(yuv, batch=4, output=vs.YUV444P16)
    assert out.format.id == vs.YUV444P16
    f = out.get_frame(0)
    assert f.props[MODEL_PROP] == DEFAULT_MODEL
    rgb = in_format(vs.RGB48)
    out = colorize(rgb, batch=4, output="yuv")
    assert out.format.id == vs.YUV444P16
    f = out.get_frame(0)
    assert f.props["_Matrix"] == 6 and f.props["_Range"] == vs.RANGE_LIMITED
    assert colorize(in_format(vs.GRAY8), batch=4, output=vs.YUV420P8).format.id == vs.YUV420P8
    assert colorize(in_format(vs.GRAYS), batch=4, output=vs.RGB24).format.id == vs.RGB24
    # the RGB out of YUV in shows the same colours as the YUV out
    a = planes(colorize(yuv, batch=4, output="rgb").get_frame(3))
    b = planes(core.resize.Bicubic(colorize(yuv, batch=4), format=vs.RGB24).get_frame(3))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# --------------------------------------------------------------------------
# frame properties
# --------------------------------------------------------------------------


def test_props_kept_and_set():
    clip = in_format(vs.YUV420P8).std.SetFrameProps(_Matrix=1, _Primaries=5, _Transfer=4, Foo=7,
                                                    _SceneChangePrev=1, _Range=vs.RANGE_FULL)
    f = colorize(clip, batch=4).get_frame(0)
    p = f.props
    assert p["Foo"] == 7 and p["_SceneChangePrev"] == 1
    assert p["_Matrix"] == 1 and p["_Primaries"] == 5 and p["_Transfer"] == 4
    assert p["_Range"] == vs.RANGE_FULL
    assert p["_ChromaLocation"] == clip.get_frame(0).props["_ChromaLocation"]
    # an unknown matrix is replaced by the one the chroma was made for
    f = colorize(in_format(vs.YUV420P8).std.SetFrameProps(_Matrix=2), batch=4).get_frame(0)
    assert f.props["_Matrix"] == 6


def test_range_is_read():
    """The same picture in limited and in full range gives the same colours."""
    lim = in_format(vs.YUV444P16)
    full = core.resize.Point(lim, format=vs.YUV444P16, range=vs.RANGE_FULL)
    assert full.get_frame(0).props["_Range"] == vs.RANGE_FULL
    a = core.resize.Point(colorize(lim, batch=4), format=vs.RGBS).get_frame(1)
    b = core.resize.Point(colorize(full, batch=4), format=vs.RGBS).get_frame(1)
    for x, y in zip(planes(a), planes(b)):
        assert np.abs(x - y).mean() < 0.01


def test_gray_range_is_read():
    g = in_format(vs.GRAY8)
    assert g.get_frame(0).props.get("_Range", vs.RANGE_LIMITED) == vs.RANGE_LIMITED
    full = g.std.SetFrameProps(_Range=vs.RANGE_FULL)
    a = colorize(g, batch=4).get_frame(0)
    b = colorize(full, batch=4).get_frame(0)
    y_lim = rgb_luma(planes(a), a.format)
    y_full = rgb_luma(planes(b), b.format)
    y_codes = np.asarray(g.get_frame(0)[0]).astype(np.float64)
    assert np.abs(y_full - y_codes / 255).mean() < 0.012
    assert np.abs(y_lim - np.clip((y_codes - 16) / 219, 0, 1)).mean() < 0.012


def test_loading_prints_nothing(capfd):
    out = colorize(in_format(vs.YUV420P8), batch=3)  # a batch size not loaded before: a fresh load
    out.get_frame(0)
    assert capfd.readouterr().out == ""


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------


def _err(**kw):
    clip = kw.pop("clip", None)
    with pytest.raises(vs.Error) as e:
        colorize(in_format(vs.YUV420P8) if clip is None else clip, **kw)
    msg = str(e.value)
    assert msg.startswith("vidcolor.colorize: ")
    return msg


def test_errors():
    a = core.std.BlankClip(width=W, height=H, format=vs.YUV420P8, length=2)
    b = core.std.BlankClip(width=W, height=H, format=vs.YUV420P10, length=2)
    c = core.std.BlankClip(width=32, height=24, format=vs.YUV420P8, length=2)
    assert "variable format" in _err(clip=core.std.Splice([a, b], mismatch=True))
    assert "variable frame size" in _err(clip=core.std.Splice([a, c], mismatch=True))
    assert "VideoNode" in _err(clip="film.mkv")
    msg = _err(model="nope")
    assert "unknown model 'nope'" in msg and "zhang2016" in msg
    assert "weights=" in _err(model="zhang2016-full")
    assert "no such weights file" in _err(weights="/nonexistent/w.safetensors")
    assert "'stabilize'" in _err(temporal="flow")
    assert "temporal=" in _err(temporal=3)
    assert "takes no colour hints" in _err(hints="hints.json")
    assert "device=" in _err(device="tpu")
    assert "dtype=" in _err(dtype="int8")
    assert "batch=" in _err(batch=0)
    assert "'rgb', 'yuv'" in _err(output="gray")
    assert "YUV or RGB" in _err(output=vs.GRAY8)


def test_cuda_refused_without_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible")
    assert "no CUDA GPU" in _err(device="cuda")


# --------------------------------------------------------------------------
# threads and request order
# --------------------------------------------------------------------------


def _render(clip, order, threads):
    old = core.num_threads
    core.num_threads = threads
    try:
        if threads == 1:
            frames = {n: planes(clip.get_frame(n)) for n in order}
        else:
            futures = {n: clip.get_frame_async(n) for n in order}
            frames = {n: planes(f.result()) for n, f in futures.items()}
    finally:
        core.num_threads = old
    return [frames[n] for n in range(clip.num_frames)]


def test_threads_and_order_give_identical_frames(monkeypatch):
    import vidcolor.plugins.vs as plugin

    calls = []
    compute = plugin._Filter._compute

    def counted(self, b, frames):
        calls.append((b, len(frames)))
        return compute(self, b, frames)

    monkeypatch.setattr(plugin._Filter, "_compute", counted)  # the real computation, counted
    n = 14
    src = core.resize.Bicubic(textured(n), format=vs.YUV420P8)
    ref = _render(colorize(src, batch=4), range(n), 1)
    orders = {"reverse": list(reversed(range(n))), "random": random.Random(3).sample(range(n), n),
              "in order": list(range(n))}
    for name, order in orders.items():
        calls.clear()
        got = _render(colorize(src, batch=4), order, 4)  # a new node each time: nothing cached
        # every block of 4 frames went through the model once, in one batch, whatever thread asked first
        assert sorted(calls) == [(0, 4), (1, 4), (2, 4), (3, 2)], name
        for k, (x, y) in enumerate(zip(ref, got)):
            for p, (a, b) in enumerate(zip(x, y)):
                np.testing.assert_array_equal(a, b, err_msg=f"{name}: frame {k} plane {p}")


def test_many_threads_share_one_model():
    """Two filters on the same loaded model, rendered together from many threads."""
    src = core.resize.Bicubic(textured(9), format=vs.YUV420P8)
    both = core.std.StackHorizontal([colorize(src, batch=4), colorize(src, batch=4)])
    frames = _render(both, range(9), 4)
    for f in frames:
        for p in f:
            half = p.shape[1] // 2
            np.testing.assert_array_equal(p[:, :half], p[:, half:])


def test_vspipe_threads(tmp_path, vspipe_env, needs_bs):
    src = make_video(tmp_path / "t.mkv", codec="ffv1", pix_fmt="yuv420p", size=(W, H), frames=18)
    outs = []
    for threads in (1, 4):
        script = tmp_path / f"t{threads}.vpy"
        script.write_text(f"from vapoursynth import core\nfrom vidcolor.plugins.vs import colorize\n"
                          f"core.num_threads = {threads}\n"
                          f"colorize(core.bs.VideoSource({str(src)!r}, cachemode=0), batch=4).set_output()\n")
        out, _ = vspipe(vspipe_env, script, "-c", "y4m", "-r", str(threads * 2))
        outs.append(out)
    assert outs[0] == outs[1]
    assert len(read_y4m(outs[0])[1]) == 18


# --------------------------------------------------------------------------
# temporal="stabilize"
# --------------------------------------------------------------------------

STAB_N = 104  # past the first grid restart: the blocks from frame 88 on are served by a chain from frame 44


@pytest.fixture(scope="module")
def stab_src():
    return core.resize.Bicubic(textured(STAB_N), format=vs.YUV420P8)


@pytest.fixture(scope="module")
def stab_ref(stab_src):
    """Stabilized frames asked for in order from one thread, and the per-frame ones."""
    return (_render(colorize(stab_src, temporal="stabilize"), range(STAB_N), 1),
            _render(colorize(stab_src), range(STAB_N), 1))


def test_stabilize_any_order_and_threads(stab_src, stab_ref):
    ref, _ = stab_ref
    n = STAB_N
    orders = {"reverse": (list(reversed(range(n))), 1), "random, 4 threads": (random.Random(7).sample(range(n), n), 4),
              "in order, 4 threads": (list(range(n)), 4)}
    for name, (order, threads) in orders.items():
        got = _render(colorize(stab_src, temporal=True), order, threads)  # True is "stabilize"; a new node
        for k, (x, y) in enumerate(zip(ref, got)):
            for p, (a, b) in enumerate(zip(x, y)):
                np.testing.assert_array_equal(a, b, err_msg=f"{name}: frame {k} plane {p}")


def test_stabilize_keeps_y_and_steadies_chroma(stab_src, stab_ref):
    ref, plain = stab_ref
    src = _render(stab_src, range(STAB_N), 1)
    for k in range(STAB_N):
        np.testing.assert_array_equal(ref[k][0], src[k][0], err_msg=f"frame {k}: Y changed")
    for p in (1, 2):  # the first frame of the clip: nothing to carry, the model's own chroma
        np.testing.assert_array_equal(ref[0][p], plain[0][p])
    for k in range(1, STAB_N):
        assert any(not np.array_equal(ref[k][p], plain[k][p]) for p in (1, 2)), f"frame {k} not stabilized"
    # steadier: the stabilized chroma changes less from frame to frame than the per-frame one
    def change(frames):
        return np.mean([np.abs(frames[k][p].astype(int) - frames[k - 1][p]).mean()
                        for k in range(1, STAB_N) for p in (1, 2)])
    assert change(ref) < change(plain)


def test_stabilize_matches_sequential_stabilizer(stab_src, stab_ref):
    """The filter gives what the CLI's --stabilize does (one stabilizer running through the clip from
    its start, the same model, blocks of 8): exactly while the blocks are served by the chain from
    the clip's start (first frames before 88), and within a code where a chain from frame 44 has
    cut the older frames off."""
    from vidcolor.colorizer import Colorizer
    from vidcolor.planes import chroma_codes, luma_unit
    from vidcolor.runtime import Runtime

    ref, _ = stab_ref
    twin = Colorizer("default", None, Runtime(device="cpu", batch=8)).stabilized()
    ys = np.stack([f[0] for f in _render(stab_src, range(STAB_N), 1)])
    for s in range(0, STAB_N, 8):
        cbcr = twin.chroma(luma_unit(ys[s:s + 8], 8, False), (H // 2, W // 2), "bt601")
        codes = chroma_codes(cbcr, 8, False)
        for j in range(8):
            for p in (1, 2):
                if s < 88:
                    np.testing.assert_array_equal(codes[j][p - 1], ref[s + j][p], err_msg=f"frame {s + j} plane {p}")
                else:  # blocks 88 and 96: the chain from frame 44
                    assert np.abs(codes[j][p - 1].astype(int) - ref[s + j][p]).max() <= 1, f"frame {s + j} plane {p}"


def test_stabilize_deflickers_like_the_cli():
    """On flickering input (old film's exposure changing every frame) the filter feeds the model
    the same deflickered luma as the CLI's --stabilize: equal codes, in any order."""
    from vidcolor.colorizer import Colorizer, working_shape
    from vidcolor.planes import chroma_codes, luma_unit
    from vidcolor.runtime import Runtime
    from vidcolor.temporal import Stabilizer

    n = 40  # every block starts within the 44-frame window: the sequential run is reproduced exactly
    gains = np.random.default_rng(5).uniform(0.7, 1.0, n)
    base = core.std.BlankClip(width=W, height=H, format=vs.GRAYS, length=n, fpsnum=24, fpsden=1)

    def fill(n, f):
        g = f.copy()
        np.copyto(np.asarray(g[0]), (texture(n, H, W) * gains[n] + 0.1 * (1 - gains[n])).astype(np.float32))
        return g

    src = core.resize.Bicubic(core.std.ModifyFrame(base, base, fill), format=vs.YUV420P8)
    got = _render(colorize(src, temporal="stabilize"), random.Random(3).sample(range(n), n), 2)
    ys = np.stack([f[0] for f in _render(src, range(n), 1)])
    y = luma_unit(ys, 8, False)
    twin = Colorizer("default", None, Runtime(device="cpu", batch=8)).stabilized()
    _, affine = Stabilizer().prepare(twin.working_luma(y, working_shape(H, W, twin.spec.working_size)))
    assert np.abs(np.log(affine[:, 0])).max() > 0.05  # the deflicker did correct these frames
    for s in range(0, n, 8):
        codes = chroma_codes(twin.chroma(y[s:s + 8], (H // 2, W // 2), "bt601"), 8, False)
        for j in range(8):
            for p in (1, 2):
                np.testing.assert_array_equal(codes[j][p - 1], got[s + j][p], err_msg=f"frame {s + j} plane {p}")


def _mark_cut(clip, frame):
    return core.std.FrameEval(clip, lambda n: core.std.SetFrameProp(clip, "_SceneChangePrev", intval=1)
                              if n == frame else clip)


def test_stabilize_restarts_at_scene_change(stab_src, stab_ref):
    ref, plain = stab_ref
    n = 40
    marked = _mark_cut(stab_src[:n], 16)
    assert marked.get_frame(16).props["_SceneChangePrev"] == 1 and "_SceneChangePrev" not in marked.get_frame(15).props
    got = _render(colorize(marked, temporal="stabilize"), random.Random(1).sample(range(n), n), 4)
    fresh = _render(colorize(stab_src[16:n], temporal="stabilize"), range(n - 16), 1)  # a fresh start at 16
    for k in range(n):
        for p in (1, 2):
            if k < 16:  # before the mark: as without it
                np.testing.assert_array_equal(got[k][p], ref[k][p], err_msg=f"frame {k} plane {p}")
            else:  # from the mark on: as a clip that starts there
                np.testing.assert_array_equal(got[k][p], fresh[k - 16][p], err_msg=f"frame {k} plane {p}")
    assert all(np.array_equal(got[16][p], plain[16][p]) for p in (1, 2))  # the cut frame: the model's own
    assert not all(np.array_equal(got[20][p], ref[20][p]) for p in (1, 2))  # and the mark changed what follows


def test_stabilize_cut_inside_a_block(stab_src, stab_ref):
    """A mark in the middle of a block: that frame is the model's own, and the next blocks restart there."""
    ref, plain = stab_ref
    n = 36
    got = _render(colorize(_mark_cut(stab_src[:n], 19), temporal="stabilize"), list(reversed(range(n))), 1)
    for p in (1, 2):
        np.testing.assert_array_equal(got[19][p], plain[19][p])
        np.testing.assert_array_equal(got[18][p], ref[18][p])
    assert not all(np.array_equal(got[26][p], ref[26][p]) for p in (1, 2))


# --------------------------------------------------------------------------
# a temporal model (previous-frame input)
# --------------------------------------------------------------------------

REC_N = 80  # past the first chain restart (frame 44, serving the blocks from frame 72 on)


@pytest.fixture(scope="module")
def rec_weights(tmp_path_factory):
    """temporal_unet weights: the shipped ones, or a seeded initialisation (the mechanism is what is tested)."""
    import torch

    from vidcolor import weights
    from vidcolor.models import get_model

    shipped = weights.shipped_dir() / "temporal_unet.safetensors"
    if shipped.is_file():
        return str(shipped)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("rec") / "temporal_unet.safetensors"
    weights.save(get_model("temporal_unet").build().eval(), path)
    return str(path)


@pytest.fixture(scope="module")
def rec_src():
    return core.resize.Bicubic(textured(REC_N), format=vs.YUV420P8)


@pytest.fixture(scope="module")
def rec_ref(rec_src, rec_weights):
    return _render(colorize(rec_src, model="temporal_unet", weights=rec_weights), range(REC_N), 1)


def test_temporal_model_any_order_and_threads(rec_src, rec_weights, rec_ref):
    n = REC_N
    orders = {"reverse": (list(reversed(range(n))), 1), "random, 4 threads": (random.Random(5).sample(range(n), n), 4),
              "in order, 4 threads": (list(range(n)), 4)}
    for name, (order, threads) in orders.items():
        got = _render(colorize(rec_src, model="temporal_unet", weights=rec_weights), order, threads)
        for k, (x, y) in enumerate(zip(rec_ref, got)):
            for p, (a, b) in enumerate(zip(x, y)):
                np.testing.assert_array_equal(a, b, err_msg=f"{name}: frame {k} plane {p}")


def test_temporal_model_matches_the_sequential_recurrence(rec_src, rec_weights, rec_ref):
    """Blocks served by the chain from frame 0 equal the CLI's one recurrence through the clip; the
    blocks from 72 on equal that recurrence restarted at frame 44, its detector primed on the 26
    frames before: the chain the filter restarts on its grid."""
    from vidcolor.colorizer import Colorizer
    from vidcolor.planes import chroma_codes, luma_unit
    from vidcolor.runtime import Runtime

    seq = Colorizer("temporal_unet", rec_weights, Runtime(device="cpu", batch=8))
    assert seq.temporal and seq.recurrence is not None
    ys = np.stack([f[0] for f in _render(rec_src, range(REC_N), 1)])
    restarted = seq.fresh()
    restarted.prime(luma_unit(ys[44 - 26:44], 8, False))
    later = {}
    for s in range(44, REC_N, 4):  # other block boundaries than the filter's: the state carries over
        codes = chroma_codes(restarted.chroma(luma_unit(ys[s:s + 4], 8, False), (H // 2, W // 2), "bt601"), 8, False)
        later.update({s + j: codes[j] for j in range(len(codes))})
    for s in range(0, REC_N, 8):
        codes = chroma_codes(seq.chroma(luma_unit(ys[s:s + 8], 8, False), (H // 2, W // 2), "bt601"), 8, False)
        for j in range(8):
            want = codes[j] if s < 72 else later[s + j]
            for p in (1, 2):
                np.testing.assert_array_equal(want[p - 1], rec_ref[s + j][p], err_msg=f"frame {s + j} plane {p}")
    # the previous frame matters: the same frames one by one from a blank history differ
    alone = Colorizer("temporal_unet", rec_weights, Runtime(device="cpu", batch=1))
    one = chroma_codes(alone.fresh().chroma(luma_unit(ys[30:31], 8, False), (H // 2, W // 2), "bt601"), 8, False)
    assert not np.array_equal(one[0][0], rec_ref[30][1])


def test_temporal_model_restarts_at_scene_change(rec_src, rec_weights, rec_ref):
    n = 40
    got = _render(colorize(_mark_cut(rec_src[:n], 16), model="temporal_unet", weights=rec_weights),
                  random.Random(2).sample(range(n), n), 4)
    fresh = _render(colorize(rec_src[16:n], model="temporal_unet", weights=rec_weights), range(n - 16), 1)
    for k in range(n):
        for p in (1, 2):
            want = rec_ref[k][p] if k < 16 else fresh[k - 16][p]
            np.testing.assert_array_equal(got[k][p], want, err_msg=f"frame {k} plane {p}")


def test_temporal_model_refuses_stabilize(rec_src, rec_weights):
    with pytest.raises(vs.Error, match="temporal=None"):
        colorize(rec_src, model="temporal_unet", weights=rec_weights, temporal="stabilize")


def test_hints_change_only_the_frames_they_name(tmp_path):
    from test_official import layout, save_safetensors, synthetic_state_dict

    w = str(save_safetensors(synthetic_state_dict(layout("siggraph17")), tmp_path / "sig.safetensors"))
    hints = tmp_path / "h.json"
    hints.write_text(json.dumps([{"frame": 1, "x": 30, "y": 20, "color": "#d02020", "radius": 3}]))
    src = core.resize.Bicubic(textured(3), format=vs.YUV444P8)
    plain = _render(colorize(src, model="siggraph17", weights=w, batch=3), range(3), 1)
    hinted = _render(colorize(src, model="siggraph17", weights=w, batch=3, hints=str(hints)), [2, 0, 1], 2)
    for k in (0, 2):
        assert all(np.array_equal(a, b) for a, b in zip(plain[k], hinted[k])), f"frame {k}"
    assert np.array_equal(plain[1][0], hinted[1][0])
    assert any(not np.array_equal(plain[1][p], hinted[1][p]) for p in (1, 2))


# --------------------------------------------------------------------------
# the examples in plugins/examples
# --------------------------------------------------------------------------


@pytest.mark.parametrize("example,width", [("colorize_film", 96), ("restore_colorize", 96),
                                           ("compare_models", 192)])
def test_examples(tmp_path, vspipe_env, needs_bs, example, width):
    """As the README runs them: from the user's own folder, the film given by a path relative to it."""
    make_video(tmp_path / "old.mp4", codec="libx264", pix_fmt="yuv420p", size=(96, 64), frames=6)
    env = dict(vspipe_env, PWD=str(tmp_path))  # what a shell sets in the folder it runs vspipe from
    out = subprocess.run(vspipe_command() + ["-c", "y4m", "-a", "src=old.mp4", str(EXAMPLES / f"{example}.vpy"), "-"],
                         env=env, cwd=tmp_path, capture_output=True)
    assert out.returncode == 0, out.stderr.decode()
    tokens, frames = read_y4m(out.stdout)
    assert f"W{width}" in tokens and len(frames) == 6
    assert np.abs(frames[0][1][1].astype(int) - 128).mean() > 0.5


def test_examples_need_a_source(tmp_path, vspipe_env, needs_bs):
    out = subprocess.run(vspipe_command() + [str(EXAMPLES / "colorize_film.vpy"), "-"], env=vspipe_env,
                         capture_output=True)
    assert out.returncode != 0 and b"-a src=" in out.stderr and not out.stdout
    out = subprocess.run(vspipe_command() + ["-a", "src=nowhere.mkv", str(EXAMPLES / "colorize_film.vpy"), "-"],
                         env=dict(vspipe_env, PWD=str(tmp_path)), cwd=tmp_path, capture_output=True)
    assert out.returncode != 0 and b"src=nowhere.mkv: no such file" in out.stderr and not out.stdout


def test_batch_of_one_frame():
    """batch=1 (SelectEvery refuses a cycle of 1): frame by frame, the same colour as in blocks of 4."""
    clip = in_format(core.get_video_format(vs.YUV420P8))
    one, four = colorize(clip, batch=1), colorize(clip, batch=4)
    for n in range(clip.num_frames):
        np.testing.assert_allclose(planes(one.get_frame(n))[1], planes(four.get_frame(n))[1], atol=1)
