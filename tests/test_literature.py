"""The literature models (Cheng, Larsson, Iizuka, Koalarization, semantic U-Net) and the shared decoders.

Per model: two input sizes, finite outputs, the pieces specific to its paper,
and one short real training run that lowers its loss.
"""

import math
import pathlib

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidcolor import color

from vidcolor.models import decoders
from vidcolor.models import get_model
from vidcolor.models.cheng2015 import Cheng2015, Daisy, gaussian_blur, joint_bilateral
from vidcolor.models.iizuka2016 import GLOBAL_SIZE
from vidcolor.models.larsson2016 import Larsson2016, patch_histograms
from vidcolor.models.semantic_unet import (SCENE_CLASSES, SEGMENTS, SemanticUNet, pseudo_scene,
                                           pseudo_segments, segment_centres)
from vidcolor.training.train import MIN_CROP, random_batch, split_lab

LITERATURE = ["cheng2015", "larsson2016", "larsson2016-hc", "iizuka2016", "koalarization", "semantic_unet"]
TRAIN_DIR = pathlib.Path(__file__).resolve().parent.parent / "data" / "train"


def _l(n, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    # Smooth random luminance: a textured picture rather than white noise.
    l = F.interpolate(torch.rand(n, 1, h // 4 + 1, w // 4 + 1, generator=g), size=(h, w), mode="bilinear")
    return (l * 100).clamp(0, 100)


# --------------------------------------------------------------------------
# decoders
# --------------------------------------------------------------------------


def test_annealed_mean_goes_from_mean_to_mode():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 7, 3, 4, generator=g) * 2
    values = torch.randn(7, 2, generator=g) * 50
    mean = decoders.mean(logits, values)
    assert torch.allclose(color.annealed_mean(logits, values, 1.0), mean)
    manual = torch.einsum("nqhw,qc->nchw", torch.softmax(logits, 1), values)
    assert torch.allclose(mean, manual, atol=1e-5)
    assert torch.allclose(color.annealed_mean(logits, values, 1e-3), decoders.mode(logits, values), atol=1e-3)
    assert decoders.mode(logits, values).shape == (2, 2, 3, 4)
    # (N, Q) scores decode too, as the other decoders' do.
    assert torch.allclose(color.annealed_mean(logits[:, :, 0, 0], values, 0.38),
                          color.annealed_mean(logits, values, 0.38)[:, :, 0, 0])


def test_median_and_quantiles_of_a_known_histogram():
    p = torch.tensor([0.1, 0.2, 0.3, 0.4])
    logits = p.log().view(1, 4, 1, 1)
    values = torch.tensor([1.0, 2.0, 3.0, 4.0])
    # cdf 0.1, 0.3, 0.6, 1.0: the median is the third bin, the first quartile the second.
    assert decoders.median(logits, values).item() == 3.0
    assert decoders.quantile(logits, values, 0.25).item() == 2.0
    assert decoders.mode(logits, values).item() == 4.0
    assert math.isclose(decoders.mean(logits, values).item(), 3.0, rel_tol=1e-5)
    with pytest.raises(ValueError):
        decoders.median(logits, torch.zeros(4, 2))


def test_circular_mean_wraps_around():
    angles = decoders.hue_angles(36)  # 5, 15, ..., 355 degrees
    logits = torch.full((1, 36), -1e4)
    logits[0, 0] = logits[0, 35] = 0.0  # half at 5 degrees, half at 355
    angle, resultant = decoders.circular_mean(logits, angles)
    assert abs(angle.item()) < 1e-4  # 0, not the linear mean's 180 degrees
    assert math.isclose(resultant.item(), math.cos(math.radians(5)), rel_tol=1e-4)
    _, spread = decoders.circular_mean(torch.zeros(1, 36), angles)
    assert spread.item() < 1e-5


def test_sample_follows_the_distribution():
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([0.25, 0.75]).log().view(1, 2, 1, 1).expand(1, 2, 100, 100)
    draws = decoders.sample(logits, torch.tensor([0.0, 1.0]), generator=g)
    assert draws.shape == (1, 1, 100, 100)
    assert abs(draws.mean().item() - 0.75) < 0.03
    sharp = torch.tensor([0.0, 20.0, 0.0]).view(1, 3)
    assert decoders.sample(sharp, torch.tensor([5.0, 6.0, 7.0]), generator=g).item() == 6.0


# --------------------------------------------------------------------------
# every literature model: two sizes, finite
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", LITERATURE)
def test_forward_at_two_sizes(name):
    torch.manual_seed(0)
    model = get_model(name).build()
    ab_true = (torch.rand(2, 2, 40, 72) - 0.5) * 80
    for train in (True, False):
        model.train(train)
        for h, w in ((64, 48), (40, 72)):
            l = _l(2, h, w)
            with torch.set_grad_enabled(train):
                raw = model(l)
                ab = model.decode(raw)
            assert ab.shape == (2, 2, h, w)
            assert torch.isfinite(ab).all() and ab.abs().max() <= 128
        if train:
            assert torch.isfinite(model.loss(raw, ab_true))


# --------------------------------------------------------------------------
# Cheng 2015
# --------------------------------------------------------------------------


def test_cheng_descriptor_dimensions():
    l = _l(1, 40, 48)
    full = Cheng2015()
    assert full.daisy.dims == 32
    assert full.descriptor_dims == 49 + 32 + SEGMENTS
    desc = full.descriptor(l, full.semantic(l))
    assert desc.shape == (1, 49 + 32 + SEGMENTS, 40, 48) and torch.isfinite(desc).all()
    # The semantic part is a probability vector per pixel; the centre of the patch is the pixel.
    assert torch.allclose(desc[:, -SEGMENTS:].sum(1), torch.ones(1, 40, 48), atol=1e-5)
    assert torch.allclose(desc[:, 24] + 0.5, color.l_to_gray(l)[:, 0], atol=1e-6)
    bare = Cheng2015(semantic=False)
    assert bare.semantic is None and bare.descriptor_dims == 49 + 32
    assert bare.descriptor(l).shape[1] == 81
    assert bare.decode(bare(l)).shape == (1, 2, 40, 48)


def test_daisy_matches_skimage():
    feature = pytest.importorskip("skimage.feature")
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.random((72, 80)), (0, 0), 1.5)
    img = (img - img.min()) / (img.max() - img.min())
    mine = Daisy()(torch.from_numpy(img)[None, None])[0].permute(1, 2, 0).double().numpy()
    ref = feature.daisy(img, step=1, radius=8, rings=1, histograms=7, orientations=4, normalization="daisy")
    # skimage describes only pixels `radius` from the border; we describe all of them
    # (mirroring the image). Away from the border both are the same descriptor.
    inner = mine[8:-8, 8:-8][16:-16, 16:-16]
    assert np.abs(inner - ref[16:-16, 16:-16]).max() < 1e-4


def test_gaussian_blur_matches_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    x = np.random.default_rng(1).random((20, 9))
    mine = gaussian_blur(torch.from_numpy(x)[None, None], 3.0)[0, 0].numpy()
    assert np.abs(mine - ndimage.gaussian_filter(x, 3.0, mode="reflect")).max() < 1e-10


def test_joint_bilateral_preserves_edges():
    g = torch.Generator().manual_seed(0)
    guide = torch.zeros(1, 1, 32, 32)
    guide[..., 16:] = 0.8  # a luminance edge between columns 15 and 16
    src = torch.zeros(1, 2, 32, 32)
    src[:, 0, :, 16:] = 0.3  # chroma that changes at the same edge
    noisy = src + 0.02 * torch.randn(src.shape, generator=g)
    out = joint_bilateral(noisy, guide, sigma_s=2.0, sigma_r=0.08)
    # The edge survives: the columns beside it keep their own side's colour...
    assert (out[:, 0, :, 15] - 0.0).abs().max() < 0.02 and (out[:, 0, :, 16] - 0.3).abs().max() < 0.02
    # ...where a plain spatial filter (sigma_r huge) blurs across it.
    blurred = joint_bilateral(noisy, guide, sigma_s=2.0, sigma_r=1e6)
    assert (blurred[:, 0, :, 16] - 0.3).abs().mean() > 0.05
    # And the noise within each side is smoothed.
    assert (out - src).std() < 0.5 * (noisy - src).std()


# --------------------------------------------------------------------------
# Larsson 2016
# --------------------------------------------------------------------------


def _one_bin(q, k, spread=None):
    logits = torch.full((1, q, 1, 1), -1e4)
    for i, p in (spread or {k: 1.0}).items():
        logits[0, i] = math.log(p)
    return logits


def test_larsson_hue_chroma_decoding_of_known_histograms():
    model = Larsson2016(variant="hc")
    q = model.hc_bins
    # Hue: half in the last bin, half in the first: the circular mean is red (hue 0), not cyan.
    hue_logits = _one_bin(q, 0, {0: 0.5, q - 1: 0.5})
    chroma_logits = _one_bin(q, 0, {2: 0.1, 5: 0.3, 20: 0.6})  # cdf 0.1, 0.4, 1.0: median bin 20
    hue, chroma = model.hue_chroma(hue_logits, chroma_logits)
    assert min(hue.item(), 1 - hue.item()) < 1e-4
    assert math.isclose(chroma.item(), 20.5 / q, rel_tol=1e-5)
    ab = model.hue_chroma_to_ab(hue_logits, chroma_logits, torch.full((1, 1, 1, 1), 0.5))
    assert ab[0, 0].item() > 20 and abs(ab[0, 1].item()) < ab[0, 0].item()  # red: a > 0
    # Green hue (1/3) gives a < 0.
    green = model.hue_chroma_to_ab(_one_bin(q, round(q / 3)), chroma_logits, torch.full((1, 1, 1, 1), 0.5))
    assert green[0, 0].item() < -20
    # A hue histogram spread around the circle fades the chroma to grey.
    flat = torch.zeros(1, q, 1, 1)
    _, faded = model.hue_chroma(flat, chroma_logits)
    assert faded.item() < 1e-3
    assert model.hue_chroma_to_ab(flat, chroma_logits, torch.full((1, 1, 1, 1), 0.5)).abs().max() < 1


def test_larsson_dense_hypercolumns_equal_sparse_ones():
    model = Larsson2016(variant="lab").eval()
    l = _l(1, 48, 64)
    with torch.no_grad():
        layers = model(l)["layers"]
        assert [f.shape[1] for f in layers] == model.channels
        dense = model.hidden_dense(layers, (48, 64))  # stride 1: every pixel
        ys = torch.tensor([[0, 5, 17, 47, 30]])
        xs = torch.tensor([[0, 63, 8, 20, 41]])
        sparse = model.hidden_sparse(layers, ys, xs)
        # The stride-4 grid of inference: cell (i, j) sits at input pixel (4i + 1.5, 4j + 1.5).
        coarse = model.hidden_dense(layers, (12, 16))
        i, j = torch.tensor([[0, 3, 11, 7]]), torch.tensor([[0, 15, 2, 9]])
        at_centres = model.hidden_sparse(layers, 4 * i + 1.5, 4 * j + 1.5)
    assert torch.allclose(dense[0, :, ys[0], xs[0]].T, sparse[0], atol=1e-4)
    assert torch.allclose(coarse[0, :, i[0], j[0]].T, at_centres[0], atol=1e-4)


def test_larsson_patch_histograms():
    idx = torch.tensor([[[0, 1, 2], [1, 1, 2], [3, 3, 3]]])
    hist = patch_histograms(idx, torch.tensor([[1, 0]]), torch.tensor([[1, 0]]), 4, size=3)
    assert torch.allclose(hist[0, 0], torch.tensor([1, 3, 2, 3]) / 9)
    assert torch.allclose(hist[0, 1], torch.tensor([1, 3, 0, 0]) / 4)  # the corner: 4 pixels inside


def test_larsson_trains_on_sparse_pixels():
    model = Larsson2016(variant="hc", samples=16)
    seen = []
    model.fc1.register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    l = _l(2, 64, 64)
    model.loss(model(l), torch.zeros(2, 2, 64, 64))
    assert seen == [(2, 16, sum(model.channels))]  # 16 hypercolumns per image, not 64 x 64


# --------------------------------------------------------------------------
# Iizuka 2016 and Koalarization
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["iizuka2016", "koalarization"])
def test_global_branch_sees_a_fixed_224_input(name):
    model = get_model(name).build().eval()
    branch = model.global_branch if name == "iizuka2016" else model.embedding
    seen = []
    branch.resize.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[-2:])))
    for h, w in ((64, 48), (40, 72), (50, 70)):
        with torch.no_grad():
            ab = model.decode(model(_l(1, h, w)))
        assert ab.shape == (1, 2, h, w)
    assert seen == [(GLOBAL_SIZE, GLOBAL_SIZE)] * 3
    if name == "iizuka2016":
        assert branch.low is model.low  # low-level features shared by both paths


