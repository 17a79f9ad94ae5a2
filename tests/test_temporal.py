"""Scene cuts and the stabilizer (vidcolor.temporal), on synthetic sequences and the evaluation videos.

Nothing is mocked: synthetic scenes are real textured pictures moving in
known ways, the evaluation videos are decoded with PyAV, and the stabilized
colorizer runs the shipped model.
"""

from __future__ import annotations

import pathlib

import av
import cv2
import numpy as np
import pytest
import torch

from vidcolor.temporal import Deflicker, SceneCutDetector, Stabilizer, warmup_frames

EVAL = pathlib.Path(__file__).resolve().parent.parent / "data" / "eval"

# Frames that start a new shot (a cut lies between frame n-1 and frame n),
# marked by hand from contact sheets of every frame and full-size views of
# the frames on both sides of each cut: bikes.mp4 (250 frames) has five hard
# cuts and no gradual transition; the other evaluation videos are single shots.
HAND_MARKED_CUTS = {
    "bikes.mp4": [30, 76, 137, 187, 242],
    "tree.avi": [],
    "carphone_pristine.mp4": [],
    "vtest.avi": [],
}


def decode_luma(path: pathlib.Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="gray") for f in c.decode(video=0)]


def need(name: str) -> pathlib.Path:
    path = EVAL / name
    if not path.exists():
        pytest.skip(f"{path} is absent: build the evaluation videos with `vidcolor data`")
    return path


# --------------------------------------------------------------------------
# synthetic scenes: a big canvas seen through a moving window
# --------------------------------------------------------------------------


def canvas(seed: int, h: int = 400, w: int = 400) -> np.ndarray:
    """A textured picture (float 0..1): smoothed noise at two scales plus a gradient."""
    rng = np.random.default_rng(seed)
    coarse = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 6)
    fine = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 1.5)
    x = 0.5 * (coarse - coarse.mean()) / coarse.std() + 0.3 * (fine - fine.mean()) / fine.std()
    x += np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :] * (1 if seed % 2 else -1)
    return np.clip(0.5 + 0.18 * x, 0.0, 1.0).astype(np.float32)


