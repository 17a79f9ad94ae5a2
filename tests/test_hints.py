"""User colour hints (`--hints`, VapourSynth ``hints=``) for SIGGRAPH17, with its official layout.

The network runs with the deterministic synthetic weights of the official-layout
tests, so its response to a hint is the official network's.
"""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from conftest import make_video, probe
from test_official import layout, save_safetensors, synthetic_state_dict
from vidcolor import color
from vidcolor.colorizer import Colorizer, working_shape
from vidcolor.errors import InvalidInput
from vidcolor.hints import Hints
from vidcolor.runtime import Runtime

W, H = 96, 64


@pytest.fixture(scope="module")
def sig_weights(tmp_path_factory):
    return str(save_safetensors(synthetic_state_dict(layout("siggraph17")), tmp_path_factory.mktemp("sig") / "s.safetensors"))


def write_json(path, points):
    path.write_text(json.dumps(points))
    return path


def test_json_points_become_maps_on_their_frames(tmp_path):
    hints = Hints.load(write_json(tmp_path / "h.json", [
        {"frame": 2, "x": 48, "y": 32, "color": "#3a6ea5"},
        {"x": 0, "y": 0, "color": [200, 40, 40], "radius": 0},  # every frame
    ]))
    size = (32, 48)  # working size: half the frame
    ab, mask = hints.maps(2, (H, W), size)
    assert mask[0, 16, 24] == 1 and mask[0, 15:18, 23:26].sum() == 9  # a 3x3 patch at (24, 16)
    want = color.rgb_to_lab(torch.tensor([0x3A, 0x6E, 0xA5]).float().view(1, 3, 1, 1) / 255)[0, 1:, 0, 0]
    torch.testing.assert_close(ab[:, 16, 24], want)
    assert mask[0, 0, 0] == 1 and ab[0, 0, 0] > 30  # red: a > 0
    assert mask.sum() == 10
    ab1, mask1 = hints.maps(1, (H, W), size)  # frame 1: only the point without a frame
    assert mask1.sum() == 1 and ab1[:, 16, 24].abs().sum() == 0


def test_png_hints_are_its_opaque_pixels(tmp_path):
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[10:20, 30:40] = (0, 160, 0, 255)  # opaque green; the rest transparent
    path = tmp_path / "h.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    ab, mask = Hints.load(path).maps(7, (H, W), (H, W))
    assert mask[0, 10:20, 30:40].all() and mask.sum() == 100
    assert (ab[0, 10:20, 30:40] < -30).all()  # green: a < 0
    assert Hints.load(path).maps(0, (H, W), (H // 2, W // 2))[1].sum() == 25


@pytest.mark.parametrize("content,message", [
    ("not json", "not JSON"),
    ('{"x": 1}', "list of points"),
    ('[{"x": 1, "y": 2, "color": "blue"}]', "#rrggbb"),
    ('[{"x": "a", "y": 2, "color": "#000000"}]', "numbers x and y"),
    ('[{"frame": -1, "x": 1, "y": 2, "color": "#000000"}]', "frame number"),
])
def test_bad_hints_files_say_what_to_fix(tmp_path, content, message):
    path = tmp_path / "h.json"
    path.write_text(content)
    with pytest.raises(InvalidInput, match=message) as e:
        Hints.load(path)
    assert str(path) in str(e.value)


def test_png_without_alpha_and_points_outside_are_refused(tmp_path):
    cv2.imwrite(str(tmp_path / "rgb.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InvalidInput, match="alpha"):
        Hints.load(tmp_path / "rgb.png")
    hints = Hints.load(write_json(tmp_path / "h.json", [{"x": 500, "y": 2, "color": "#000000"}]))
    with pytest.raises(InvalidInput, match="outside"):
        hints.maps(0, (H, W), (32, 48))
    with pytest.raises(InvalidInput, match="no such hints file"):
        Hints.load(tmp_path / "missing.json")


def test_colorizer_feeds_the_hints_to_the_network(tmp_path, sig_weights):
    """On the hinted frame the output is the official network's with those hint maps; elsewhere unhinted."""
    hints = Hints.load(write_json(tmp_path / "h.json", [{"frame": 1, "x": 20, "y": 40, "color": "#c83c28"}]))
    rt = Runtime(device="cpu", batch=3)
    plain = Colorizer("siggraph17", sig_weights, rt)
    hinted = Colorizer("siggraph17", sig_weights, rt, hints=hints)
    y = torch.rand(3, 1, H, W)
    a, b = plain.predict_ab(y), hinted.predict_ab(y)
    torch.testing.assert_close(a[[0, 2]], b[[0, 2]], rtol=0, atol=1e-5)
    assert (a[1] - b[1]).abs().max() > 1.0
    size = working_shape(H, W, plain.spec.working_size)
    hab, hmask = hints.maps(1, (H, W), size)
    l = color.gray_to_l(color.resize(y[1:2], size))
    with torch.inference_mode():
        want = plain.model.decode(plain.model(l, hab[None], hmask[None]))
    torch.testing.assert_close(b[1:2], want, rtol=1e-4, atol=1e-3)
    # frame numbers count on from call to call, and start again at reset
    again = hinted.predict_ab(y)
    torch.testing.assert_close(again, a, rtol=0, atol=1e-5)
    hinted.reset()
    torch.testing.assert_close(hinted.predict_ab(y), b, rtol=0, atol=1e-5)


def test_models_without_hint_inputs_refuse_them(tmp_path):
    hints = Hints.load(write_json(tmp_path / "h.json", [{"x": 1, "y": 1, "color": "#000000"}]))
    with pytest.raises(InvalidInput, match="takes no colour hints"):
        Colorizer("zhang2016", None, Runtime(device="cpu"), hints=hints)


def test_cli_hints(tmp_path, sig_weights):
    src = make_video(tmp_path / "in.mkv", codec="ffv1", pix_fmt="yuv420p", size=(W, H), frames=4)
    hints = write_json(tmp_path / "h.json", [{"frame": 2, "x": 40, "y": 30, "color": "#2050d0", "radius": 4}])
    cmd = [sys.executable, "-m", "vidcolor", str(src), "--model", "siggraph17", "--weights", sig_weights,
           "--codec", "ffv1", "--quiet"]
    subprocess.run(cmd + ["-o", str(tmp_path / "plain.mkv")], check=True)
    subprocess.run(cmd + ["-o", str(tmp_path / "hinted.mkv"), "--hints", str(hints)], check=True)
    a, b = probe(tmp_path / "plain.mkv"), probe(tmp_path / "hinted.mkv")
    for i in (0, 1, 3):
        assert all(np.array_equal(x, y) for x, y in zip(a.planes[i], b.planes[i])), f"frame {i}"
    assert np.array_equal(a.planes[2][0], b.planes[2][0])  # the luma is the input's either way
    # the hinted frame's chroma changed (the synthetic weights make no promise about which way)
    assert any(not np.array_equal(a.planes[2][p], b.planes[2][p]) for p in (1, 2))
    bad = subprocess.run([sys.executable, "-m", "vidcolor", str(src), "-o", str(tmp_path / "z.mkv"),
                          "--hints", str(hints)], capture_output=True, text=True)
    assert bad.returncode != 0 and "takes no colour hints" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "z.mkv").exists()
