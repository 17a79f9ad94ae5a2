import json

import cv2
import numpy as np
import safetensors
import torch

from vidcolor.train import TrainConfig, train


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
