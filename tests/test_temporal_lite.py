"""temporal_lite: lite_unet with the previous frame's ab as input, started from lite_unet's weights."""

import pathlib

import cv2
import numpy as np
import pytest
import torch

from vidcolor import color, weights
from vidcolor.models import get_model

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _scene(h=96, w=128, seed=0) -> torch.Tensor:
    """Luma (1,1,h,w) in 0..1 of a lit sphere over a textured horizon: structure the networks colour."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None] * 2 - 1
    y = 0.35 + 0.3 * (yy < 0.2) + 0.3 * np.clip(1 - (xx ** 2 + yy ** 2) * 3, 0, 1)
    y += 0.05 * np.sin(xx * 20) * np.cos(yy * 15) + rng.normal(0, 0.01, y.shape)
    return torch.from_numpy(np.clip(y, 0, 1)).float().view(1, 1, h, w)


def _fresh() -> torch.nn.Module:
    model = get_model("temporal_lite").build()
    model.start_from(weights.read_state_dict(weights.shipped_dir() / get_model("lite_unet").weights))
    return model.eval()


def test_starts_as_lite_unet_exactly():
    """Step 0: lite_unet's weights, the temporal head at zero: lite_unet's (default, adaptive) colour, with
    or without a history (to float rounding: the head works in regression units, ab / 110)."""
    lite, model = weights.load_model("lite_unet"), _fresh()
    l = color.gray_to_l(_scene())
    prev = (torch.rand(1, 2, *l.shape[-2:]) - 0.5) * 80
    with torch.no_grad():
        want = lite.decode(lite(l))
        torch.testing.assert_close(model.decode(model(l)), want, atol=1e-4, rtol=0)
        torch.testing.assert_close(model.decode(model(l, prev)), want, atol=1e-4, rtol=0)


def test_start_from_refuses_another_network():
    model = get_model("temporal_lite").build()
    with pytest.raises(KeyError, match="not a lite_unet state"):
        model.start_from(get_model("zhang2016").build().state_dict())


def test_shipped_weights_keep_lite_unet_and_use_the_previous_frame():
    """Trained: the per-frame network is lite_unet's, untouched (a shot's first frame is lite_unet's
    colour), and the previous frame's ab moves the output towards it."""
    lite, model = weights.load_model("lite_unet"), weights.load_model("temporal_lite")
    own, frame = model.state_dict(), lite.state_dict()
    assert all(torch.equal(v, frame[k]) for k, v in own.items() if not k.startswith("temporal_head."))
    assert model.temporal_head[-1].weight.abs().sum() > 0
    l = color.gray_to_l(_scene())
    with torch.no_grad():
        first = model.decode(model(l))
        torch.testing.assert_close(first, lite.decode(lite(l)), atol=1e-4, rtol=0)
        # a history of a different colour (the frame's own ab turned by 90 degrees, plus a blue cast)
        prev = torch.stack((-first[:, 1], first[:, 0]), dim=1) + torch.tensor([0.0, -20.0]).view(1, 2, 1, 1)
        carried = model.decode(model(l, prev))
    moved = (carried - first).abs().mean()
    assert moved > 1.0, f"the previous frame changes the output by only {moved:.3f} ab units"
    assert (carried - prev).abs().mean() < (first - prev).abs().mean()  # towards the history


def test_colour_is_steadier_than_lite_unet_on_a_jittering_still():
    """Through the Colorizer (the engine's recurrence): a still scene whose exposure and grain change
    from frame to frame; the temporal model's colour changes less between frames than lite_unet's, and
    its first frame is lite_unet's."""
    from vidcolor.colorizer import Colorizer
    from vidcolor.runtime import Runtime

    rng = np.random.default_rng(3)
    base = _scene(seed=1)
    ys = torch.cat([(base * rng.uniform(0.9, 1.1) + torch.from_numpy(rng.normal(0, 0.02, base.shape)).float())
                    .clamp(0, 1) for _ in range(8)])
    rt = Runtime(device="cpu", dtype="float32")
    per_frame = Colorizer("lite_unet", None, rt)
    lite = torch.cat([per_frame.predict_ab(y[None]) for y in ys])
    temporal = Colorizer("temporal_lite", None, rt)
    assert temporal.temporal
    ab = torch.cat([temporal.predict_ab(y[None]) for y in ys])  # one frame per call: the history carries over
    torch.testing.assert_close(ab[0], lite[0], atol=1e-4, rtol=0)

    def jitter(x):
        return (x[1:] - x[:-1]).abs().mean().item()

    assert jitter(ab) < 0.8 * jitter(lite), (jitter(ab), jitter(lite))


def test_train_from_lite_unet_and_resume(tmp_path):
    """`vidcolor train --model temporal_lite` starts from lite_unet's shipped weights, trains only the
    temporal head, checkpoints and resumes."""
    from vidcolor.training.fit import fit as train
    from vidcolor.training.train import TrainConfig

    data = tmp_path / "photos"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        img = (rng.random((12, 16, 3)) * 255).astype(np.uint8)
        cv2.imwrite(str(data / f"p{i}.png"), cv2.resize(img, (160, 120), interpolation=cv2.INTER_CUBIC))
    out = tmp_path / "run"
    cfg = TrainConfig(model="temporal_lite", data=(data,), out=out, steps=2, batch=2, crop=64, save_every=1)
    final = train(cfg, progress=False)
    model = get_model("temporal_lite").build()
    weights.load_into(model, final, "temporal_lite")
    lite = weights.load_model("lite_unet").state_dict()
    trained = model.state_dict()
    assert all(torch.equal(v, lite[k]) for k, v in trained.items() if not k.startswith("temporal_head."))
    assert trained["temporal_head.8.weight"].abs().sum() > 0  # the head's last layer left zero
    meta = weights.read_metadata(final)
    assert meta["steps"] == "2" and meta["base"].startswith("lite_unet")
    resumed = train(TrainConfig(**{**cfg.__dict__, "steps": 3, "resume": True}), progress=False)
    assert weights.read_metadata(resumed)["steps"] == "3"
