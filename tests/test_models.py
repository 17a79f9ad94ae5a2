"""Every registered model: builds, runs, trains a step, saves and loads."""

import pytest
import torch

from vidcolor import weights
from vidcolor.errors import UnknownModel, WeightsError
from vidcolor.models import get_model, list_models


# ConvNeXt-L's 228 M parameters: half a minute and a 0.9 GB file on this CPU.
HEAVY = {"ddcolor-large"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in list_models()])
def test_model_forward_decode_loss(name, tmp_path):
    spec = get_model(name)
    model = spec.build()
    # the registry's facts are the network's: nothing builds a network to ask them
    assert sum(p.numel() for p in model.parameters()) == spec.params
    assert (spec.temporal, spec.takes_hints) == (getattr(model, "temporal", False), getattr(model, "takes_hints", False))
    # temporal_lite holds lite_unet's regression, but its trainer fits only the temporal head
    assert spec.rebalances == (hasattr(model, "regression_rebalance") and not spec.temporal)
    torch.manual_seed(0)
    l = torch.rand(2, 1, 64, 48) * 100
    ab_true = (torch.rand(2, 2, 64, 48) - 0.5) * 100
    raw = model(l)
    ab = model.decode(raw)
    assert ab.shape == (2, 2, 64, 48)
    assert torch.isfinite(ab).all() and ab.abs().max() <= 128
    loss = model.loss(raw, ab_true)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)

    path = tmp_path / f"{name}.safetensors"
    weights.save(model, path, {"test": "yes"})
    again = spec.build()
    weights.load_into(again, path, name)
    model.eval(), again.eval()
    with torch.no_grad():
        assert torch.equal(model.decode(model(l)), again.decode(again(l)))


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in list_models()])
def test_conv_bn_folding_keeps_the_outputs(name):
    """The Colorizer folds BatchNorm into the convolution before it: same colours, fewer layers."""
    import copy

    from vidcolor.colorizer import fuse_conv_bn

    torch.manual_seed(1)
    model = get_model(name).build()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:  # statistics a trained network would have, not the identity of a fresh one
            if bn.running_mean is not None:
                bn.running_mean.normal_(0, 0.2)
                bn.running_var.uniform_(0.5, 2.0)
            if bn.affine:
                bn.weight.normal_(1, 0.2)
                bn.bias.normal_(0, 0.2)
    model.eval()
    fused = fuse_conv_bn(copy.deepcopy(model))
    if name == "default" or name == get_model("default").name:
        assert bns and not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    l = torch.rand(2, 1, 64, 48) * 100
    with torch.no_grad():
        want, got = model.decode(model(l)), fused.decode(fused(l))
    torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("name", [n for n in list_models() if get_model(n).weights])
def test_shipped_weights_load_strictly(name):
    path = weights.shipped_dir() / get_model(name).weights
    assert path.is_file(), f"{name}: the registry names {path}, which is not there"
    weights.load_into(get_model(name).build(), path, name)  # strict: every key, every shape
    assert not weights.load_model(name).training


def test_unknown_model_lists_valid_names():
    with pytest.raises(UnknownModel) as e:
        get_model("nope")
    assert "zhang2016" in str(e.value) and isinstance(e.value, KeyError)


def test_weights_of_another_model_are_refused(tmp_path):
    path = tmp_path / "w.safetensors"
    weights.save(get_model("zhang2016-full").build(), path)
    with pytest.raises(WeightsError, match="wrong shape"):
        weights.load_into(get_model("zhang2016").build(), path, "zhang2016")


def test_pth_is_read_without_unpickling_objects(tmp_path):
    model = get_model("zhang2016").build()
    good = tmp_path / "good.pth"
    torch.save({"params": model.state_dict()}, good)
    weights.load_into(get_model("zhang2016").build(), good, "zhang2016")

    class Evil:
        def __reduce__(self):
            return (print, ("unpickled!",))

    bad = tmp_path / "bad.pth"
    torch.save({"x": Evil()}, bad)
    with pytest.raises(WeightsError, match="not a readable weights file"):
        weights.read_state_dict(bad)


def test_models_without_shipped_weights_say_how_to_get_them():
    with pytest.raises(WeightsError, match="--weights"):
        weights.load_model("zhang2016-full")


def test_shipped_default_loads():
    model = weights.load_model("zhang2016")
    assert not model.training


