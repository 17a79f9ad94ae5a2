import json

import cv2
import numpy as np
import pytest
import safetensors
import torch

from vidcolor.cli import main
from vidcolor.training.fit import fit
from vidcolor.training.train import MIN_CROP, TrainConfig, damage_luma, split_lab, train


def _photos(folder, n=6):
    rng = np.random.default_rng(0)
    folder.mkdir()
    for i in range(n):
        img = np.zeros((120, 160, 3), np.uint8)
        img[:60] = (200, 120, 40)  # blue-ish sky in BGR
        img[60:] = (40, 160, 60)  # green field
        img = cv2.add(img, rng.integers(0, 30, img.shape, dtype=np.uint8))
        cv2.imwrite(str(folder / f"p{i}.jpg"), img)


def test_train_checkpoints_and_resumes(tmp_path):
    data = tmp_path / "photos"
    _photos(data)
    out = tmp_path / "run"
    cfg = TrainConfig(model="zhang2016", data=(data,), out=out, steps=4, batch=2, crop=32, save_every=2)
    final = train(cfg, progress=False)
    with safetensors.safe_open(str(final), "pt") as f:
        meta = f.metadata()
        prior = f.get_tensor("prior")
    assert meta["steps"] == "4" and meta["images"] == "6"
    # The chroma calibration measured on the training crops comes with the weights.
    assert 0.0 <= float(meta["chroma_gain"]) <= 1.0
    # The prior was measured on the photos: not uniform.
    assert prior.max() > 5 * prior.min()

    longer = TrainConfig(**{**cfg.__dict__, "steps": 6, "resume": True})
    train(longer, progress=False)
    state = torch.load(out / "train_state.pt", weights_only=True)
    assert state["step"] == 6
    with safetensors.safe_open(str(out / "zhang2016.safetensors"), "pt") as f:
        assert f.metadata()["steps"] == "6"
    assert (out / "log.jsonl").exists()


def test_input_damage_changes_the_input_of_its_share_only():
    rng = np.random.default_rng(0)
    rgb = torch.rand(64, 3, 24, 24)
    clean_l, clean_ab = split_lab(rgb)
    l_in, ab = split_lab(rgb, lambda y: damage_luma(y, rng, 0.5))
    # the target is the clean colour, and the damaged input stays a valid luma
    assert torch.equal(ab, clean_ab)
    assert 0.0 <= l_in.min() and l_in.max() <= 100.0
    changed = (l_in - clean_l).abs().flatten(1).amax(1) > 1e-4
    assert 16 <= int(changed.sum()) <= 48
    # untouched samples are bit-identical; damaged ones moved by a visible amount
    assert torch.equal(l_in[~changed], clean_l[~changed])
    assert (l_in[changed] - clean_l[changed]).abs().mean() > 1.0
    # share 0 leaves everything alone, share 1 damages all; same seed, same damage
    y = rgb[:, :1]
    assert torch.equal(damage_luma(y, np.random.default_rng(1), 0.0), y)
    all_hit = damage_luma(y, np.random.default_rng(1), 1.0)
    assert ((all_hit - y).abs().flatten(1).amax(1) > 1e-4).all()
    assert torch.equal(all_hit, damage_luma(y, np.random.default_rng(1), 1.0))


def test_training_with_input_damage_records_it(tmp_path):
    data = tmp_path / "photos"
    _photos(data)
    cfg = TrainConfig(model="iizuka2016", data=(data,), out=tmp_path / "run", steps=2, batch=2, crop=32,
                      input_damage=0.5)
    with safetensors.safe_open(str(train(cfg, progress=False)), "pt") as f:
        assert f.metadata()["input_damage"] == "0.5"


@pytest.mark.parametrize("flag,value", [("--input-damage", "1.5"), ("--steps", "0"), ("--batch", "0"),
                                        ("--crop", "16"), ("--lr", "0"), ("--save-every", "0"),
                                        ("--frames-per-video", "0"), ("--rebalance", "0"), ("--rebalance", "1.5")])