def test_koalarization_encoder_reaches_an_eighth():
    model = get_model("koalarization").build().eval()
    with torch.no_grad():
        assert model.encoder(torch.zeros(1, 1, 64, 48)).shape[-2:] == (8, 6)
        raw = model(_l(1, 64, 48))
    assert raw["ab"].shape[-2:] == (64, 48) and raw["ab"].abs().max() <= 1


# --------------------------------------------------------------------------
# semantic U-Net
# --------------------------------------------------------------------------


def test_semantic_unet_losses_are_finite():
    torch.manual_seed(0)
    model = SemanticUNet()
    l = _l(2, 32, 48)
    ab = (torch.rand(2, 2, 32, 48) - 0.5) * 100
    raw = model(l)
    assert raw["logits"].shape == (2, model.bins.shape[0], 32, 48) and raw["seg"].shape == (2, SEGMENTS, 32, 48)
    assert raw["scene"].shape == (2, SCENE_CLASSES)
    parts = model.losses(raw, ab)
    assert set(parts) == {"regression", "classification", "segmentation", "scene"}
    assert all(torch.isfinite(v) and v.ndim == 0 for v in parts.values())
    total = sum(model.loss_weights[k] * v for k, v in parts.items())
    assert torch.allclose(model.loss(raw, ab), total)