def test_readme_model_table_is_current():
    import pathlib

    from vidcolor.docs import models_markdown

    readme = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert models_markdown() in readme, "the README's model table is stale: run python -m vidcolor.docs"


@pytest.mark.parametrize("name", [n for n in list_models() if get_model(n).weights])
def test_model_card_quotes_its_own_network(name):
    """A card's network section is its network module's docstring (scripts/model_card.py), not another's."""
    import importlib
    import inspect
    import pathlib

    card = pathlib.Path(__file__).resolve().parent.parent / "models" / f"{name}.md"
    text = card.read_text()
    header = "## The network (from its module's docstring)\n\n"
    assert header in text, f"{card} has no network section: run scripts/model_card.py {name}"
    module = importlib.import_module(f"vidcolor.models.{get_model(name).builder.split(':')[0]}")
    first = inspect.cleandoc(module.__doc__).splitlines()[0]
    assert text.split(header, 1)[1].startswith(first)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("name", [n for n in list_models() if get_model(n).weights])
def test_reduced_precision_path_keeps_the_colour(name, dtype):
    """The autocast path a GPU takes by default (fp16), run on the CPU: float32 chroma, as fp32 gives."""
    from vidcolor.colorizer import Colorizer
    from vidcolor.runtime import Runtime

    # a picture with structure (a lit sphere over a horizon), not noise: the networks' colour follows it
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 96), torch.linspace(-1, 1, 128), indexing="ij")
    y = (0.35 + 0.3 * (yy < 0.2) + 0.3 * torch.clamp(1 - (xx ** 2 + yy ** 2) * 3, 0, 1)).view(1, 1, 96, 128)
    full = Colorizer(name, None, Runtime(device="cpu", dtype="float32")).chroma(y, (96, 128), "bt601")
    low = Colorizer(name, None, Runtime(device="cpu", dtype=dtype)).chroma(y, (96, 128), "bt601")
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    # within 5% of the colour, or of one 8-bit code where a model paints little colour on this picture
    # (lite_unet: 1.2 codes; bfloat16's 8-bit mantissa through its 16 inverted bottlenecks moves it by 1.25)
    assert (low - full).abs().mean() <= max(0.05 * full.abs().mean(), 1.5 / 255) + 1e-4


def test_listing_models_imports_no_network():
    """`vidcolor models` and the CLI's choices read the registry's table: torch is not even imported."""
    import subprocess
    import sys

    code = ("import sys, io, contextlib; from vidcolor import cli\n"
            "out = io.StringIO()\n"
            "with contextlib.redirect_stdout(out): rc = cli.main(['models'])\n"
            "print(rc, 'torch' in sys.modules, out.getvalue().count('(default)'), len(out.getvalue().splitlines()))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["0", "False", "1", str(len(list_models()) + 1)]


def test_adaptive_head_takes_the_bins_colour_only_where_they_are_confident():
    """lite_unet's default decoding: the regression's ab where the bin distribution is flat, the bins'
    annealed mean where it is peaked, and both heads' own decodings unchanged by it."""
    from vidcolor.models.lite_unet import AB_SCALE, CLASS_POOL, LiteUNet

    model = LiteUNet().eval()
    assert model.head == "adaptive"
    q = model.bins.shape[0]
    green = int(((model.bins - torch.tensor([-40.0, 40.0])) ** 2).sum(1).argmin())
    logits = torch.zeros(1, q, 2, 2)          # left column flat (confidence 0), right column sure of green
    logits[0, green, :, 1] = 30.0
    raw = {"ab": torch.full((1, 2, 2, 2), 10.0 / AB_SCALE), "l": torch.zeros(1, 1, 2, 2), "logits": logits}
    ab = model.decode(raw)
    assert torch.allclose(ab[0, :, :, 0], torch.full((2, 2), 10.0), atol=1e-4)
    assert torch.allclose(ab[0, :, :, 1], model.bins[green][:, None].expand(2, 2), atol=0.5), ab
    # at inference the bins come at 1/CLASS_POOL of the regression's resolution, and are upsampled to it
    with torch.inference_mode():
        out = model(torch.rand(1, 1, 64, 96) * 100)
    assert out["logits"].shape[-2:] == (-(-out["ab"].shape[-2] // CLASS_POOL), -(-out["ab"].shape[-1] // CLASS_POOL))
    assert model.decode(out).shape == (1, 2, 64, 96)