def test_bad_training_options_are_a_one_line_error(capsys, tmp_path, flag, value):
    # --steps 0 was a ZeroDivisionError and --crop 16 an empty feature map deep in torch
    assert main(["train", str(tmp_path), flag, value, "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip()
    assert f"{flag} {value}" in err and "give" in err and "\n" not in err
    assert not (tmp_path / "run").exists()


def test_training_config_is_checked_for_library_callers_too(tmp_path):
    with pytest.raises(ValueError, match="--input-damage 2"):
        TrainConfig(model="iizuka2016", data=(tmp_path,), out=tmp_path / "run", input_damage=2)
    with pytest.raises(ValueError, match="--rebalance: iizuka2016 has no rebalanced regression"):
        TrainConfig(model="iizuka2016", data=(tmp_path,), out=tmp_path / "run", rebalance=0.9)
    # the smallest crop is one every network of the registry trains at
    TrainConfig(model="larsson2016", data=(tmp_path,), out=tmp_path / "run", crop=MIN_CROP)


def test_rebalance_is_refused_for_models_without_a_rebalanced_regression(capsys, tmp_path):
    _photos(tmp_path / "photos")
    for model in ("iizuka2016", "temporal_lite"):
        assert main(["train", str(tmp_path / "photos"), "--model", model, "--rebalance", "0.9",
                     "--out", str(tmp_path / "run")]) == 1
        err = capsys.readouterr().err.strip()
        assert "--rebalance" in err and model in err and "\n" not in err
        assert not (tmp_path / "run").exists()


def test_rebalanced_regression_counts_rare_colours_more():
    """lite_unet's --rebalance: the same ab error costs more on a saturated pixel than on a common grey one."""
    from vidcolor import color
    from vidcolor.models.lite_unet import LiteUNet

    model = LiteUNet()
    counts = torch.ones(model.bins.shape[0])
    counts[color.soft_encode(torch.zeros(1, 2, 1, 1), model.bins).flatten().argmax()] = 1000.0  # grey is common
    model.set_prior(counts)
    ab = torch.zeros(1, 2, 4, 8)
    ab[..., 4:] = torch.tensor([60.0, 40.0])[:, None, None]                    # right half: saturated orange
    for region in (slice(0, 4), slice(4, 8)):
        pred = ab.clone() / 110.0
        pred[..., region] += 0.2                                                 # the same error, on one half
        raw = {"ab": pred, "logits": torch.zeros(1, model.bins.shape[0], 4, 8)}
        model.regression_rebalance = 1.0
        plain = model.losses(raw, ab)["regression"]
        model.regression_rebalance = 0.5
        weighted = model.losses(raw, ab)["regression"]
        if region.start == 0:
            assert weighted < 0.5 * plain                                         # grey's error weighs less
        else:
            assert weighted > 2 * plain                                           # the rare colour's more


def test_frames_per_video_caps_the_frames_taken_from_each_clip(tmp_path):
    import av

    from vidcolor.training.train import load_images

    folder = tmp_path / "clips"
    folder.mkdir()
    for name, frames in (("short.mp4", 12), ("long.mkv", 60)):  # mp4 states its length, this mkv does not
        with av.open(str(folder / name), "w") as c:
            s = c.add_stream("libx264", rate=25)
            s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
            for i in range(frames):
                img = np.full((48, 64, 3), (4 * i) % 256, np.uint8)
                c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
            c.mux(s.encode())
    assert len(load_images([folder], short=32, frames_per_video=3)) == 6


@pytest.mark.parametrize("model", ["zhang2016", "temporal_unet"])
def test_init_starts_from_the_shipped_weights(tmp_path, model):
    from vidcolor.weights import read_state_dict, shipped_dir
    from vidcolor.models import get_model

    data = tmp_path / "photos"
    _photos(data)
    shipped = read_state_dict(shipped_dir() / get_model(model).weights)
    # A step too small to move anything: the result is the starting point.
    cfg = TrainConfig(model=model, data=(data,), out=tmp_path / "run", steps=1, batch=2, crop=32, lr=1e-12,
                      init="shipped")
    final = fit(cfg, progress=False)
    tuned = read_state_dict(final)
    floats = [k for k, v in shipped.items() if v.is_floating_point() and "running_" not in k]
    assert max((tuned[k] - shipped[k]).abs().max().item() for k in floats) < 1e-6
    with safetensors.safe_open(str(final), "pt") as f:
        meta = f.metadata()
    assert meta["init"] == get_model(model).weights and meta["init_steps"] != "?"
    # how the starting weights were trained travels with the new ones
    assert json.loads(meta["init_meta"]) == dict(safetensors.safe_open(
        str(shipped_dir() / get_model(model).weights), "pt").metadata())
    # Without --init the same run starts from random weights, far from the shipped ones.
    scratch = read_state_dict(fit(TrainConfig(**{**cfg.__dict__, "init": None, "out": tmp_path / "new"}),
                                  progress=False))
    assert max((scratch[k] - shipped[k]).abs().max().item() for k in floats) > 0.1


def test_init_from_a_file_of_another_model_or_none_is_a_one_line_error(capsys, tmp_path):
    from vidcolor.weights import shipped_dir

    assert main(["train", str(tmp_path), "--init", str(tmp_path / "none.safetensors"),
                 "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip()
    assert "--init" in err and "none.safetensors" in err and "\n" not in err
    _photos(tmp_path / "photos")
    assert main(["train", str(tmp_path / "photos"), "--model", "cheng2015", "--quiet", "--steps", "1",
                 "--init", str(shipped_dir() / "iizuka2016.safetensors"), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip()
    assert "not weights of model 'cheng2015'" in err and "\n" not in err