def chroma_canvas(h: int = 400, w: int = 400) -> np.ndarray:
    """A smooth ab field (2, h, w) painted on the same canvas: it moves with the picture."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([30 * np.sin(xx / 23.0) * np.cos(yy / 31.0), 25 * np.cos(xx / 17.0 + yy / 29.0)])


def window(img: np.ndarray, t: int, velocity=(2, 1), h: int = 72, w: int = 96, origin=(100, 100)) -> np.ndarray:
    y0, x0 = origin[0] + velocity[1] * t, origin[1] + velocity[0] * t
    return img[..., y0:y0 + h, x0:x0 + w].copy()


def shots(lengths=(12, 15, 10), flicker: float = 0.0, seed: int = 0) -> tuple[list[np.ndarray], list[int]]:
    """Consecutive shots of different canvases, each panning its own way; returns frames and cut indices."""
    rng = np.random.default_rng(seed)
    velocities = [(2, 1), (-3, 0), (1, -2)]
    frames, cuts = [], []
    for k, n in enumerate(lengths):
        if k:
            cuts.append(len(frames))
        img = canvas(10 + k)
        for t in range(n):
            f = window(img, t, velocities[k % 3])
            if flicker:
                f = f * rng.uniform(1 - flicker, 1 + flicker) + rng.uniform(-flicker / 3, flicker / 3)
            frames.append(np.clip(f + rng.normal(0, 0.01, f.shape), 0, 1).astype(np.float32))
    return frames, cuts


# --------------------------------------------------------------------------
# scene cuts
# --------------------------------------------------------------------------


def test_detector_finds_synthetic_cuts_in_every_input_type():
    frames, cuts = shots()
    assert SceneCutDetector().detect(frames) == cuts
    as_u8 = [np.round(f * 255).astype(np.uint8) for f in frames]
    as_u16 = [np.round(f * 65535).astype(np.uint16) for f in frames]
    as_torch = [torch.from_numpy(f)[None, None] for f in frames]
    for seq in (as_u8, as_u16, as_torch):
        assert SceneCutDetector().detect(seq) == cuts


def test_detector_ignores_luminance_flicker_but_not_cuts():
    frames, cuts = shots(flicker=0.3, seed=1)
    assert SceneCutDetector().detect(frames) == cuts
    one_shot, _ = shots(lengths=(30,), flicker=0.35, seed=2)
    assert SceneCutDetector().detect(one_shot) == []


def test_detector_fade_through_black_is_one_cut_at_the_new_picture():
    frames, cuts = shots(lengths=(20, 20))
    out = [f * min(1.0, max(0.0, (19 - i) / 8)) for i, f in enumerate(frames[:20])]  # fade out, 2 black frames
    inn = [f * min(1.0, (i + 1) / 8) for i, f in enumerate(frames[20:])]  # fade in
    seq = [np.round(f * 255).astype(np.uint8) for f in out + inn]
    assert SceneCutDetector().detect(seq) == [20]


def test_detector_a_single_flash_frame_is_at_most_one_cut():
    frames, _ = shots(lengths=(30,))
    frames[15] = np.clip(frames[15] * 2.5, 0, 1)  # overexposed: the structure is partly lost
    found = SceneCutDetector().detect(frames)
    assert found in ([], [15])


def test_detector_answer_depends_only_on_lookback_frames():
    frames, cuts = shots(lengths=(40, 30), flicker=0.2, seed=3)
    sequential = SceneCutDetector().detect(frames)
    assert sequential == cuts
    det = SceneCutDetector()
    for t in range(det.lookback, len(frames)):
        det.reset()
        answers = [det.update(f) for f in frames[t - det.lookback:t + 1]]
        assert answers[-1] == (t in sequential), t


def _precision_recall(found: list[int], truth: list[int]) -> tuple[float, float]:
    tp = len(set(found) & set(truth))
    precision = tp / len(found) if found else 1.0
    recall = tp / len(truth) if truth else 1.0
    return precision, recall


def test_detector_on_bikes_matches_the_hand_marked_cuts():
    frames = decode_luma(need("bikes.mp4"))
    assert len(frames) == 250
    found = SceneCutDetector().detect(frames)
    precision, recall = _precision_recall(found, HAND_MARKED_CUTS["bikes.mp4"])
    # all five cuts, nothing else (the fast pan around frames 97-102 scores about half the threshold)
    assert (precision, recall) == (1.0, 1.0), found
    # the same on the luma at the model's working size, which the stabilized colorizer feeds it
    small = [cv2.resize(f, (304, 128), interpolation=cv2.INTER_AREA) for f in frames]
    assert SceneCutDetector().detect(small) == HAND_MARKED_CUTS["bikes.mp4"]


def test_detector_on_bikes_degraded_like_old_film():
    frames = decode_luma(need("bikes.mp4"))
    rng = np.random.default_rng(0)
    old = []
    for f in frames:
        x = f.astype(np.float32) / 255 * rng.uniform(0.7, 1.3) + rng.uniform(-0.08, 0.08)
        x += rng.normal(0, 0.05, x.shape).astype(np.float32)  # grain
        for _ in range(rng.integers(0, 3)):  # scratches
            c = int(rng.integers(0, x.shape[1] - 2))
            x[:, c:c + 2] += 0.4
        old.append(np.clip(x, 0, 1))
    assert SceneCutDetector().detect(old) == HAND_MARKED_CUTS["bikes.mp4"]


@pytest.mark.parametrize("name", ["tree.avi", "carphone_pristine.mp4",
                                  pytest.param("vtest.avi", marks=pytest.mark.slow)])
def test_detector_reports_no_cut_in_single_shots(name):
    frames = decode_luma(need(name))
    assert SceneCutDetector().detect(frames) == HAND_MARKED_CUTS[name]


# --------------------------------------------------------------------------
# the stabilizer
# --------------------------------------------------------------------------


def moving_scene(n: int = 30, jitter: float = 0.0, seed: int = 0, flicker: float = 0.0, velocity=(2, 1)):
    """Luma frames of a panning canvas, the true chroma moving with it, and 'fresh' predictions.

    The predictions are the truth plus, per frame, a global offset and pixel
    noise (each ``jitter`` ab units standard deviation): an image model whose
    colours wander from frame to frame.
    """
    rng = np.random.default_rng(seed)
    img, ab = canvas(5), chroma_canvas()
    ys, truth, fresh = [], [], []
    for t in range(n):
        y = window(img, t, velocity)
        if flicker:
            y = np.clip(y * rng.uniform(1 - flicker, 1 + flicker) + rng.uniform(-flicker / 3, flicker / 3), 0, 1)
        true = window(ab, t, velocity)
        noise = rng.normal(0, jitter, (2, 1, 1)) + rng.normal(0, jitter, true.shape)
        ys.append(y.astype(np.float32))
        truth.append(true.astype(np.float32))
        fresh.append((true + noise).astype(np.float32))
    return ys, truth, fresh


def temporal_jitter(frames, truth, start: int = 6, border: int = 8) -> float:
    """Mean over interior pixels of the standard deviation over time of (frame - truth)."""
    err = np.stack([f - t for f, t in zip(frames, truth)])[start:, :, border:-border, border:-border]
    return float(err.std(axis=0).mean())


def test_stabilizer_removes_most_jitter_of_a_moving_scene():
    ys, truth, fresh = moving_scene(jitter=4.0)
    out = Stabilizer().run(ys, fresh)
    before, after = temporal_jitter(fresh, truth), temporal_jitter(out, truth)
    assert after < 0.4 * before, (before, after)
    # and the colours stay where they belong: no drift from the truth on average
    err = np.stack([o - t for o, t in zip(out, truth)])[6:, :, 8:-8, 8:-8]
    assert abs(float(err.mean())) < 1.0


def test_stabilizer_keeps_jitter_low_under_luminance_flicker():
    ys, truth, fresh = moving_scene(jitter=4.0, flicker=0.25, seed=1)
    stab = Stabilizer()
    out = []
    confidences = []
    for y, f in zip(ys, fresh):
        out.append(stab.step(y, f))
        confidences.append(stab.last["confidence"])
    assert np.mean(confidences[1:]) > 0.6  # the flicker compensation keeps the warp trusted
    assert temporal_jitter(out, truth) < 0.4 * temporal_jitter(fresh, truth)


def test_stabilizer_trusts_the_warp_through_grain_but_not_over_an_occlusion():
    # film grain, new in every frame, fails a per-pixel luma test; the box mean of the
    # signed difference averages it out, while a patch that really changed still fails
    ys, truth, fresh = moving_scene(n=12, jitter=4.0, seed=2)
    rng = np.random.default_rng(3)
    grainy = [np.clip(y + rng.normal(0, 0.04, y.shape), 0, 1).astype(np.float32) for y in ys]
    grainy[-1][20:44, 30:54] = 0.95  # in the last frame something bright and new covers a 24x24 patch

    def run(frames, **kw):
        stab, confidences = Stabilizer(detector=None, **kw), []
        for y, f in zip(frames, fresh):
            stab.step(y, f)
            confidences.append(stab.last["confidence"])
        return stab, float(np.mean(confidences[1:-1]))

    _, clean = run(ys)
    per_pixel, per_pixel_conf = run(grainy, diff_box=1)
    boxed, boxed_conf = run(grainy)
    assert boxed.diff_box == 5
    assert boxed_conf > clean - 0.01 and per_pixel_conf < boxed_conf - 0.15, (clean, per_pixel_conf, boxed_conf)
    # over the new patch the fresh prediction wins: the output is near it, not the warp
    for stab in (per_pixel, boxed):
        patch = np.abs(stab._prev_out - fresh[-1])[:, 24:40, 34:50]
        assert float(patch.mean()) < 0.5, float(patch.mean())


def test_stabilizer_preserves_a_steady_prediction():
    # a model that is already steady (its colours move with the picture) is left alone
    ys, truth, fresh = moving_scene(jitter=0.0)
    out = Stabilizer().run(ys, fresh)
    err = np.abs(np.stack(out) - np.stack(truth))[:, :, 8:-8, 8:-8]
    assert float(err.mean()) < 0.5 and float(np.percentile(err, 99)) < 3.0
    # a still picture with a still prediction comes out unchanged
    still = [ys[0]] * 10
    pred = [truth[0]] * 10
    out = Stabilizer().run(still, pred)
    for o in out:
        np.testing.assert_allclose(o, truth[0], atol=1e-3)


def test_stabilizer_resets_at_a_cut():
    frames, cuts = shots(lengths=(15, 12))
    (cut,) = cuts
    rng = np.random.default_rng(0)
    h, w = frames[0].shape
    # shot A is predicted red-ish, shot B blue-ish, with jitter
    fresh = [np.stack([np.full((h, w), 40.0 if i < cut else -10.0), np.full((h, w), 20.0 if i < cut else -40.0)])
             .astype(np.float32) + rng.normal(0, 3, (2, h, w)).astype(np.float32) for i in range(len(frames))]
    stab = Stabilizer()
    out = []
    for i, (y, f) in enumerate(zip(frames, fresh)):
        out.append(stab.step(y, f))
        assert stab.last["reset"] == (i in (0, cut)), i
    np.testing.assert_array_equal(out[cut], fresh[cut])  # nothing of shot A leaks into B
    assert abs(float(out[cut + 3][0].mean()) - (-10.0)) < 2.0

    # an external flag (VapourSynth's _SceneChangePrev) resets even where nothing is detected
    ys, truth, fresh = moving_scene(n=12, jitter=4.0)
    flags = [i == 7 for i in range(12)]
    stab = Stabilizer()
    out = stab.run(ys, fresh, flags)
    np.testing.assert_array_equal(out[7], fresh[7])
    assert not np.array_equal(out[8], fresh[8])
    # reset() forgets the previous frame
    stab.reset()
    np.testing.assert_array_equal(stab.step(ys[3], fresh[3]), fresh[3])


def test_stabilizer_restarts_on_a_size_change_and_keeps_types():
    ys, truth, fresh = moving_scene(n=4, jitter=2.0)
    stab = Stabilizer()
    t = stab.step(torch.from_numpy(ys[0]), torch.from_numpy(fresh[0]).half())
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float16 and t.shape == (2, 72, 96)
    stab.step(ys[1], fresh[1])
    small_y = cv2.resize(ys[2], (48, 36), interpolation=cv2.INTER_AREA)
    small_c = np.ascontiguousarray(fresh[2][:, ::2, ::2])
    np.testing.assert_array_equal(stab.step(small_y, small_c), small_c)
    assert stab.last["reset"]
    # luma at full size, chroma at a smaller working size
    big_y = cv2.resize(ys[3], (192, 144), interpolation=cv2.INTER_LINEAR)
    assert stab.step(big_y, fresh[3]).shape == (2, 72, 96)


def test_stabilizer_is_deterministic_and_restartable_at_a_cut():
    frames, cuts = shots(lengths=(40, 30), flicker=0.15, seed=4)
    (cut,) = cuts
    rng = np.random.default_rng(1)
    fresh = [rng.normal(0, 10, (2,) + frames[0].shape).astype(np.float32) for _ in frames]
    first = Stabilizer().run(frames, fresh)
    again = Stabilizer().run(frames, fresh)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    # a fresh stabilizer started at the cut, its detector primed with the frames before, gives the same outputs
    restarted = Stabilizer()
    restarted.prime(frames[cut - restarted.detector.lookback:cut])
    tail = restarted.run(frames[cut:], fresh[cut:])
    for a, b in zip(first[cut:], tail):
        np.testing.assert_array_equal(a, b)
    # ... and so does one told about the cut from outside, without a detector
    external = Stabilizer(detector=None)
    tail = external.run(frames[cut:], fresh[cut:], [True] + [False] * (len(frames) - cut - 1))
    for a, b in zip(first[cut:], tail):
        np.testing.assert_array_equal(a, b)


def test_stabilizer_run_in_batches_is_stepping_frame_by_frame():
    # run computes a batch's flows at once on the pool; step one pair at a time: same outputs, same state
    frames, cuts = shots(lengths=(9, 8), flicker=0.1, seed=2)
    rng = np.random.default_rng(3)
    fresh = [rng.normal(0, 10, (2,) + frames[0].shape).astype(np.float32) for _ in frames]
    stepper = Stabilizer()
    stepped = [stepper.step(y, c) for y, c in zip(frames, fresh)]
    batched, runner = [], Stabilizer()
    for start in range(0, len(frames), 5):  # batches straddling the cut
        batched += runner.run(frames[start:start + 5], fresh[start:start + 5])
    assert runner.last == stepper.last and runner.last["reset"] is False
    for a, b in zip(stepped, batched):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(batched[cuts[0] - 1], fresh[cuts[0] - 1])  # it did blend before the cut
    np.testing.assert_array_equal(batched[cuts[0]], fresh[cuts[0]])  # and dropped the colour at it


def test_stabilizer_carries_the_colour_with_exact_bilinear_weights():
    # OpenCV's 2-channel float remap rounds coordinates to 1/32 px (a 2% error on sharp chroma);
    # the carried colour must be the true bilinear interpolation
    rng = np.random.default_rng(5)
    h, w = 24, 32
    prev = rng.normal(0, 20, (2, h, w)).astype(np.float32)
    stab = Stabilizer(alpha=0.5, detector=None)
    y = np.full((h, w), 0.5, np.float32)
    stab.step(y, prev)
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x, map_y = xs + np.float32(0.3), ys + np.float32(0.45)
    out = stab._blend(y, np.zeros_like(prev), (map_x, map_y, np.ones((h, w), np.float32)), False)
    fx, fy = 0.3, 0.45
    x1, y1 = np.minimum(np.arange(w) + 1, w - 1), np.minimum(np.arange(h) + 1, h - 1)
    exact = (prev * (1 - fx) * (1 - fy) + prev[:, :, x1] * fx * (1 - fy)
             + prev[:, y1, :] * (1 - fx) * fy + prev[:, y1][:, :, x1] * fx * fy)
    np.testing.assert_allclose(out, 0.5 * exact, atol=1e-4)


def test_stabilizer_output_does_not_depend_on_the_thread_count():
    ys, truth, fresh = moving_scene(n=8, jitter=4.0)
    big_y = [cv2.resize(y, (384, 288), interpolation=cv2.INTER_LINEAR) for y in ys]
    big_c = [np.ascontiguousarray(cv2.resize(c.transpose(1, 2, 0), (384, 288)).transpose(2, 0, 1)) for c in fresh]
    threads = cv2.getNumThreads()
    try:
        runs = []
        for n in (1, 4):
            cv2.setNumThreads(n)
            runs.append(Stabilizer().run(big_y, big_c))
    finally:
        cv2.setNumThreads(threads)
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------
# the deflicker of the model's input
# --------------------------------------------------------------------------


def _exposure_stats(frames, affine):
    corrected = [np.clip(f * g + o, 0, 1) for f, (g, o) in zip(frames, affine)]
    return np.array([c.mean() for c in corrected]), np.array([c.std() for c in corrected])


def test_deflicker_takes_out_exposure_flicker_within_shots():
    frames, cuts = shots(flicker=0.3, seed=3)  # strong: the deadband passes jitter of a few percent
    stab = Stabilizer()
    flags, affine = stab.prepare(frames)
    assert [i for i, f in enumerate(flags) if f] == cuts  # the detector ran ahead of the model
    means, stds = _exposure_stats(frames, affine)
    raw_means, raw_stds = _exposure_stats(frames, [(1.0, 0.0)] * len(frames))
    for a, b in zip([0, *cuts], [*cuts, len(frames)]):
        # frame-to-frame exposure jumps inside each shot shrink to a fraction
        assert np.abs(np.diff(means[a:b])).mean() < 0.5 * np.abs(np.diff(raw_means[a:b])).mean()
        assert np.abs(np.diff(stds[a:b])).mean() < 0.5 * np.abs(np.diff(raw_stds[a:b])).mean()
        # each shot starts from its own exposure: nothing is carried over a cut
        assert affine[a, 0] == 1.0 and affine[a, 1] == 0.0


def test_deflicker_leaves_steady_exposure_and_slow_fades_nearly_alone():
    img = canvas(4)
    steady = [window(img, t) for t in range(20)]
    d = Deflicker()
    means, stds = _exposure_stats(steady, [d.step(f) for f in steady])
    assert np.abs(means - [f.mean() for f in steady]).max() < 0.005
    assert np.abs(stds - [f.std() for f in steady]).max() < 0.015  # the pan changes the contrast slowly
    # a slow fade (1% a frame) is followed with a lag of a few frames, not frozen
    d.reset()
    fade = [f * (1 - 0.01 * t) for t, f in enumerate(steady)]
    means, _ = _exposure_stats(fade, [d.step(f) for f in fade])
    assert means[-1] < means[0] - 0.05
    assert np.abs(means - np.array([f.mean() for f in fade])).max() < 0.03


def test_deflicker_answer_depends_only_on_its_window():
    frames, _ = shots(lengths=(40,), flicker=0.15, seed=5)
    seq = Deflicker()
    whole = [seq.step(f) for f in frames]
    for t in (20, 33, 39):  # a fresh one fed only the window before t gives the same answer
        fresh = Deflicker()
        for f in frames[t - fresh.window + 1:t]:
            fresh.step(f)
        assert fresh.step(frames[t]) == whole[t]


def test_stabilized_colorizer_feeds_the_model_deflickered_luma(colorizer):
    """--stabilize runs the model on the corrected luma: flickering input gives steadier raw predictions."""
    frames, _ = shots(lengths=(16,), flicker=0.2, seed=1)
    y = torch.from_numpy(np.stack(frames))[:, None]
    stab = colorizer.stabilized()
    flags, affine = Stabilizer().prepare(stab.working_luma(y, (72, 96)))
    deflickered = colorizer.predict_ab(y, exposure=affine)
    raw = colorizer.predict_ab(y)
    assert not torch.equal(deflickered, raw)
    jump = lambda ab: float((ab[1:] - ab[:-1]).abs().mean())  # noqa: E731
    assert jump(deflickered) < jump(raw)


def test_warmup_frames():
    assert warmup_frames(0.9, 0.01) == 44
    assert 0.9 ** warmup_frames(0.9, 0.05) <= 0.05 < 0.9 ** (warmup_frames(0.9, 0.05) - 1)
    with pytest.raises(ValueError):
        warmup_frames(1.0)


# --------------------------------------------------------------------------
# the stabilized colorizer, with the shipped model
# --------------------------------------------------------------------------


def rgb_frames(n: int = 6) -> list[np.ndarray]:
    img = canvas(7)
    out = []
    for t in range(n):
        y = window(img, t, (2, 1), h=48, w=64)
        rgb = np.stack([y, np.clip(y * 0.9 + 0.05, 0, 1), np.clip(1 - y, 0, 1)], axis=-1)
        out.append(np.round(rgb * 255).astype(np.uint8))
    return out


def test_stabilized_colorizer_batches_and_state(colorizer):
    frames = rgb_frames(6)
    whole = colorizer.stabilized()
    one_call = whole.colorize_rgb(frames)
    split = colorizer.stabilized()
    two_calls = split.colorize_rgb(frames[:2]) + split.colorize_rgb(frames[2:])
    for a, b, f in zip(one_call, two_calls, frames):
        assert a.shape == f.shape and a.dtype == np.uint8
        # State carries across calls: batch size changes nothing but the network's own rounding
        # (oneDNN blocks a convolution by batch size: ab moves by ~2e-5, a pixel now and then by 1/255).
        # A lost state would change whole frames.
        diff = np.abs(a.astype(np.int16) - b)
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    # the luma of the output is the input's (only chroma is replaced; rounding aside)
    y_in = frames[0].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    y_out = one_call[0].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    assert np.abs(y_in - y_out).mean() < 1.5
    # the first frame is the model's own prediction; reset() starts over
    np.testing.assert_array_equal(one_call[0], colorizer.colorize_rgb(frames[:1])[0])
    whole.reset()
    np.testing.assert_array_equal(whole.colorize_rgb(frames[:1])[0], one_call[0])
    # the twin shares the loaded model; the original stays unstabilized
    assert whole.model is colorizer.model and colorizer.stabilizer is None


def test_stabilized_colorizer_chroma_matches_the_engine_call(colorizer):
    frames = rgb_frames(4)
    y = torch.from_numpy(np.stack([f.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
                                   for f in frames]) / 255)[:, None]
    stab = colorizer.stabilized()
    cbcr = stab.chroma(y, (24, 32), "bt709")
    assert cbcr.shape == (4, 2, 24, 32) and cbcr.dtype == torch.float32
    assert float(cbcr.abs().max()) <= 0.5
    plain = colorizer.chroma(y[:1], (24, 32), "bt709")
    torch.testing.assert_close(cbcr[:1], plain)  # the first frame of a shot is the model's own
