"""temporal_unet (Thasarathan et al. 2019): the networks, the sequences it learns from, its trainer."""

import json
import pathlib

import av
import cv2
import numpy as np
import pytest
import safetensors
import safetensors.torch
import torch

import vidcolor.models.temporal_unet  # noqa: F401 - registers the model
from vidcolor import weights
from vidcolor.cli import main as cli
from vidcolor.models import get_model
from vidcolor.models.temporal_unet import PatchDiscriminator
from vidcolor.training.sequences import Sources, clip_sequence, load_sources, random_sequences, synthetic_sequence
from vidcolor.training.fit import fit
from vidcolor.training.train import MIN_CROP, TrainConfig, split_lab

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _picture(h=200, w=260, seed=0) -> np.ndarray:
    """A colour RGB scene with texture: blue sky, green ground, a red disc, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.float64)
    sky = yy < h * 0.45
    img[sky] = (60, 120, 220)
    img[~sky] = (50, 150, 60)
    img *= (0.7 + 0.3 * np.sin(xx / 7.0) * np.cos(yy / 9.0))[..., None]
    disc = (xx - w * 0.6) ** 2 + (yy - h * 0.6) ** 2 < (h / 5) ** 2
    img[disc] = (210, 40, 40)
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _photos(folder: pathlib.Path, n=4) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"p{i}.png"), cv2.cvtColor(_picture(80, 96, seed=i), cv2.COLOR_RGB2BGR))


def _colour_clip(path: pathlib.Path, frames=12, w=64, h=48) -> pathlib.Path:
    """A colour video of a red square moving over a blue-to-yellow gradient."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("ffv1", rate=24)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv444p"
        for i in range(frames):
            img = np.zeros((h, w, 3), np.uint8)
            img[..., 0] = np.linspace(40, 220, w)[None].astype(np.uint8)
            img[..., 1] = 120
            img[..., 2] = np.linspace(220, 40, w)[None].astype(np.uint8)
            img[10:26, 4 + 3 * i:20 + 3 * i] = (220, 30, 30)
            out.mux(vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(vs.encode(None))
    return path


def _train_photos() -> list[np.ndarray]:
    files = sorted((ROOT / "data" / "train").glob("*.jpg"))[:40:8]
    photos = [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files]
    return [p for p in photos if p is not None and min(p.shape[:2]) >= 64] or [_picture(seed=s) for s in range(5)]


@pytest.mark.parametrize("size", [(32, 48), (64, 40)])
def test_generator_runs_with_and_without_previous_frame(size):
    torch.manual_seed(0)
    model = get_model("temporal_unet").build().eval()
    assert model.temporal is True
    l = torch.rand(2, 1, *size) * 100
    prev = (torch.rand(2, 2, *size) - 0.5) * 80
    with torch.no_grad():
        blank = model(l)
        zeros = model(l, torch.zeros_like(prev))
        given = model(l, prev)
    ab = model.decode(given)
    assert blank.shape == given.shape == ab.shape == (2, 2, *size)
    assert torch.isfinite(ab).all() and ab.abs().max() <= 110
    # None means a blank previous frame, and a real one reaches the output.
    assert torch.equal(blank, zeros)
    assert (given - blank).abs().mean() > 1e-4
    assert model.loss(given, ab).item() == pytest.approx(0.0, abs=1e-6)


def test_generator_weights_hold_no_discriminator():
    keys = get_model("temporal_unet").build().state_dict()
    assert keys and not any("parametrizations" in k for k in keys)


def test_discriminator_judges_patches():
    torch.manual_seed(0)
    disc = PatchDiscriminator().eval()
    # 128 px: wider than a patch (70 px), so the far corner's patches miss the near one.
    l = torch.rand(2, 1, 128, 128) * 100
    prev = torch.zeros(2, 2, 128, 128)
    ab = (torch.rand(2, 2, 128, 128) - 0.5) * 60
    with torch.no_grad():
        out = disc(l, prev, ab)
        changed = ab.clone()
        changed[:, :, :12, :12] += 40
        out2 = disc(l, prev, changed)
    assert out.shape[:2] == (2, 1) and 1 < out.shape[2] < 128 and 1 < out.shape[3] < 128
    # A patch map: a change in the top-left corner moves top-left logits only.
    diff = (out2 - out).abs()[:, 0]
    assert diff[:, 0, 0].min() > 0
    assert diff[:, -1, -1].max() == 0


def test_synthetic_sequences_move_a_little_each_frame():
    rng = np.random.default_rng(0)
    photo = _train_photos()[0]
    seq = synthetic_sequence(photo, 6, 64, rng)
    assert seq.shape == (6, 64, 64, 3) and seq.dtype == np.uint8
    steps = np.abs(np.diff(seq.astype(np.float64), axis=0)).mean(axis=(1, 2, 3))
    other = synthetic_sequence(_picture(seed=9), 1, 64, rng)[0]
    unrelated = np.abs(seq[0].astype(np.float64) - other).mean()
    assert (steps > 0.5).all(), steps
    assert (steps < 0.6 * unrelated).all(), (steps, unrelated)
    # A seed gives the same sequence again.
    again = synthetic_sequence(photo, 6, 64, np.random.default_rng(0))
    assert np.array_equal(seq, again)


def test_sources_take_consecutive_frames_from_clips(tmp_path):
    folder = tmp_path / "data"
    _photos(folder, 2)
    _colour_clip(folder / "clip.mkv", frames=12)
    sources = load_sources([folder], short=64, frames_per_video=8, run=4)
    assert len(sources.stills) == 2 and sources.clip_frames == 8
    run = sources.clips[0]
    assert run.shape == (4, 48, 64, 3)
    # The square moves 3 px a frame: consecutive frames differ, and little.
    diffs = [np.abs(run[i + 1].astype(int) - run[i]).mean() for i in range(3)]
    assert all(0 < d < 10 for d in diffs)
    seq = clip_sequence(run, 3, 32, np.random.default_rng(0))
    assert seq.shape == (3, 32, 32, 3)
    batch = random_sequences(Sources([], sources.clips), 3, 2, 32, np.random.default_rng(0))
    assert batch.shape == (3, 2, 32, 32, 3)


def test_shipped_weights_carry_the_previous_colours():
    path = weights.shipped_dir() / "temporal_unet.safetensors"
    if not path.is_file():
        pytest.skip("models/temporal_unet.safetensors not trained yet")
    model = weights.load_model("temporal_unet")
    rng = np.random.default_rng(3)
    seqs = np.stack([synthetic_sequence(p, 2, 128, rng) for p in _train_photos()])
    rgb = torch.from_numpy(seqs).permute(0, 1, 4, 2, 3).float() / 255
    _, prev_ab = split_lab(rgb[:, 0])
    l, ab = split_lab(rgb[:, 1])
    with torch.no_grad():
        blank = model.decode(model(l))
        carried = model.decode(model(l, prev_ab))
    assert (carried - blank).abs().mean() > 1.0
    assert (carried - ab).abs().mean() < (blank - ab).abs().mean()


def test_training_checkpoints_and_resumes_through_the_cli(tmp_path):
    data = tmp_path / "photos"
    _photos(data)
    _colour_clip(data / "clip.mkv", frames=10)
    out = tmp_path / "run"
    cfg = TrainConfig(model="temporal_unet", data=(data,), out=out, steps=4, batch=2, crop=MIN_CROP, save_every=2)
    final = fit(cfg, progress=False)
    assert final == out / "temporal_unet.safetensors"
    with safetensors.safe_open(str(final), "pt") as f:
        meta = f.metadata()
        assert not any("parametrizations" in k for k in f.keys())
    assert meta["steps"] == "4" and meta["images"] == "4" and int(meta["clip_frames"]) >= 8
    assert 0.0 <= float(meta["chroma_gain"]) <= 1.0
    assert torch.load(out / "train_state.pt", weights_only=True)["step"] == 4
    after4 = safetensors.torch.load_file(str(out / "last.safetensors"))
    disc4 = safetensors.torch.load_file(str(out / "last_discriminator.safetensors"))

    # Same seed, same steps: the same weights.
    twin = fit(TrainConfig(**{**cfg.__dict__, "out": tmp_path / "twin"}), progress=False)
    assert all(torch.equal(v, safetensors.torch.load_file(str(twin))[k]) for k, v in after4.items())

    assert cli(["train", str(data), "--model", "temporal_unet", "--out", str(out), "--steps", "6", "--batch", "2",
                "--crop", "32", "--save-every", "2", "--resume", "--quiet"]) == 0
    state = torch.load(out / "train_state.pt", weights_only=True)
    assert state["step"] == 6 and "optimizer_d" in state
    logged = [json.loads(line)["step"] for line in (out / "log.jsonl").open()]
    assert logged == [4, 6]
    after6 = safetensors.torch.load_file(str(out / "last.safetensors"))
    disc6 = safetensors.torch.load_file(str(out / "last_discriminator.safetensors"))
    assert any(not torch.equal(after4[k], after6[k]) for k in after4)
    # Step 6 is not a discriminator step (1, 12, 24, ...): resumed, it kept its weights.
    assert all(torch.equal(disc4[k], disc6[k]) for k in disc4 if k.endswith("original"))


def test_engine_recurrence_carries_across_batches_and_restarts_at_cuts():
    """The Colorizer feeds each frame its own previous output, whatever the batch split;
    a cut flag (or reset) starts from a blank history again."""
    from vidcolor.colorizer import Colorizer
    from vidcolor.runtime import Runtime

    torch.manual_seed(0)
    c = Colorizer("temporal_unet", None, Runtime(device="cpu", batch=6))
    assert c.temporal and c.recurrence is not None
    y = torch.rand(1, 1, 48, 64).repeat(6, 1, 1, 1) + 0.05 * torch.rand(6, 1, 48, 64)
    y = y.clamp(0, 1)
    whole = c.fresh().predict_ab(y)
    split = c.fresh()
    parts = torch.cat([split.predict_ab(y[:2]), split.predict_ab(y[2:])])
    torch.testing.assert_close(parts, whole, rtol=0, atol=1e-5)
    # the history matters: frame 3 alone, from a blank history, is another picture
    alone = c.fresh().predict_ab(y[3:4])
    assert (alone - whole[3:4]).abs().max() > 1e-3
    # a cut flag at frame 3 makes it the first frame of a shot
    cut = c.fresh().predict_ab(y, cuts=[False, False, False, True, False, False])
    torch.testing.assert_close(cut[3:4], alone, rtol=0, atol=1e-5)
    torch.testing.assert_close(cut[:3], whole[:3], rtol=0, atol=1e-5)
    again = c.fresh()
    again.predict_ab(y[:3])
    again.reset()
    torch.testing.assert_close(again.predict_ab(y[3:4]), alone, rtol=0, atol=1e-5)


def test_cli_colorizes_a_video_with_the_temporal_model(tmp_path):
    import subprocess
    import sys

    from conftest import make_video, probe

    src = make_video(tmp_path / "in.mkv", codec="ffv1", pix_fmt="yuv420p", size=(64, 48), frames=6)
    dst = tmp_path / "out.mkv"
    subprocess.run([sys.executable, "-m", "vidcolor", str(src), "-o", str(dst), "--model", "temporal_unet",
                    "--codec", "ffv1", "--quiet"], check=True)
    a, b = probe(src), probe(dst)
    assert len(b.planes) == 6 and b.pts == a.pts
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a.planes, b.planes))  # luma kept
    assert np.abs(b.planes[3][1].astype(int) - 128).mean() > 0.2  # some colour


