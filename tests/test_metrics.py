"""Checks of vidcolor.eval.metrics and vidcolor.eval.evaluate on small synthetic media."""

from __future__ import annotations

import json
import math
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from vidcolor.eval import metrics as m
from vidcolor.errors import InvalidInput
from vidcolor.eval.evaluate import evaluate, markdown_table


def _texture(seed: int, h: int, w: int) -> np.ndarray:
    """Smooth random colour texture with strong contrast (good for optical flow)."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (h, w, 3), dtype=np.uint8).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 3)
    return np.clip((smooth - smooth.mean()) * 4 + 128, 0, 255).astype(np.uint8)


def _translating(n: int, h: int, w: int, seed: int = 1) -> list[np.ndarray]:
    """n frames of a window sliding over a texture, 1 px down and 2 px right per frame."""
    tex = _texture(seed, h + 2 * n + 20, w + 2 * n + 20)
    return [np.ascontiguousarray(tex[10 + t : 10 + t + h, 10 + 2 * t : 10 + 2 * t + w]) for t in range(n)]


def _swap_rb(frame: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(frame[:, :, ::-1])


# --- PSNR / SSIM ---------------------------------------------------------


def test_psnr_identical_is_inf():
    frame = _texture(0, 24, 32)
    assert m.psnr(frame, frame) == math.inf


def test_psnr_known_values():
    zeros = np.zeros((8, 8, 3), np.uint8)
    assert m.psnr(zeros, zeros + 1) == pytest.approx(10 * math.log10(255**2))  # MSE 1
    one_channel = zeros.copy()
    one_channel[:, :, 1] = 10  # MSE = 100 / 3
    assert m.psnr(zeros, one_channel) == pytest.approx(10 * math.log10(255**2 * 3 / 100))


def test_psnr_rejects_mismatched_frames():
    with pytest.raises(ValueError):
        m.psnr(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8))
    with pytest.raises(ValueError):
        m.psnr(np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 3), np.float32))


def test_ssim_matches_skimage_gaussian_ssim():
    from skimage.metrics import structural_similarity

    ref = _texture(2, 48, 64)
    rng = np.random.default_rng(3)
    assert m.ssim(ref, ref) == pytest.approx(1.0)
    previous = 1.0
    for noise in (3, 15, 60):
        out = np.clip(ref.astype(int) + rng.integers(-noise, noise + 1, ref.shape), 0, 255).astype(np.uint8)
        expected = structural_similarity(
            ref, out, channel_axis=2, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        value = m.ssim(ref, out)
        assert value == pytest.approx(expected, abs=1e-4)
        assert value < previous
        previous = value


# --- ab errors and AuC ---------------------------------------------------


def test_ab_errors_known_values():
    frame = _texture(4, 16, 16)
    assert np.all(m.ab_errors(frame, frame) == 0)
    red = np.zeros((4, 4, 3), np.uint8)
    red[:, :, 0] = 255
    black = np.zeros_like(red)
    # sRGB red is a* = 80.1, b* = 67.2 in CIE Lab; black has a* = b* = 0
    assert m.ab_errors(red, black) == pytest.approx(np.full((4, 4), math.hypot(80.1, 67.2)), abs=1.0)
    # gray keeps L but drops chroma: the distance is the original's chroma
    gray = m.gray_baseline(red)
    assert m.ab_errors(red, gray).mean() > 90


def test_auc_curve_counts_within_threshold():
    curve = m.auc_curve(np.array([0.0, 0.5, 1.0, 200.0]), thresholds=[0, 1, 2])
    assert curve.tolist() == [0.25, 0.75, 0.75]
    assert len(m.auc_curve(np.zeros(5))) == 151


def test_auc_identical_is_one_and_shifted_is_less():
    frame = _texture(5, 32, 32)
    assert m.auc_curve(m.ab_errors(frame, frame)).mean() == 1.0
    shifted = m.auc_curve(m.ab_errors(frame, _swap_rb(frame))).mean()
    assert 0 < shifted < 1
    assert m.auc_curve(m.ab_errors(frame, m.gray_baseline(frame))).mean() < 1


def test_auc_accumulator_equals_pooled_curve():
    rng = np.random.default_rng(6)
    parts = [rng.uniform(0, 180, size) for size in (100, 37, 1)] + [np.array([0.0, 3.0, 150.0, 151.0])]
    acc = m.AucAccumulator()
    assert math.isnan(acc.value())
    for part in parts:
        acc.add(part)
    pooled = m.auc_curve(np.concatenate(parts))
    np.testing.assert_allclose(acc.curve(), pooled)
    assert acc.value() == pytest.approx(pooled.mean())
    assert acc.total == sum(p.size for p in parts)


# --- colourfulness and the gray baseline ---------------------------------


def test_colourfulness_gray_is_zero_and_colour_is_positive():
    frame = _texture(7, 32, 32)
    assert m.colourfulness(m.gray_baseline(frame)) == 0.0
    assert m.colourfulness(np.full((8, 8, 3), 77, np.uint8)) == 0.0
    assert m.colourfulness(frame) > 10
    red = np.zeros((8, 8, 3), np.uint8)
    red[:, :, 0] = 255
    # uniform red: no spread, mean rg = 255, mean yb = 127.5
    assert m.colourfulness(red) == pytest.approx(0.3 * math.hypot(255, 127.5))


def test_gray_baseline_is_bt601_luma():
    frame = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 200, 30]]], np.uint8)
    gray = m.gray_baseline(frame)
    assert gray.dtype == np.uint8 and gray.shape == frame.shape
    assert np.all(gray[:, :, 0] == gray[:, :, 1]) and np.all(gray[:, :, 1] == gray[:, :, 2])
    assert gray[0, :, 0].tolist() == [76, 150, 29, round(0.299 * 10 + 0.587 * 200 + 0.114 * 30)]


# --- flicker -------------------------------------------------------------


def test_flicker_meter_separates_steady_and_alternating_colour():
    frames = _translating(6, 72, 96)
    meter = m.FlickerMeter()
    steps = []
    for t, frame in enumerate(frames):
        versions = {
            "same": frame.copy(),
            "alternating": frame if t % 2 == 0 else _swap_rb(frame),
            "gray": m.gray_baseline(frame),
        }
        steps.append(meter.update(frame, versions))
    assert steps[0] is None
    for step in steps[1:]:
        warp = step["warp"]
        assert step["valid"] > 0.8
        assert warp["original"] < 0.5
        assert warp["same"] == pytest.approx(warp["original"])
        assert warp["gray"] < 0.1
        assert warp["alternating"] > 10
        assert step["cdc"]["gray"] == 0.0
        assert step["cdc"]["alternating"] > 5 * step["cdc"]["original"]


def test_flicker_meter_state_handling():
    frames = _translating(3, 40, 48)
    meter = m.FlickerMeter()
    with pytest.raises(ValueError):
        meter.update(frames[0], {"original": frames[0]})
    assert meter.update(frames[0]) is None
    assert meter.update(frames[1]) is not None
    assert meter.update(_texture(8, 30, 30)) is None  # a size change starts afresh
    meter.reset()
    assert meter.update(frames[2]) is None


# --- evaluate ------------------------------------------------------------


def _write_video(path: Path, frames: list[np.ndarray], fps: int = 10) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 2_000_000
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def _gray_colorizer(frames: list[np.ndarray]) -> list[np.ndarray]:
    return [m.gray_baseline(f) for f in frames]


def _copy_colorizer(frames: list[np.ndarray]) -> list[np.ndarray]:
    # cheats (keeps the chroma) to give the metrics' perfect end
    return [f.copy() for f in frames]


def test_evaluate_video(tmp_path):
    video = tmp_path / "clip.mp4"
    _write_video(video, _translating(12, 48, 64))
    out = tmp_path / "report"
    result = evaluate(video, {"mono": _gray_colorizer, "perfect": _copy_colorizer}, out, batch=5, progress=False)

    for suffix in (".json", ".md", ".png"):
        assert (out / f"clip{suffix}").stat().st_size > 0
    assert result["frames"] == 12 and result["source_fps"] == pytest.approx(10)
    assert (result["width"], result["height"]) == (64, 48)
    rows = {row["name"]: row for row in result["rows"]}
    assert list(rows) == ["mono", "perfect", "gray", "original"]

    gray = rows["gray"]
    assert gray["colourfulness_ratio"] < 0.01
    assert 10 < gray["psnr"] < 60 and 0 < gray["ssim"] < 1 and 0 < gray["ab_auc"] < 1
    assert rows["mono"]["psnr"] == pytest.approx(gray["psnr"])
    assert math.isfinite(rows["original"]["flicker"]) and rows["original"]["flicker"] >= 0
    assert gray["flicker"] < rows["original"]["flicker"] + 1e-6
    perfect = rows["perfect"]
    assert perfect["psnr"] == math.inf and perfect["ab_auc"] == 1.0
    assert perfect["colourfulness_ratio"] == pytest.approx(1.0)
    assert perfect["flicker_ratio"] == pytest.approx(1.0)
    assert gray["frames"] == 12 and gray["seconds"] >= 0

    saved = json.loads((out / "clip.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert saved["rows"][1]["psnr"] is None  # inf is written as null
    assert len(saved["per_frame"]["psnr"]["gray"]) == 12
    assert len(saved["per_frame"]["flicker"]["original"]) == 12
    md = (out / "clip.md").read_text()
    assert "| clip | gray |" in md and "| clip | original |" in md
    assert (out / "clip.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_image_folder_and_limits(tmp_path):
    folder = tmp_path / "shots"
    folder.mkdir()
    frames = _translating(11, 40, 56, seed=9)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"f{i}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (folder / "notes.txt").write_text("not an image")

    full = evaluate(folder, {}, tmp_path / "out", progress=False)
    rows = {row["name"]: row for row in full["rows"]}
    assert full["kind"] == "images" and full["frames"] == 11
    # natural order (f2 before f10) keeps the motion smooth: a low floor
    assert rows["original"]["flicker"] < 1.0
    assert rows["gray"]["colourfulness_ratio"] < 0.01

    part = evaluate(folder, {"mono": _gray_colorizer}, tmp_path / "out2", batch=3, max_frames=7, progress=False)
    assert part["frames"] == 7 and all(row["frames"] == 7 for row in part["rows"])

    table = markdown_table([full, part])
    assert table.count("\n") == 2 + len(full["rows"]) + len(part["rows"])
    assert "| shots | mono |" in table


def test_evaluate_rejects_bad_sources(tmp_path):
    with pytest.raises(InvalidInput, match="no such file"):
        evaluate(tmp_path / "missing.mp4", {}, tmp_path / "out", progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidInput, match="no images"):
        evaluate(empty, {}, tmp_path / "out", progress=False)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 50)
    with pytest.raises(InvalidInput) as info:
        evaluate(junk, {}, tmp_path / "out", progress=False)
    assert "junk.mp4" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_evaluate_rejects_bad_colorizers(tmp_path):
    folder = tmp_path / "shots"
    folder.mkdir()
    for i, frame in enumerate(_translating(3, 24, 32)):
        cv2.imwrite(str(folder / f"{i}.png"), frame)
    with pytest.raises(ValueError, match="reserved"):
        evaluate(folder, {"gray": _gray_colorizer}, tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="'small'"):
        evaluate(folder, {"small": lambda fs: [f[:-1] for f in fs]}, tmp_path / "out", progress=False)


def test_old_film_degrader_is_deterministic_and_damages_only_luma():
    from vidcolor.eval.degrade import OldFilm

    rgb = (np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8)
    film = OldFilm(seed=3)
    a, b = film(5, rgb), film(5, rgb)
    assert np.array_equal(a, b)  # a pure function of (seed, frame)
    assert a.shape == rgb.shape and np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2])
    y = (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114)
    err = np.abs(a[..., 0].astype(float) - y)
    assert 3 < err.mean() < 60  # damaged, but still the picture
    assert np.corrcoef(a[..., 0].ravel(), y.ravel())[0, 1] > 0.6
    # frame-to-frame luminance flicker: the mean level moves between frames of a still scene
    means = [OldFilm(seed=3)(i, rgb)[..., 0].mean() for i in range(12)]
    assert np.std(means) > 2
    assert not np.array_equal(film(6, rgb), a)


def test_old_film_damage_kinds_alone_are_the_full_damages_parts():
    from vidcolor.eval.degrade import KINDS, OldFilm

    rgb = (np.random.default_rng(1).random((120, 160, 3)) * 255).astype(np.uint8)
    full, part = OldFilm(seed=2), OldFilm.only(["flicker", "grain"], seed=2)
    assert full.name == "oldfilm" and part.name == "oldfilm-flicker+grain"
    assert OldFilm.only([]).name == "oldfilm-none" and OldFilm.only(KINDS).name == "oldfilm"
    a, b = full(4, rgb)[..., 0], part(4, rgb)[..., 0]
    # the same exposure and grain draws: the frames differ only where a scratch or a speck is
    differ = a != b
    assert 0 < differ.mean() < 0.1
    # nothing but the clean luma, rounded, when every kind is off
    y = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    assert np.abs(OldFilm.only([])(4, rgb)[..., 0] - y).max() <= 0.5 + 1e-3
    with pytest.raises(ValueError, match="unknown damage mould; choose from flicker, grain, scratches, dust"):
        OldFilm.only(["grain", "mould"])


def test_eval_cli_scores_chosen_damage_kinds(tmp_path, capsys):
    from vidcolor.cli import main

    video = tmp_path / "clip.mp4"
    _write_video(video, _translating(6, 48, 64))
    out = tmp_path / "r"
    assert main(["eval", str(video), "--model", "iizuka2016", "--degrade", "--damage", "grain,dust",
                 "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "clip-oldfilm-grain+dust.json").read_text())
    rows = {r["name"]: r for r in report["rows"]}
    assert report["frames"] == 6 and rows.keys() >= {"iizuka2016", "gray", "iizuka2016, clean",
                                                     "iizuka2016, clean colour on damaged L"}
    # the clean twin is the same model on the clean clip: the rise is measured in one run
    assert rows["iizuka2016"]["flicker_rise"] == pytest.approx(
        rows["iizuka2016"]["flicker"] / rows["iizuka2016, clean"]["flicker"])
    capsys.readouterr()
    assert main(["eval", str(video), "--damage", "grain", "--out", str(out), "--quiet"]) != 0
    assert "add --degrade" in capsys.readouterr().err
    assert main(["eval", str(video), "--degrade", "--damage", "mould", "--out", str(out), "--quiet"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--damage mould" in err and "choose from flicker" in err
    # was a traceback (a bare ValueError)
    assert main(["eval", str(video), "--max-frames", "0", "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--max-frames 0: give at least 1" in err


def test_evaluate_degraded_scores_against_the_clean_original(tmp_path):
    from vidcolor.eval.degrade import OldFilm

    video = tmp_path / "clip.mp4"
    _write_video(video, _translating(8, 48, 64))
    seen = []

    def keep(frames):
        seen.append(frames[0].copy())
        return _copy_colorizer(frames)

    result = evaluate(video, {"copy": keep}, tmp_path / "r", batch=4, progress=False, degrade=OldFilm())
    assert (tmp_path / "r" / "clip-oldfilm.json").is_file()
    rows = {row["name"]: row for row in result["rows"]}
    assert np.array_equal(seen[0][..., 0], seen[0][..., 2])  # the colorizer saw gray, damaged frames
    assert rows["copy"]["psnr"] < 40  # scored against the clean colour original, which it never saw
    # the floor of the damaged clip: the original's colour on the damaged lightness, flickering
    # more than the clean original (the damage changes L frame to frame) but keeping its colour
    from vidcolor.eval.evaluate import DAMAGED

    floor = rows[DAMAGED]
    assert floor["flicker"] > rows["original"]["flicker"]
    assert 0.6 < floor["colourfulness_ratio"] < 1.4 and floor["ab_auc"] > rows["gray"]["ab_auc"]
    assert DAMAGED in (tmp_path / "r" / "clip-oldfilm.md").read_text()


def _tinted(frames: list[np.ndarray], a: float, b: float) -> list[np.ndarray]:
    out = []
    for f in frames:
        lab = cv2.cvtColor(m.gray_baseline(f).astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
        lab[:, :, 1], lab[:, :, 2] = a, b
        out.append((np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB), 0, 1) * 255 + 0.5).astype(np.uint8))
    return out


def test_evaluate_degraded_against_the_colorizers_own_clean_run(tmp_path):
    from vidcolor.eval.degrade import OldFilm
    from vidcolor.eval.evaluate import CLEAN, CLEAN_ON_DAMAGED

    video = tmp_path / "clip.mp4"
    _write_video(video, _translating(10, 48, 64))
    seen = {"sepia": [], "sepia, clean": []}

    def sepia(name):
        def colorize(frames):  # one colour whatever the frame: the damage cannot move it
            seen[name].append(frames[0].copy())
            return _tinted(frames, 6.0, 18.0)
        return colorize

    def exposed(frames):  # its colour follows each frame's brightness, as a naive model's can
        return [_tinted([f], 0.0, 60.0 * float(m.luma(f).mean()) / 255.0)[0] for f in frames]

    result = evaluate(video, {"sepia": sepia("sepia"), "exposed": exposed}, tmp_path / "r", batch=4,
                      progress=False, degrade=OldFilm.only(["flicker", "grain"]),
                      clean={"sepia": sepia("sepia, clean"), "exposed": exposed})
    rows = {row["name"]: row for row in result["rows"]}
    assert {"sepia" + CLEAN, "sepia" + CLEAN_ON_DAMAGED, "exposed" + CLEAN} <= rows.keys()
    # the twin saw the colour original, the colorizer the gray damaged copy
    assert not np.array_equal(seen["sepia, clean"][0][..., 0], seen["sepia, clean"][0][..., 2])
    assert np.array_equal(seen["sepia"][0][..., 0], seen["sepia"][0][..., 2])
    sep, exp = rows["sepia"], rows["exposed"]
    assert sep["flicker_rise"] == pytest.approx(sep["flicker"] / rows["sepia" + CLEAN]["flicker"])
    # an unchanged colour measures several times higher on the damaged lightness (8-bit rounding at a
    # lightness that changes every frame: 0.05 -> 0.3 ab here); against that, it hardly rises (1.2:
    # rounding the colour twice is not rounding it once)
    assert rows["sepia" + CLEAN_ON_DAMAGED]["flicker"] > 3 * rows["sepia" + CLEAN]["flicker"]
    assert sep["flicker_rise_same_colour"] < min(1.3, sep["flicker_rise"] / 3)
    assert exp["flicker_rise_same_colour"] > 2 * sep["flicker_rise_same_colour"]
    assert "flicker_rise" not in rows["sepia" + CLEAN] and "flicker_rise" not in rows["gray"]
    # the twin's time is its own; the references made from other rows' outputs take none
    assert rows["sepia" + CLEAN]["seconds"] > 0 and rows["sepia" + CLEAN_ON_DAMAGED]["seconds"] is None
    report = (tmp_path / "r" / "clip-oldfilm-flicker+grain.md").read_text()
    assert "- Rise under the damage" in report
    assert f"  - sepia: {sep['flicker_rise']:.2f}x, {sep['flicker_rise_same_colour']:.2f}x\n" in report
    with pytest.raises(ValueError, match="give degrade too"):
        evaluate(video, {"sepia": sepia("sepia")}, tmp_path / "r", clean={"sepia": sepia("sepia")})
    with pytest.raises(ValueError, match="reserved"):
        evaluate(video, {"x" + CLEAN: exposed}, tmp_path / "r", degrade=OldFilm())
    with pytest.raises(ValueError, match="unknown colorizers: other"):
        evaluate(video, {"sepia": sepia("sepia")}, tmp_path / "r", degrade=OldFilm(), clean={"other": exposed})


def test_hue_hits_counts_clearly_coloured_pixels_within_45_degrees():
    from vidcolor.eval.metrics import hue_hits

    ref = np.zeros((4, 8, 3), np.uint8)
    ref[:2] = (200, 40, 40)   # red: chroma far above 15
    ref[2:] = (128, 128, 128)  # gray: not counted
    same_hue = ref.copy()
    same_hue[:2] = (150, 80, 80)  # a paler red
    green = ref.copy()
    green[:2] = (40, 200, 40)
    assert hue_hits(ref, same_hue) == (16, 16)
    assert hue_hits(ref, green) == (0, 16)
    assert hue_hits(ref, np.full_like(ref, 128)) == (0, 16)  # gray output has no hue


def test_evaluate_a_folder_of_photos_of_different_sizes(tmp_path):
    """Photos are not frames of one video: each goes through the colorizer on its own."""
    from vidcolor.colorizer import Colorizer
    from vidcolor.runtime import Runtime

    rng = np.random.default_rng(3)
    for i, (h, w) in enumerate([(48, 64), (64, 40), (50, 50)]):
        cv2.imwrite(str(tmp_path / f"p{i}.png"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    c = Colorizer("zhang2016", None, Runtime(device="cpu"))
    res = evaluate(tmp_path, {"zhang2016": c.colorize_rgb}, tmp_path / "out", progress=False)
    assert res["frames"] == 3 and {r["name"] for r in res["rows"]} >= {"zhang2016", "gray"}
