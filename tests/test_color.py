import cv2
import numpy as np
import pytest
import torch

from vidcolor import color


def test_lab_matches_opencv_and_round_trips():
    rgb = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    lab = color.rgb_to_lab(rgb)
    ref = cv2.cvtColor(rgb.permute(1, 2, 0).numpy(), cv2.COLOR_RGB2Lab)
    # OpenCV rounds its constants a little differently; 0.5 Lab units is far below a visible step.
    assert np.abs(lab.permute(1, 2, 0).numpy() - ref).max() < 0.5
    assert torch.allclose(color.lab_to_rgb(lab), rgb, atol=1e-4)


def test_gray_to_l_is_the_lightness_of_a_grey():
    y = torch.linspace(0, 1, 11)
    grey = y[:, None, None].expand(11, 3, 1).unsqueeze(-1)  # (11, 3, 1, 1)
    assert torch.allclose(color.gray_to_l(y), color.rgb_to_lab(grey)[:, 0, 0, 0], atol=1e-3)
    assert color.gray_to_l(torch.tensor(0.0)).abs() < 1e-4
    assert (color.gray_to_l(torch.tensor(1.0)) - 100).abs() < 1e-3


@pytest.mark.parametrize("matrix", sorted(color.MATRICES))
def test_chroma_keeps_the_luma(matrix):
    g = torch.Generator().manual_seed(1)
    y = torch.rand(2, 1, 8, 8, generator=g)
    ab = (torch.rand(2, 2, 8, 8, generator=g) - 0.5) * 120
    cbcr = color.chroma_for_luma(y, ab, matrix)
    assert cbcr.abs().max() <= 0.5 + 1e-6
    rgb = color.ycbcr_to_rgb(y, cbcr, matrix)
    inside = (rgb > 1e-4).all(dim=1) & (rgb < 1 - 1e-4).all(dim=1)
    # Where joining the new chroma to the luma stays in gamut the luma is exactly kept.
    assert torch.allclose(color.luma(rgb, matrix)[:, 0][inside], y[:, 0][inside], atol=1e-5)
    # And the hue follows the prediction: a positive b (yellow) means a negative Cb.
    yellow = color.chroma_for_luma(torch.full((1, 1, 1, 1), 0.6), torch.tensor([0.0, 60.0]).view(1, 2, 1, 1))
    assert yellow[0, 0] < 0


def test_bins_are_in_gamut_grid_cells():
    bins = color.ab_bins(10)
    assert bins.shape[1] == 2 and 250 < bins.shape[0] < 330
    assert torch.all(bins % 10 == 0)
    # Neutral grey and saturated sRGB primaries all fall in a bin.
    prim = color.rgb_to_lab(torch.eye(3).view(3, 3, 1, 1))[:, 1:, 0, 0]
    d = torch.cdist(torch.cat([prim, torch.zeros(1, 2)]), bins).min(dim=1).values
    assert (d <= 5 * 2**0.5 + 1e-4).all()


def test_soft_encoding_and_annealed_mean():
    bins = color.ab_bins()
    ab = torch.tensor([[[[20.0]], [[-30.0]]]])
    target = color.soft_encode(ab, bins)
    assert torch.allclose(target.sum(dim=1), torch.ones(1, 1, 1))
    assert (target > 0).sum() == 5
    assert torch.allclose(bins[target[0, :, 0, 0].argmax()], torch.tensor([20.0, -30.0]))
    logits = torch.log(target.clamp(min=1e-12))
    # T = 1 is the plain expectation; a small T moves to the mode.
    mean = color.annealed_mean(logits, bins, 1.0)[0, :, 0, 0]
    assert torch.allclose(mean, (target[0, :, 0, 0, None] * bins).sum(0), atol=1e-4)
    mode = color.annealed_mean(logits, bins, 0.01)[0, :, 0, 0]
    assert torch.allclose(mode, torch.tensor([20.0, -30.0]), atol=1e-3)


def test_rebalancing_weights():
    counts = torch.zeros(len(color.ab_bins()))
    counts[:10] = 100
    counts[10:] = 1
    prior = color.smoothed_prior(counts, color.ab_bins())
    assert torch.isclose(prior.sum(), torch.tensor(1.0), atol=1e-5)
    w = color.rebalance_weights(prior, 0.5)
    assert torch.isclose((prior * w).sum(), torch.tensor(1.0), atol=1e-5)
    # Rare colours weigh more than common ones.
    assert w[100] > w[0]


@pytest.mark.parametrize("matrix", sorted(color.MATRICES))
def test_chroma_for_luma_is_the_composition_it_shortens(matrix):
    """chroma_for_luma takes shortcuts (no L round trip, offsets from the colour itself): same values."""
    y = torch.linspace(0, 1, 41).view(1, 1, 41, 1).expand(1, 1, 41, 41 * 41)
    a, b = torch.meshgrid(torch.linspace(-110, 110, 41), torch.linspace(-110, 110, 41), indexing="ij")
    ab = torch.stack((a.flatten(), b.flatten())).view(1, 2, 1, -1).expand(1, 2, 41, -1)
    want = color.fit_chroma(y, color.rgb_to_chroma(color.lab_to_rgb(torch.cat((color.gray_to_l(y), ab), 1)),
                                                   matrix), matrix)
    got = color.chroma_for_luma(y, ab, matrix)
    assert (got - want).abs().max() < 2e-5


def test_srgb_curves_match_the_standard_pieces():
    x = torch.cat((torch.linspace(-0.1, 0.01, 2001), torch.linspace(0.01, 1.1, 2001)))
    c = x.clamp(0, 1)
    want = torch.where(c <= 0.0031308, c * 12.92, 1.055 * c.clamp(min=0.0031308) ** (1 / 2.4) - 0.055)
    assert (color.linear_to_srgb(x) - want).abs().max() < 1e-6
    assert (color.srgb_to_linear(color.linear_to_srgb(c)) - c).abs().max() < 1e-5
    t = torch.linspace(-0.05, 1.2, 5001)
    eps = 6 / 29
    want_f = torch.where(t > eps ** 3, t.clamp(min=eps ** 3) ** (1 / 3), t / (3 * eps ** 2) + 4 / 29)
    assert (color._f(t) - want_f).abs().max() < 1e-6