def test_trainer_shots_feed_the_generator_its_own_previous_output():
    """The "own" samples of a training batch are shots coloured as the engine colours
    them: blank history at a shot's first frame, then the generator's output for the
    frame before; a shot runs for its length, then a new one starts from blank."""
    from vidcolor.training.train_temporal import OwnShots

    sources = Sources([_picture(200, 260, seed=s) for s in range(3)], [])
    shots = OwnShots(sources, slots=2, crop=32, rng=np.random.default_rng(0), device="cpu", length=3)
    outputs, seen = [], []
    for step in range(6):
        l, prev, ab = shots.batch()
        assert l.shape == (2, 1, 32, 32) and prev.shape == ab.shape == (2, 2, 32, 32)
        seen.append((l, prev, ab))
        if step % 3 == 0:
            assert not prev.any()  # a shot's first frame: blank history
        else:
            torch.testing.assert_close(prev, outputs[-1], rtol=0, atol=0)
        out = torch.randn(2, 2, 32, 32, requires_grad=True)
        shots.advance(out)
        outputs.append(out.detach())
    # consecutive frames of one moving shot: close, not equal; a new shot is another picture
    step_change = (seen[1][2] - seen[0][2]).abs().mean()
    assert 0 < step_change < (seen[3][2] - seen[2][2]).abs().mean()
    empty = OwnShots(sources, slots=0, crop=32, rng=np.random.default_rng(0), device="cpu").batch()
    assert [t.shape[0] for t in empty] == [0, 0, 0] and empty[1].shape[1] == 2