def test_semantic_pseudo_labels_are_deterministic():
    centres = segment_centres()
    assert centres.shape == (SEGMENTS, 2) and (centres[0] == 0).all()
    # Each centre is its own segment; grey is segment 0.
    assert (pseudo_segments(centres.T.reshape(1, 2, SEGMENTS, 1))[0, :, 0] == torch.arange(SEGMENTS)).all()
    g = torch.Generator().manual_seed(3)
    ab = (torch.rand(3, 2, 24, 24, generator=g) - 0.5) * 120
    l = torch.rand(3, 1, 24, 24, generator=g) * 100
    assert torch.equal(pseudo_segments(ab), pseudo_segments(ab.clone()))
    scene = pseudo_scene(ab, l)
    assert torch.equal(scene, pseudo_scene(ab.clone(), l.clone()))
    assert scene.dtype == torch.int64 and ((scene >= 0) & (scene < SCENE_CLASSES)).all()
    # A flat grey picture is class 0 (neutral, smooth); a noisy blue one is textured and blue.
    assert pseudo_scene(torch.zeros(1, 2, 8, 8), torch.full((1, 1, 8, 8), 50.0)).item() == 0
    blue = torch.tensor([0.0, -40.0]).view(1, 2, 1, 1).expand(1, 2, 8, 8)
    noisy = torch.rand(1, 1, 8, 8, generator=g) * 100
    blue_segment = pseudo_segments(blue)[0, 0, 0].item()
    assert pseudo_scene(blue, noisy).item() == 2 * blue_segment + 1


