"""Reference-guided colour (issue 18): a colour picture carried through the shot it matches.

Real pictures made here with a known colour, the shipped model, real flow; no mocks.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest
import torch

from vidcolor.errors import InvalidInput
from vidcolor.colorizer import colorize_clip
from vidcolor.io.reference import load_reference
from vidcolor.temporal.reference import (MIN_MATCH, FeatureExtractor, Reference, ReferenceGuide, ReferenceTrack,
                                        ReferenceWarning)


def colour_scene(n: int, h: int = 96, w: int = 128, step: int = 2, seed: int = 0, start: int = 0) -> list[np.ndarray]:
    """RGB uint8 frames of a colour scene panning right by ``step`` px a frame.

    A large canvas of textured patches with strong colours a gray-only model cannot guess (purple
    grass, green sky...): the colour of every frame is known, and only a reference can give it.
    """
    rng = np.random.default_rng(seed)
    ch, cw = h, w + step * (n + start) + 8
    texture = cv2.GaussianBlur(rng.normal(0.5, 0.25, (ch, cw)).astype(np.float32), (0, 0), 1.5)
    blocks = cv2.resize(rng.uniform(0, 1, (3, cw // 24 + 1)).astype(np.float32), (cw, ch),
                        interpolation=cv2.INTER_NEAREST)
    hue = (blocks * 179).astype(np.uint8)
    hsv = np.stack([hue, np.full_like(hue, 220), np.clip(texture * 180 + 50, 0, 255).astype(np.uint8)], -1)
    canvas = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return [np.ascontiguousarray(canvas[:, (start + i) * step:(start + i) * step + w]) for i in range(n)]


def patterned_scene(n: int, h: int = 96, w: int = 128, step: int = 2, seed: int = 0, start: int = 0) -> list[np.ndarray]:
    """Like `colour_scene`, with bands 32 px wide each of its own pattern (stripes, diagonals, checks) and
    colour: what tells the bands apart is their shape, as objects in a photo, so matching by content works."""
    rng = np.random.default_rng(seed)
    cw = w + step * (n + start) + 64
    yy, xx = np.mgrid[0:h, 0:cw].astype(np.float32)
    lum, hue = np.zeros((h, cw), np.float32), np.zeros((h, cw), np.uint8)
    for b in range(cw // 32 + 1):
        sl = slice(b * 32, (b + 1) * 32)
        kind, f = rng.integers(4), rng.uniform(0.15, 0.5)
        x, y = xx[:, sl], yy[:, sl]
        pattern = [np.sin(x * f), np.sin(y * f), np.sin((x + y) * f * 0.7),
                   np.sign(np.sin(x * f)) * np.sign(np.sin(y * f))][kind]
        lum[:, sl] = 0.5 + 0.3 * pattern
        hue[:, sl] = rng.integers(0, 180)
    hsv = np.stack([hue, np.full_like(hue, 220), np.clip(lum * 200 + 30, 0, 255).astype(np.uint8)], -1)
    canvas = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return [np.ascontiguousarray(canvas[:, (start + i) * step:(start + i) * step + w]) for i in range(n)]


def ab_error(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Lab ab distance of two RGB uint8 pictures."""
    la = cv2.cvtColor(a.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    lb = cv2.cvtColor(b.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    return float(np.sqrt(((la[..., 1:] - lb[..., 1:]) ** 2).sum(-1)).mean())


def luma_of(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def test_reference_of_frame_0_carries_its_colour_through_the_shot(colorizer):
    frames = colour_scene(8)
    plain = colorizer.colorize_rgb([f.copy() for f in frames])
    out = colorize_clip(colorizer, [f.copy() for f in frames], [frames[0]])
    err_plain = np.mean([ab_error(f, o) for f, o in zip(frames[1:], plain[1:])])
    err_ref = [ab_error(f, o) for f, o in zip(frames[1:], out[1:])]
    assert err_plain > 25  # the model cannot know these colours
    assert max(err_ref) < err_plain / 3, (err_ref, err_plain)
    # the luma is the input's (to 8-bit rounding of the colour conversion)
    for f, o in zip(frames, out):
        assert np.abs(luma_of(f) - luma_of(o)).max() < 2.5
        assert o.dtype == np.uint8 and o.shape == f.shape


def test_reference_of_the_last_frame_colours_the_frames_before_it(colorizer):
    frames = colour_scene(8, seed=1)
    plain = colorizer.colorize_rgb([f.copy() for f in frames])
    out = colorize_clip(colorizer, [f.copy() for f in frames], [frames[-1]])
    before_ref = [ab_error(f, o) for f, o in zip(frames[:-1], out[:-1])]
    before_plain = [ab_error(f, o) for f, o in zip(frames[:-1], plain[:-1])]
    assert max(before_ref) < np.mean(before_plain) / 3, (before_ref, before_plain)


def test_a_photo_of_the_same_scene_in_another_framing_gives_colour_by_content(colorizer):
    """Reference: the same scene panned far (no overlap with flow's reach) and another aspect ratio."""
    frames = patterned_scene(6, seed=2)
    wide = patterned_scene(1, w=160, seed=2, start=14)[0]  # 28 px further right, 160 wide
    plain = colorizer.colorize_rgb([f.copy() for f in frames])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ReferenceWarning)
        out = colorize_clip(colorizer, [f.copy() for f in frames], [wide])
    # one warning, the aspect's: it does match a shot
    assert [str(w.message).split(": ")[1][:20] for w in caught] == ["its aspect ratio (16"]
    err_ref = np.mean([ab_error(f, o) for f, o in zip(frames, out)])
    err_plain = np.mean([ab_error(f, o) for f, o in zip(frames, plain)])
    assert err_ref < err_plain * 0.4, (err_ref, err_plain)


def test_a_reference_serves_only_the_shot_it_matches(colorizer):
    shot_a = colour_scene(6, seed=3)
    shot_b = colour_scene(6, seed=4)
    frames = shot_a + shot_b
    plain = colorizer.colorize_rgb([f.copy() for f in frames[:8]]) + colorizer.colorize_rgb(
        [f.copy() for f in frames[8:]])
    out = colorize_clip(colorizer, [f.copy() for f in frames], [shot_b[2]])
    err = [ab_error(f, o) for f, o in zip(frames, out)]
    err_plain = [ab_error(f, o) for f, o in zip(frames, plain)]
    # the second shot gets the reference's colour, backward to its first frame too
    assert max(err[6:]) < np.mean(err_plain[6:]) / 3, (err[6:], err_plain[6:])
    # the first shot (another scene) is the model's, steadied: not the reference's colours
    assert np.mean(err[:6]) > 0.7 * np.mean(err_plain[:6]), (err[:6], err_plain[:6])


def test_pinned_reference_frame(colorizer):
    frames = colour_scene(6, seed=5)
    # frame 3's colour pinned there: as found by content
    pinned = colorize_clip(colorizer, [f.copy() for f in frames], [frames[3]], pinned=[3])
    found = colorize_clip(colorizer, [f.copy() for f in frames], [frames[3]])
    assert all(np.array_equal(a, b) for a, b in zip(pinned, found))
    with pytest.warns(ReferenceWarning, match="not a frame of the film"):
        out = colorize_clip(colorizer, [f.copy() for f in frames], [frames[3]], pinned=[99])
    plain = colorizer.colorize_rgb([f.copy() for f in frames])
    # unused: the model's colour (steadied), far from the reference's
    assert np.mean([ab_error(f, o) for f, o in zip(frames, out)]) > 0.7 * np.mean(
        [ab_error(f, o) for f, o in zip(frames, plain)])


def test_gray_reference_warns_and_leaves_the_model_colour(colorizer):
    frames = colour_scene(4, seed=6)
    gray = np.repeat(luma_of(frames[0]).round().astype(np.uint8)[..., None], 3, axis=2)
    with pytest.warns(ReferenceWarning, match="gray"):
        out = colorize_clip(colorizer, [f.copy() for f in frames], [gray])
    # not a gray film: the model's colour where the reference has none to give
    assert np.mean([ab_error(o, np.repeat(luma_of(o).round().astype(np.uint8)[..., None], 3, 2)) for o in out]) > 3


def test_a_reference_that_matches_nothing_is_a_warning_not_used():
    scores = np.array([[0.2, 0.25, MIN_MATCH - 0.01]])
    with pytest.warns(ReferenceWarning, match="matches no shot"):
        plan = ReferenceGuide.plan(scores, [False, False, False], names=["key.png"])
    assert plan == {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ReferenceGuide.plan(np.array([[0.2, 0.9, 0.6, 0.7]]), [False, False, True, False]) == {0: (0, 1)}


def photo_of_two_places(ab, label):
    """Features of a 64x128 frame and a photo of another place whose two places (1x2 at stride 8) have the same
    features as every frame position: ``ab`` and the model's ``label`` of the photo, each [a row, b row] of 2."""
    feats = torch.nn.functional.normalize(torch.ones(4, 8, 16), dim=0)
    ref = Reference("photo", np.zeros((8, 16, 3), np.uint8), np.full((8, 16), 0.5, np.float32),
                    np.zeros((2, 8, 16), np.float32), feats[:, :1, :2].clone(), torch.tensor(ab)[:, None],
                    aligned=False, label_small=torch.tensor(label)[:, None])
    return feats, ref


def test_the_model_colour_as_a_label_sends_each_place_to_its_own_kind():
    """Features that cannot tell two places of a photo apart (here identical) give each frame position the
    mean of their colours; the model's colour of both pictures (the label) sends each to the place the
    model colours alike, and leaves its confidence whole."""
    feats, ref = photo_of_two_places([[40.0, 0.0], [0.0, 40.0]], [[30.0, 0.0], [0.0, 30.0]])
    y = np.full((64, 128), 0.5, np.float32)
    label = np.zeros((2, 64, 128), np.float32)
    label[1, :, :64] = 30.0   # the left half looks to the model like the photo's second place
    label[0, :, 64:] = 30.0   # the right half like its first
    guide = ReferenceGuide(features=None, add_only=0)  # the label alone (`ADD_ONLY`: the test below)
    ab, conf = guide.transfer(y, feats, ref)
    assert np.allclose(ab[:, 32, 16], [20, 20], atol=0.5) and np.allclose(ab[:, 32, 112], [20, 20], atol=0.5)
    ab, conf_l = guide.transfer(y, feats, ref, label)
    assert np.allclose(ab[:, 32, 16], [0, 40], atol=1) and np.allclose(ab[:, 32, 112], [40, 0], atol=1), ab[:, 32]
    assert np.allclose(conf_l, conf)
    # the photo's colour here is fuller than the model's: whole with ADD_ONLY too, away from the halves' seam
    conf_a = ReferenceGuide(features=None).transfer(y, feats, ref, label)[1]
    assert np.allclose(conf_a[:, :48], conf[:, :48]) and np.allclose(conf_a[:, 80:], conf[:, 80:])
    assert np.allclose(ReferenceGuide(features=None, label_weight=0).transfer(y, feats, ref, label)[0][:, 32, 16],
                       [20, 20], atol=0.5)


def test_a_photo_of_another_place_adds_colour_and_never_takes_it():
    """Where the model colours a thing more strongly than a near-gray photo does (the film's red brick, the
    photo's white house), the photo is not trusted there; where the model is grayer, it is."""
    feats, ref = photo_of_two_places([[3.0, 3.0], [0.0, 0.0]], [[3.0, 3.0], [0.0, 0.0]])
    y = np.full((64, 128), 0.5, np.float32)
    label = np.zeros((2, 64, 128), np.float32)
    label[0, :, 64:] = 20.0   # the model colours the right half; the left it leaves gray
    _, conf = ReferenceGuide(features=None).transfer(y, feats, ref, label)
    _, conf_all = ReferenceGuide(features=None, add_only=0).transfer(y, feats, ref, label)
    assert conf_all[32, 112] > 0.5 and conf[32, 112] == 0
    assert conf[32, 16] == pytest.approx(conf_all[32, 16]) and conf[32, 16] > 0.9


def test_the_model_colours_only_the_references_of_another_place(colorizer):
    """A keyframe is matched by features alone: the model runs once per photo of another place, for its label."""
    frames = colour_scene(6, seed=7) + colour_scene(6, seed=9)  # two shots
    elsewhere = patterned_scene(1, seed=8)[0]
    seen = []

    def predict(y):
        seen.append(y.shape[0])
        return colorizer.label_ab(y)

    track = ReferenceTrack([frames[2], elsewhere], FeatureExtractor(colorizer.model, colorizer.device),
                           pinned=[None, 9], predict=predict)
    ys = np.stack([luma_of(f) / 255 for f in frames]).astype(np.float32)
    served = track.plan([ys], warn=False)
    assert sorted((sv.ref, sv.elsewhere) for sv in served) == [(0, False), (1, True)]
    assert seen == [1]
    assert track.refs[0].label_small is None and track.refs[1].label_small.shape[0] == 2


def test_unreadable_reference_is_one_line_naming_the_file(tmp_path):
    missing = tmp_path / "missing.png"
    with pytest.raises(InvalidInput, match="missing.png: no such file") as err:
        load_reference(missing)
    assert "\n" not in str(err.value)
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    with pytest.raises(InvalidInput, match="notes.png: not an image that can be read; save it as PNG") as err:
        load_reference(bad)
    assert "\n" not in str(err.value)
    good = tmp_path / "key.png"
    cv2.imwrite(str(good), np.dstack([np.full((8, 9), v, np.uint8) for v in (10, 20, 30)]))  # BGR on disk
    rgb = load_reference(good)
    assert rgb.shape == (8, 9, 3) and tuple(rgb[0, 0]) == (30, 20, 10)


def test_non_finite_model_output_never_reaches_the_picture(colorizer):
    frames = colour_scene(4, seed=7)
    track = ReferenceTrack([frames[0]], FeatureExtractor(colorizer.model))
    ys = [luma_of(f).astype(np.float32) / 255 for f in frames]
    track.plan([np.stack(ys)])
    feats = list(track.features(torch.from_numpy(np.stack(ys))[:, None]))
    fresh = [np.full((2, 96, 128), np.nan, np.float32) for _ in frames]
    out = track.run(range(4), ys, fresh, feats)
    assert all(np.isfinite(o).all() for o in out)


# --------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------


def gray_video(path, frames: list[np.ndarray], rate: int = 24):
    """A lossless (ffv1, yuv444p) video of the frames' BT.601 luma, neutral chroma, full range."""
    import av

    with av.open(str(path), "w") as out:
        s = out.add_stream("ffv1", rate=rate)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv444p"
        s.codec_context.color_range = 2
        for f in frames:
            y = np.clip(luma_of(f) + 0.5, 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(np.stack([y, np.full_like(y, 128), np.full_like(y, 128)]),
                                               format="yuv444p")
            frame.color_range = 2
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def decoded_rgb(path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def vidcolor(capsys, *args) -> tuple[int, str]:
    from vidcolor.cli import main

    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().err


def test_cli_reference_colours_the_shot_backward_and_forward(capsys, colorizer, tmp_path):
    frames = colour_scene(8, seed=8)
    src = gray_video(tmp_path / "film.mkv", frames)
    key = tmp_path / "key.png"
    cv2.imwrite(str(key), cv2.cvtColor(frames[4], cv2.COLOR_RGB2BGR))
    rc, err = vidcolor(capsys, src, "--reference", key, "--codec", "ffv1", "-o", tmp_path / "out.mkv", "--quiet")
    assert rc == 0, err
    out = decoded_rgb(tmp_path / "out.mkv")
    assert len(out) == 8
    plain = colorizer.colorize_rgb([f.copy() for f in frames])
    err_ref = [ab_error(f, o) for f, o in zip(frames, out)]
    err_plain = np.mean([ab_error(f, o) for f, o in zip(frames, plain)])
    # the frames before the keyframe (read ahead) as well as after it
    assert max(err_ref) < err_plain / 3, (err_ref, err_plain)


def test_cli_reference_bad_inputs_are_one_line(capsys, tmp_path):
    frames = colour_scene(4, seed=9)
    src = gray_video(tmp_path / "film.mkv", frames)
    rc, err = vidcolor(capsys, src, "--reference", tmp_path / "nope.png", "-o", tmp_path / "a.mkv")
    assert rc == 1 and err.strip().splitlines() == [err.strip()] and "nope.png: no such file" in err
    assert not (tmp_path / "a.mkv").exists()
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8 not really")
    rc, err = vidcolor(capsys, src, "--reference", junk, "-o", tmp_path / "a.mkv")
    assert rc == 1 and len(err.strip().splitlines()) == 1 and "junk.jpg: not an image" in err
    key = tmp_path / "key.png"
    cv2.imwrite(str(key), cv2.cvtColor(frames[0], cv2.COLOR_RGB2BGR))
    rc, err = vidcolor(capsys, src, "--reference", key, "--reference-frame", "[1, 2]", "-o", tmp_path / "a.mkv")
    assert rc == 1 and len(err.strip().splitlines()) == 1 and "--reference-frame [1, 2]" in err
    rc, err = vidcolor(capsys, "-", "-o", "-", "--reference", key)
    assert rc == 1 and "not a pipe" in err
    rc, err = vidcolor(capsys, src, "--reference", key, "--keep-colour", "-o", tmp_path / "a.mkv")
    assert rc == 1 and len(err.strip().splitlines()) == 1 and "--keep-colour" in err
    assert not (tmp_path / "a.mkv").exists()


def test_cli_gray_reference_warns_in_one_line_and_still_colours(capsys, tmp_path):
    frames = colour_scene(4, seed=10)
    src = gray_video(tmp_path / "film.mkv", frames)
    gray = tmp_path / "gray.png"
    cv2.imwrite(str(gray), luma_of(frames[0]).round().astype(np.uint8))
    rc, err = vidcolor(capsys, src, "--reference", gray, "--codec", "ffv1", "-o", tmp_path / "out.mkv", "--quiet")
    assert rc == 0
    lines = [line for line in err.splitlines() if "warning" in line]
    assert len(lines) == 1 and "gray.png: the picture is gray" in lines[0], err
    out = decoded_rgb(tmp_path / "out.mkv")
    # the model's colour, not a gray film
    assert np.mean([ab_error(o, np.repeat(luma_of(o).round().astype(np.uint8)[..., None], 3, 2)) for o in out]) > 3


@pytest.mark.slow
def test_cli_reference_preview_shows_reference_gray_and_result(capsys, tmp_path):
    frames = colour_scene(6, seed=11)
    src = gray_video(tmp_path / "film.mkv", frames)
    key = tmp_path / "key.png"
    cv2.imwrite(str(key), cv2.cvtColor(frames[0], cv2.COLOR_RGB2BGR))
    rc, err = vidcolor(capsys, src, "--reference", key, "--preview", 2, "-o", tmp_path / "sheet.png", "--quiet")
    assert rc == 0, err
    sheet = cv2.imread(str(tmp_path / "sheet.png"))
    tile_h = round(96 * 320 / 128)
    assert sheet.shape == (2 * tile_h, 3 * 320, 3)
    # middle column gray, right column coloured, left column the reference's colour
    mid, right = sheet[:, 320:640].astype(int), sheet[:, 640:].astype(int)
    assert np.abs(mid[..., 0] - mid[..., 2])[30:].mean() < 2
    assert np.abs(right[..., 0] - right[..., 2])[30:].mean() > 10


def colour_video(path, frames: list[np.ndarray], rate: int = 24):
    """A lossless colour video (ffv1, yuv444p) of RGB frames."""
    import av

    with av.open(str(path), "w") as out:
        s = out.add_stream("ffv1", rate=rate)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv444p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv444p")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


@pytest.mark.slow
def test_eval_reference_middle_frame_gains_before_and_after(capsys, tmp_path):
    import json

    src = colour_video(tmp_path / "clip.mkv", colour_scene(7, seed=12))
    rc, err = vidcolor(capsys, "eval", src, "--reference", "middle", "--out", tmp_path / "eval", "--quiet")
    assert rc == 0, err
    rows = {r["name"]: r for r in json.loads((tmp_path / "eval" / "clip-reference.json").read_text())["rows"]}
    ref = rows["lite_unet+reference"]
    assert json.loads((tmp_path / "eval" / "clip-reference.json").read_text())["reference_frame"] == 3
    assert ref["gain_before"] > 3 and ref["gain_after"] > 3, ref
    assert ref["gain_shot"] > 3 and 0 <= ref["colourfulness_ratio_shot"] and ref["flicker_shot"] >= 0
    assert "lite_unet+stabilize" in rows and "| clip | 3 | 0-6 | lite_unet+reference |" in (
        tmp_path / "eval" / "reference.md").read_text()


@pytest.mark.slow
def test_vapoursynth_reference_colours_the_shot_whatever_the_request_order(tmp_path):
    vs = pytest.importorskip("vapoursynth")
    from vidcolor.plugins.vs import colorize

    core = vs.core
    frames = colour_scene(6, seed=13)
    key = tmp_path / "key.png"
    cv2.imwrite(str(key), cv2.cvtColor(frames[3], cv2.COLOR_RGB2BGR))

    def clip():
        base = core.std.BlankClip(width=128, height=96, format=vs.GRAYS, length=6, fpsnum=24, fpsden=1)

        def fill(n, f):
            g = f.copy()
            np.copyto(np.asarray(g[0]), (luma_of(frames[n]) / 255).astype(np.float32))
            return g

        return core.std.ModifyFrame(base, base, fill)

    def rgb(frame) -> np.ndarray:
        return np.stack([np.clip(np.asarray(frame[p]) * 255 + 0.5, 0, 255).astype(np.uint8) for p in range(3)], -1)

    forward = colorize(clip(), reference=str(key), batch=4)
    ahead = [rgb(forward.get_frame(n)) for n in range(6)]
    backward = colorize(clip(), reference=str(key), batch=4)
    behind = [rgb(backward.get_frame(n)) for n in reversed(range(6))][::-1]
    assert all(np.array_equal(a, b) for a, b in zip(ahead, behind))
    err = [ab_error(f, o) for f, o in zip(frames, ahead)]
    assert max(err) < 12, err
    with pytest.raises(vs.Error, match="nope.png: no such file"):
        colorize(clip(), reference=str(tmp_path / "nope.png"))
    with pytest.raises(vs.Error, match="leave temporal=None"):
        colorize(clip(), reference=str(key), temporal="stabilize")


@pytest.mark.slow
def test_batch_references_folder_matched_by_file_name(capsys, tmp_path):
    frames_a, frames_b = colour_scene(6, seed=14), colour_scene(4, seed=15)
    films = tmp_path / "films"
    films.mkdir()
    gray_video(films / "reel_a.mkv", frames_a)
    gray_video(films / "reel_b.mkv", frames_b)
    refs = tmp_path / "refs"
    refs.mkdir()
    cv2.imwrite(str(refs / "reel_a.key.png"), cv2.cvtColor(frames_a[2], cv2.COLOR_RGB2BGR))
    rc, err = vidcolor(capsys, "batch", films, "-o", tmp_path / "out", "--references", tmp_path / "nope",
                       "--jobs", "1")
    assert rc == 1 and "--references" in err and "not a folder" in err
    rc, err = vidcolor(capsys, "batch", films, "-o", tmp_path / "out", "--references", refs, "--jobs", "1",
                       "--codec", "ffv1", "--quiet")
    assert rc == 0, err
    out_a = decoded_rgb(tmp_path / "out" / "reel_a.mkv")
    out_b = decoded_rgb(tmp_path / "out" / "reel_b.mkv")
    assert len(out_a) == 6 and len(out_b) == 4
    err_a = [ab_error(f, o) for f, o in zip(frames_a, out_a)]
    err_b = [ab_error(f, o) for f, o in zip(frames_b, out_b)]
    assert max(err_a) < 12 and np.mean(err_b) > 2 * max(err_a), (err_a, err_b)


@pytest.mark.filterwarnings("ignore:photo.png. its aspect ratio")  # said, and meant: a wider picture
def test_eval_reference_photo_of_another_framing_raises_the_hue_share(capsys, tmp_path):
    """`vidcolor eval --reference-photo`: a picture of the same kind of scene, not a frame of the clip
    (here further along the pan, so it shares colours but no frame), given to the clip's first shot."""
    import json

    src = colour_video(tmp_path / "clip.mkv", patterned_scene(6, seed=5))
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), cv2.cvtColor(patterned_scene(1, seed=5, start=40, w=160)[0], cv2.COLOR_RGB2BGR))
    rc, err = vidcolor(capsys, "eval", src, "--reference-photo", photo, "--out", tmp_path / "eval", "--quiet")
    assert rc == 0, err
    report = json.loads((tmp_path / "eval" / "clip-photo.json").read_text())
    rows = {r["name"]: r for r in report["rows"]}
    ref = rows["lite_unet+reference"]
    assert report["photo"] == str(photo) and ref["served"] == 6
    assert ref["gain_hue"] > 0.1 and ref["hue_share"] > rows["lite_unet"]["hue_share"], ref
    assert ref["gain_hue_steadied"] > 0.1 and ref["hue_share"] > rows["lite_unet+stabilize"]["hue_share"], ref
    assert "| clip | photo.png | lite_unet+reference | 6 |" in (tmp_path / "eval" / "photo.md").read_text()
    # one photo per source, or one line saying so
    rc, err = vidcolor(capsys, "eval", src, src, "--reference-photo", photo, "--out", tmp_path / "eval2", "--quiet")
    assert rc == 1 and "one --reference-photo per source" in err and len(err.strip().splitlines()) == 1
