"""Official-checkpoint conformance of the Zhang models (eccv16, siggraph17).

The official checkpoints cannot ship with the tests, so tests/data/official/
holds the official ``state_dict`` layouts (``NAME.keys.json``) and the outputs
of the official code (``NAME.ref.npz``) with deterministic synthetic weights
made from each key (the recipe of ../shared/fixtures/official/README.md,
re-implemented in ``synthetic_state_dict`` below). Loading those weights by
their official keys must reproduce the official outputs.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import zlib

import numpy as np
import pytest
import safetensors.torch
import torch

from vidcolor import weights
from vidcolor.errors import WeightsError
from vidcolor.models import get_model

DATA = pathlib.Path(__file__).parent / "data" / "official"
SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official"
MODELS = ("eccv16", "siggraph17")
TOL = 1e-4


# --------------------------------------------------------------------------
# synthetic weights, from the README's recipe
# --------------------------------------------------------------------------


def layout(name: str) -> list[tuple[str, tuple[int, ...], str]]:
    return [(k, tuple(s), d) for k, s, d in json.loads((DATA / f"{name}.keys.json").read_text())]


def _tensor(key: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    if not dtype.is_floating_point:
        return torch.zeros(shape, dtype=dtype)
    if key.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=g)
    if key.endswith("running_mean"):
        return 0.1 * torch.randn(shape, generator=g)
    if len(shape) <= 1:
        scale = key.endswith("weight") or key.endswith("gamma")
        return (1.0 if scale else 0.0) + 0.1 * torch.randn(shape, generator=g)
    return torch.randn(shape, generator=g) / float(np.prod(shape[1:])) ** 0.5


def synthetic_state_dict(lay) -> dict[str, torch.Tensor]:
    sd = {k: _tensor(k, tuple(s), getattr(torch, d)) for k, s, d in lay}
    for k in [k for k in sd if k.endswith(".weight_v")]:
        prefix = k[: -len("weight_v")]
        w = sd[prefix + "weight_orig"]
        v = torch.nn.functional.normalize(_tensor(k, tuple(sd[k].shape), torch.float32), dim=0)
        sd[k] = v
        sd[prefix + "weight_u"] = torch.nn.functional.normalize(w.reshape(w.shape[0], -1) @ v, dim=0)
    return sd


def ref(name: str) -> dict[str, np.ndarray]:
    with np.load(DATA / f"{name}.ref.npz") as z:
        return {k: z[k] for k in z.files}


def rel_err(out: torch.Tensor, expected: np.ndarray) -> float:
    expected = torch.from_numpy(expected).double()
    return float((out.double() - expected).norm() / expected.norm())


def save_safetensors(sd, path) -> pathlib.Path:
    safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


def save_pth(sd, path) -> pathlib.Path:
    torch.save({"params": sd}, path)
    return path


@pytest.fixture(scope="module", params=MODELS)
def official(request, tmp_path_factory):
    """(name, synthetic state dict, its safetensors file, its {"params": ...} .pth file)."""
    name = request.param
    sd = synthetic_state_dict(layout(name))
    tmp = tmp_path_factory.mktemp(name)
    return name, sd, save_safetensors(sd, tmp / f"{name}.safetensors"), save_pth(sd, tmp / f"{name}.pth")


def run(model, name: str, r: dict, hinted: bool = False) -> torch.Tensor:
    model.eval()
    l = torch.from_numpy(r["input_l"])
    with torch.no_grad():
        if hinted:
            raw = model(l, torch.from_numpy(r["hint_ab"]), torch.from_numpy(r["hint_mask"]))
        else:
            raw = model(l)
        return model.decode(raw)


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------


def test_generator_matches_shared_synthetic():
    """Checked once against the fixtures' own generator, where ../shared is present."""
    src = SHARED / "synthetic.py"
    if not src.is_file():
        pytest.skip("../shared/fixtures/official is not here")
    spec = importlib.util.spec_from_file_location("shared_synthetic", src)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for name in MODELS:
        lay = layout(name)
        theirs = mod.synthetic_state_dict(lay)
        ours = synthetic_state_dict(lay)
        assert ours.keys() == theirs.keys()
        for k in ours:
            assert ours[k].dtype == theirs[k].dtype and torch.equal(ours[k], theirs[k]), k
    # and the copies here are the shared fixtures
    for name in MODELS:
        for suffix in (".keys.json", ".ref.npz"):
            assert (DATA / f"{name}{suffix}").read_bytes() == (SHARED / f"{name}{suffix}").read_bytes()


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_layout_is_official(name):
    sd = get_model(name).build().state_dict()
    ours = [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in sd.items()]
    assert ours == layout(name)


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_reproduces_official_outputs(official, fmt):
    name, _, st, pth = official
    model = get_model(name).build()
    weights.load_into(model, st if fmt == "safetensors" else pth, name)
    r = ref(name)
    out = run(model, name, r)
    assert out.dtype == torch.float32 and out.shape == r["output_ab"].shape
    err = rel_err(out, r["output_ab"])
    print(f"{name} ({fmt}) relative error {err:.2e}")
    assert err < TOL
    if name == "siggraph17":
        out_h = run(model, name, r, hinted=True)
        err_h = rel_err(out_h, r["output_ab_hinted"])
        print(f"{name} hinted ({fmt}) relative error {err_h:.2e}")
        assert err_h < TOL
        # the hints matter
        assert rel_err(out_h, r["output_ab"]) > 10 * TOL


def test_load_model_path_gives_official_output(official):
    name, _, st, _ = official
    model = weights.load_model(name, st)
    assert not model.training
    r = ref(name)
    assert rel_err(run(model, name, r), r["output_ab"]) < TOL