# --------------------------------------------------------------------------
# one short real training run per model
# --------------------------------------------------------------------------


def _images(n=4):
    paths = sorted(TRAIN_DIR.glob("*.jpg"))[:n] if TRAIN_DIR.is_dir() else []
    images = []
    for p in paths:
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is not None:
            s = 64 / min(bgr.shape[:2])
            small = cv2.resize(bgr, (max(64, round(bgr.shape[1] * s)), max(64, round(bgr.shape[0] * s))),
                               interpolation=cv2.INTER_AREA)
            images.append(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))
    if len(images) < n:  # synthetic: coloured sky over coloured ground, with texture
        rng = np.random.default_rng(0)
        for i in range(n - len(images)):
            img = np.zeros((64, 64, 3), np.uint8)
            img[:32] = (40 + 30 * i, 120, 200)
            img[32:] = (60, 160 - 20 * i, 40)
            images.append(cv2.add(img, rng.integers(0, 40, img.shape, dtype=np.uint8)))
    return images


@pytest.mark.parametrize("name", LITERATURE)
def test_short_training_lowers_the_loss(name):
    """12 Adam steps on one batch of two crops at the smallest training size (MIN_CROP) of
    real photos (synthetic ones when data/train is absent), through the model's own loss."""
    torch.manual_seed(0)
    images = _images()
    l, ab = split_lab(random_batch(images, 2, MIN_CROP, np.random.default_rng(0)))
    model = get_model(name).build()
    if hasattr(model, "set_prior"):
        from vidcolor.training.train import bin_counts

        model.set_prior(bin_counts(images, model.bins, size=32))
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(12):
        loss = model.loss(model(l), ab)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(x) for x in losses)
    assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses
