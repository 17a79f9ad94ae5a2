"""DDColor (ddcolor-tiny, ddcolor-large): official-checkpoint conformance, the
official image pipeline, any frame shape, and `vidcolor convert-weights`.

The fixtures in tests/data/official/ are copies of ../shared/fixtures/official:
the official state_dict layouts and the official code's outputs with synthetic
weights (the generator of tests/test_official.py, from the fixtures' recipe).
"""

from __future__ import annotations

import importlib.util
import pathlib

import cv2
import numpy as np
import pytest
import safetensors.torch
import torch

from test_official import DATA, SHARED, TOL, layout, ref, rel_err, save_pth, save_safetensors, synthetic_state_dict
from vidcolor import color, weights
from vidcolor.cli import main
from vidcolor.errors import WeightsError
from vidcolor.models import get_model
from vidcolor.official import colorize_bgr

FIXTURES = {"ddcolor-tiny": "ddcolor_tiny", "ddcolor-large": "ddcolor_large"}


@pytest.fixture(scope="module")
def tiny_sd():
    return synthetic_state_dict(layout("ddcolor_tiny"))


@pytest.fixture(scope="module")
def tiny_files(tiny_sd, tmp_path_factory):
    """The synthetic tiny weights as safetensors and as an official-style {"params": ...} .pth."""
    tmp = tmp_path_factory.mktemp("ddcolor")
    return save_safetensors(tiny_sd, tmp / "tiny.safetensors"), save_pth(tiny_sd, tmp / "ddcolor_paper_tiny.pth")


@pytest.fixture(scope="module")
def tiny(tiny_files):
    """ddcolor-tiny loaded from the {"params": ...} .pth through the strict loader, in eval mode."""
    model = get_model("ddcolor-tiny").build()
    weights.load_into(model, tiny_files[1], "ddcolor-tiny")
    return model.eval()


def official_join(l_full: np.ndarray, ab: torch.Tensor) -> np.ndarray:
    """BGR uint8 of OpenCV's L (h, w, 1) joined with network ab (1, 2, h, w), as the official code does."""
    lab = np.concatenate((l_full, ab[0].float().numpy().transpose(1, 2, 0)), axis=-1)
    return (cv2.cvtColor(lab, cv2.COLOR_LAB2BGR) * 255.0).round().astype(np.uint8)


def within_one_level(a: np.ndarray, b: np.ndarray) -> float:
    """The fraction of samples of two uint8 images that differ by at most one level."""
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
    return float((np.abs(a.astype(int) - b.astype(int)) <= 1).mean())


# --------------------------------------------------------------------------
# layout and conformance
# --------------------------------------------------------------------------