def test_files_without_num_batches_tracked_load(official, tmp_path):
    name, sd, _, _ = official
    lean = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    assert len(lean) < len(sd)
    for path in (save_safetensors(lean, tmp_path / "a.safetensors"), save_pth(lean, tmp_path / "a.pth")):
        model = get_model(name).build()
        weights.load_into(model, path, name)
        r = ref(name)
        assert rel_err(run(model, name, r), r["output_ab"]) < TOL


def test_siggraph17_without_model_class_loads(tmp_path):
    sd = synthetic_state_dict(layout("siggraph17"))
    lean = {k: v for k, v in sd.items() if not k.startswith("model_class.")
            and not k.endswith("num_batches_tracked")}
    model = get_model("siggraph17").build()
    weights.load_into(model, save_pth(lean, tmp_path / "s.pth"), "siggraph17")
    r = ref("siggraph17")
    assert rel_err(run(model, "siggraph17", r), r["output_ab"]) < TOL
    assert rel_err(run(model, "siggraph17", r, hinted=True), r["output_ab_hinted"]) < TOL


def test_eccv16_must_have_its_classifier_and_bins(tmp_path):
    """model_class is SIGGRAPH17's only optional part: eccv16 tolerates no such absence."""
    sd = synthetic_state_dict(layout("eccv16"))
    for drop in ("model_out.weight", "model8.6.bias", "model1.4.running_var"):
        path = save_safetensors({k: v for k, v in sd.items() if k != drop}, tmp_path / "m.safetensors")
        with pytest.raises(WeightsError, match="missing") as e:
            weights.load_into(get_model("eccv16").build(), path, "eccv16")
        assert drop in str(e.value) and str(path) in str(e.value)


@pytest.mark.parametrize("extra", ["model_extra.weight", "model1.4.extra", "module.model1.0.weight"])
def test_unexpected_key_is_refused(official, tmp_path, extra):
    name, sd, _, _ = official
    path = save_pth({**sd, extra: torch.zeros(3)}, tmp_path / "x.pth")
    with pytest.raises(WeightsError, match="unexpected") as e:
        weights.load_into(get_model(name).build(), path, name)
    assert extra in str(e.value) and str(path) in str(e.value)


def test_missing_key_is_refused(official, tmp_path):
    name, sd, _, _ = official
    drop = "model4.2.weight"
    path = save_safetensors({k: v for k, v in sd.items() if k != drop}, tmp_path / "m.safetensors")
    with pytest.raises(WeightsError, match="missing") as e:
        weights.load_into(get_model(name).build(), path, name)
    assert drop in str(e.value) and str(path) in str(e.value)


def test_wrong_shape_is_refused(official, tmp_path):
    name, sd, _, _ = official
    path = save_safetensors({**sd, "model1.0.bias": torch.zeros(7)}, tmp_path / "w.safetensors")
    with pytest.raises(WeightsError, match="wrong shape.*model1.0.bias"):
        weights.load_into(get_model(name).build(), path, name)


def test_eccv16_annealed_is_selectable_by_name():
    """`--model eccv16-annealed`: the same official layout (the same files load), the paper's decoding."""
    model = get_model("eccv16-annealed").build()
    assert model.decoding == "annealed"
    own = {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()}
    assert own == {k: (s, d) for k, s, d in layout("eccv16")}


def test_eccv16_annealed_mean_option():
    sd = synthetic_state_dict(layout("eccv16"))
    r = ref("eccv16")
    official_model = get_model("eccv16").build()
    official_model.load_state_dict(sd)
    annealed = get_model("eccv16").build(decoding="annealed")
    annealed.load_state_dict(sd)
    assert annealed.decoding == "annealed" and annealed.temperature == pytest.approx(0.38)
    out_o = run(official_model, "eccv16", r)
    out_a = run(annealed, "eccv16", r)
    assert torch.isfinite(out_a).all() and out_a.shape == out_o.shape
    assert rel_err(out_o, r["output_ab"]) < TOL
    assert rel_err(out_a, r["output_ab"]) > 1e-2
    # the attribute can be switched on a loaded model too
    official_model.decoding = "annealed"
    assert torch.equal(run(official_model, "eccv16", r), out_a)
    # the bin centres are model_out's weights, in ab units
    assert torch.allclose(annealed.bins, sd["model_out.weight"].reshape(2, -1).T * 110)
    # T = 1 is the official plain mean
    annealed.temperature = 1.0
    assert rel_err(run(annealed, "eccv16", r), r["output_ab"]) < TOL
    with pytest.raises(ValueError):
        get_model("eccv16").build(decoding="mode")


def test_eccv16_fresh_bins_are_313_distinct_grid_cells():
    bins = get_model("eccv16").build().bins
    assert bins.shape == (313, 2)
    assert torch.unique(bins, dim=0).shape[0] == 313
    assert torch.equal(bins, (bins / 10).round() * 10)


def test_siggraph17_hint_shapes_and_defaults():
    model = get_model("siggraph17").build().eval()
    l = torch.rand(1, 1, 32, 40) * 100
    with torch.no_grad():
        none = model(l)
        zeros = model(l, torch.zeros(1, 2, 32, 40), torch.zeros(1, 1, 32, 40))
    assert none.shape == (1, 2, 32, 40)
    assert torch.equal(none, zeros)


def test_missing_weights_name_the_official_files():
    with pytest.raises(WeightsError, match="colorization_release_v2-9b330a0b.pth"):
        weights.load_model("eccv16")
    with pytest.raises(WeightsError, match="siggraph17-df00044c.pth"):
        weights.load_model("siggraph17")