def test_fixture_copies_and_generator_match_shared():
    if not (SHARED / "synthetic.py").is_file():
        pytest.skip("../shared/fixtures/official is not here")
    for name in FIXTURES.values():
        for suffix in (".keys.json", ".ref.npz"):
            assert (DATA / f"{name}{suffix}").read_bytes() == (SHARED / f"{name}{suffix}").read_bytes()
    spec = importlib.util.spec_from_file_location("shared_synthetic", SHARED / "synthetic.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    # All of tiny; of large the decoders (its spectral-norm triples), whose shapes differ from tiny's.
    for name, keep in (("ddcolor_tiny", lambda k: True), ("ddcolor_large", lambda k: not k.startswith("encoder."))):
        lay = [row for row in layout(name) if keep(row[0])]
        theirs, ours = mod.synthetic_state_dict(lay), synthetic_state_dict(lay)
        assert ours.keys() == theirs.keys() and any(k.endswith("weight_u") for k in ours)
        for k in ours:
            assert ours[k].dtype == theirs[k].dtype and torch.equal(ours[k], theirs[k]), k


@pytest.mark.parametrize("name", FIXTURES)
def test_state_dict_layout_is_official(name):
    spec = get_model(name)
    model = spec.build()
    assert spec.weights is None and model.input_size == spec.working_size and spec.working_size % 32 == 0
    sd = model.state_dict()
    ours = [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in sd.items()]
    assert ours == layout(FIXTURES[name])


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_tiny_reproduces_official_output(tiny_files, fmt):
    model = get_model("ddcolor-tiny").build()
    weights.load_into(model, tiny_files[0] if fmt == "safetensors" else tiny_files[1], "ddcolor-tiny")
    model.eval()
    r = ref("ddcolor_tiny")
    with torch.no_grad():
        out = model.forward_rgb(torch.from_numpy(r["input_rgb"]))
    assert out.dtype == torch.float32 and out.shape == r["output_ab"].shape
    err = rel_err(out, r["output_ab"])
    print(f"ddcolor-tiny ({fmt}) relative error {err:.2e}")
    assert err < TOL


def test_forward_from_l_is_the_official_output(tiny):
    """forward(L) builds the official gray RGB itself: L of the fixture's gray input gives its output."""
    r = ref("ddcolor_tiny")
    rgb = torch.from_numpy(r["input_rgb"])
    assert torch.equal(rgb[:, 0], rgb[:, 1]) and torch.equal(rgb[:, 0], rgb[:, 2])
    l = color.gray_to_l(rgb[:, :1])
    assert tiny.input_size == l.shape[-1] == 256
    with torch.no_grad():
        ab = tiny.decode(tiny(l))
    assert ab.shape == (1, 2, 256, 256)
    assert rel_err(ab, r["output_ab"]) < TOL


def test_large_reproduces_official_output():
    r = ref("ddcolor_large")
    model = get_model("ddcolor-large").build()
    model.load_state_dict(synthetic_state_dict(layout("ddcolor_large")), strict=True)
    model.eval()
    with torch.no_grad():
        out = model.forward_rgb(torch.from_numpy(r["input_rgb"]))
    err = rel_err(out, r["output_ab"])
    print(f"ddcolor-large relative error {err:.2e}")
    assert err < TOL


# --------------------------------------------------------------------------
# the official pipeline, and frames of any shape
# --------------------------------------------------------------------------


def test_official_pipeline_reproduces_official_bgr(tiny):
    r = ref("ddcolor_tiny")
    out = colorize_bgr(tiny, r["pipeline_input_bgr"], 256)
    frac = within_one_level(out, r["pipeline_output_bgr"])
    print(f"pipeline: {frac:.4%} of samples within one level")
    assert frac >= 0.99


def test_cli_photo_gives_the_official_pipeline_result(tiny_files, tmp_path):
    """`vidcolor photo.png --model ddcolor-tiny --weights F`: the official demo's picture."""
    r = ref("ddcolor_tiny")
    src = tmp_path / "photo.png"
    cv2.imwrite(str(src), r["pipeline_input_bgr"])
    assert main([str(src), "--model", "ddcolor-tiny", "--weights", str(tiny_files[1]), "--quiet"]) == 0
    out = cv2.imread(str(tmp_path / "photo.colorized.png"), cv2.IMREAD_COLOR)
    assert within_one_level(out, r["pipeline_output_bgr"]) >= 0.99


@pytest.mark.parametrize("shape", [(83, 150), (300, 210)])
def test_forward_at_any_shape_gives_the_official_result(tiny, shape):
    """Non-square, not multiples of 32, smaller and larger than the input size: forward(L) at the
    frame's own size, joined with L, is what the official pipeline makes of that frame."""
    h, w = shape
    bgr = cv2.resize(ref("ddcolor_tiny")["pipeline_input_bgr"], (w, h), interpolation=cv2.INTER_AREA)
    expected = colorize_bgr(tiny, bgr)
    l_full = cv2.cvtColor((bgr / 255.0).astype(np.float32), cv2.COLOR_BGR2Lab)[:, :, :1]
    with torch.no_grad():
        ab = tiny.decode(tiny(torch.from_numpy(l_full.transpose(2, 0, 1).copy())[None]))
    assert ab.shape == (1, 2, h, w) and torch.isfinite(ab).all()
    assert within_one_level(official_join(l_full, ab), expected) >= 0.99
    # and the colour is the network's, not grey: the result differs from the gray input somewhere
    gray = cv2.cvtColor(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    assert np.abs(expected.astype(int) - gray.astype(int)).max() > 10


def test_pad_fit_keeps_the_aspect_and_frames_of_a_batch_are_independent(tiny_sd):
    model = get_model("ddcolor-tiny").build(fit="pad")
    model.load_state_dict(tiny_sd)
    model.eval()
    torch.manual_seed(2)
    l = torch.rand(2, 1, 64, 96) * 100
    with torch.no_grad():
        both = model(l)
        # at multiples of 32 the network sees the frame itself, at its aspect
        assert torch.equal(both, model.forward_rgb(color.l_to_gray(l).expand(-1, 3, -1, -1)))
        one = torch.cat([model(l[i:i + 1]) for i in range(2)])
        odd = model(l[:1, :, :50, :70])
    assert both.shape == (2, 2, 64, 96) and rel_err(both, one.numpy()) < 1e-5
    assert odd.shape == (1, 2, 50, 70) and torch.isfinite(odd).all()


def test_bad_sizes_are_refused(tiny):
    with pytest.raises(ValueError, match="multiples of 32"):
        tiny.forward_rgb(torch.zeros(1, 3, 64, 80))
    with pytest.raises(ValueError, match="multiple of 32"):
        get_model("ddcolor-tiny").build(input_size=500)
    with pytest.raises(ValueError, match="fit"):
        get_model("ddcolor-tiny").build(fit="crop")
    with pytest.raises(ValueError):
        colorize_bgr(get_model("ddcolor-tiny").build(), np.zeros((8, 8, 3), np.uint8))  # training mode


def test_missing_weights_name_the_official_files():
    with pytest.raises(WeightsError, match="ddcolor_paper_tiny.pth") as e:
        weights.load_model("ddcolor-tiny")
    assert "damo/cv_ddcolor_image-colorization" in str(e.value)
    # the same message, without building ConvNeXt-L first
    with pytest.raises(WeightsError, match="ddcolor_modelscope.pth.*ddcolor_paper.pth.*ddcolor_artistic.pth"):
        weights.weights_path(get_model("ddcolor-large"), None)


# --------------------------------------------------------------------------
# strict loading
# --------------------------------------------------------------------------


@pytest.mark.parametrize("drop", ["decoder.color_decoder.query_feat.weight", "refine_net.0.0.weight_u"])
def test_missing_key_is_refused(tiny_sd, tmp_path, drop):
    path = save_safetensors({k: v for k, v in tiny_sd.items() if k != drop}, tmp_path / "m.safetensors")
    with pytest.raises(WeightsError, match="missing") as e:
        weights.load_into(get_model("ddcolor-tiny").build(), path, "ddcolor-tiny")
    assert drop in str(e.value) and str(path) in str(e.value)


@pytest.mark.parametrize("extra", ["encoder.arch.head.weight", "params.mean"])
def test_unexpected_key_is_refused(tiny_sd, tmp_path, extra):
    path = save_pth({**tiny_sd, extra: torch.zeros(3)}, tmp_path / "x.pth")
    with pytest.raises(WeightsError, match="unexpected") as e:
        weights.load_into(get_model("ddcolor-tiny").build(), path, "ddcolor-tiny")
    assert extra in str(e.value) and str(path) in str(e.value)


def test_large_weights_do_not_fit_tiny(tmp_path):
    """A user passing a large checkpoint to ddcolor-tiny hears which keys do not fit."""
    # Its encoder norms are enough to show it (the whole file is 0.9 GB).
    sd = {k: torch.zeros(s) for k, s, _ in layout("ddcolor_large") if k.startswith("encoder.arch.norm")}
    path = save_pth(sd, tmp_path / "ddcolor_modelscope.pth")
    with pytest.raises(WeightsError, match="wrong shape: encoder.arch.norm"):
        weights.load_into(get_model("ddcolor-tiny").build(), path, "ddcolor-tiny")


# --------------------------------------------------------------------------
# vidcolor convert-weights
# --------------------------------------------------------------------------


@pytest.fixture
def eccv16_pth(tmp_path):
    sd = synthetic_state_dict(layout("eccv16"))
    return sd, save_pth(sd, tmp_path / "colorization_release_v2-9b330a0b.pth")


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vidcolor: error: "), err
    return err


def test_convert_weights_writes_loadable_safetensors(eccv16_pth, tmp_path, capsys):
    sd, src = eccv16_pth
    dst = tmp_path / "eccv16.safetensors"
    assert main(["convert-weights", str(src), str(dst), "--model", "eccv16"]) == 0
    assert "wrote" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([src.name, dst.name])  # no .partial left
    out = safetensors.torch.load_file(str(dst))
    assert out.keys() == sd.keys() and all(torch.equal(out[k], sd[k]) and out[k].dtype == sd[k].dtype for k in sd)
    model = get_model("eccv16").build()
    weights.load_into(model, dst, "eccv16")
    model.eval()
    r = ref("eccv16")
    with torch.no_grad():
        assert rel_err(model.decode(model(torch.from_numpy(r["input_l"]))), r["output_ab"]) < TOL


def test_convert_weights_never_overwrites_its_input(tmp_path, capsys):
    sd = synthetic_state_dict(layout("eccv16"))
    src = save_safetensors(sd, tmp_path / "w.safetensors")
    before = src.read_bytes()
    link = tmp_path / "link.safetensors"
    link.symlink_to(src)
    for dst in (src, link):
        assert main(["convert-weights", str(src), str(dst), "--overwrite"]) == 1
        assert "the output is the input" in _error_line(capsys)
    assert src.read_bytes() == before


def test_convert_weights_existing_output_needs_overwrite(eccv16_pth, tmp_path, capsys):
    _, src = eccv16_pth
    dst = tmp_path / "out.safetensors"
    dst.write_bytes(b"old")
    assert main(["convert-weights", str(src), str(dst)]) == 1
    assert "--overwrite" in _error_line(capsys) and dst.read_bytes() == b"old"
    assert main(["convert-weights", str(src), str(dst), "--overwrite"]) == 0
    assert safetensors.torch.load_file(str(dst)).keys() == torch.load(src, weights_only=True)["params"].keys()


def test_convert_weights_checks_the_model(eccv16_pth, tmp_path, capsys):
    _, src = eccv16_pth
    dst = tmp_path / "out.safetensors"
    assert main(["convert-weights", str(src), str(dst), "--model", "siggraph17"]) == 1
    assert "not weights of model 'siggraph17'" in _error_line(capsys)
    assert not dst.exists() and not dst.with_name(dst.name + ".partial").exists()


def test_convert_weights_refuses_other_suffixes_and_pickled_objects(tmp_path, capsys):
    marker = tmp_path / "unpickled"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bad = tmp_path / "bad.pth"
    torch.save({"params": {"x": Evil()}}, bad)
    assert main(["convert-weights", str(bad), str(tmp_path / "out.safetensors")]) == 1
    assert "not a readable weights file" in _error_line(capsys)
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()
    assert main(["convert-weights", str(bad), str(tmp_path / "out.pth")]) == 1
    assert ".safetensors" in _error_line(capsys)


def test_convert_weights_handles_tensors_sharing_memory(tmp_path):
    """torch.save keeps views of one storage; safetensors refuses shared memory unless each gets its own."""
    base = torch.arange(12, dtype=torch.float32)
    src = tmp_path / "tied.pth"
    torch.save({"a": base, "b": base[:6].view(2, 3), "c": base}, src)
    dst = tmp_path / "tied.safetensors"
    assert main(["convert-weights", str(src), str(dst)]) == 0
    out = safetensors.torch.load_file(str(dst))
    assert torch.equal(out["a"], base) and torch.equal(out["b"], base[:6].view(2, 3)) and torch.equal(out["c"], base)
