"""The model registry: each model's facts, and how to build it.

Every colorization network takes L (N,1,h,w, 0..100) at its working size and
offers ``forward`` (raw output, for training), ``decode`` (raw output to ab),
and ``loss`` (its paper's objective). The table below holds what callers ask
before building one (temporal, takes hints, working size, parameters, shipped
weights), so the CLI's choices, `vidcolor models`, the README's table and the
tests over every model read it without importing torch or building a network;
`ModelSpec.build` imports the network's module only when a model is made.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.resources
import pathlib

from ..errors import UnknownModel


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    #: short side of the luminance the network sees; frames keep their aspect.
    working_size: int
    #: learnable parameters of the built network (a test checks it), so listing models builds none.
    params: int
    #: file name under models/ of the shipped weights, or None.
    weights: str | None
    summary: str
    #: "module:function" under vidcolor.models that builds the network.
    builder: str
    #: where users get weights when none ship (official checkpoints).
    weights_hint: str | None = None
    #: takes the previous coloured frame: frames must be given in order.
    temporal: bool = False
    #: takes user colour hints (points of ab) as extra inputs.
    takes_hints: bool = False
    #: the ImageNet encoder training starts from (`vidcolor.training.pretrained`), or None.
    backbone: str | None = None
    #: its ab regression can weigh rare colours more (``regression_rebalance``, `vidcolor train --rebalance`).
    rebalances: bool = False

    def build(self, **kw):
        """A new network (a torch.nn.Module) with freshly initialized weights."""
        module, function = self.builder.split(":")
        return getattr(importlib.import_module(f"{__name__}.{module}"), function)(**kw)


_ECCV16 = ("the official colorization_release_v2-9b330a0b.pth of github.com/richzhang/colorization: "
           "https://colorizers.s3.us-east-2.amazonaws.com/colorization_release_v2-9b330a0b.pth")
_WHERE = ("the DDColor release of github.com/piddnad/DDColor (its model zoo) or ModelScope "
          "damo/cv_ddcolor_image-colorization: ")

_MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (
    ModelSpec("cheng2015", params=1_901_045, working_size=176, weights="cheng2015.safetensors",
              summary="Cheng et al. 2015: per-pixel MLP on patch + DAISY + semantic (semantic_unet "
                      "segmentation) descriptor, U,V least squares, joint bilateral refinement",
              builder="cheng2015:cheng2015"),
    ModelSpec("ddcolor-tiny", params=55_006_640, working_size=256, weights=None,
              summary="Kang et al. 2023, DDColor with ConvNeXt-T, official architecture and checkpoint layout",
              weights_hint=_WHERE + "ddcolor_paper_tiny.pth",
              builder="ddcolor:ddcolor_tiny"),
    ModelSpec("ddcolor-large", params=227_869_328, working_size=256, weights=None,
              summary="Kang et al. 2023, DDColor with ConvNeXt-L, official architecture and checkpoint layout",
              weights_hint=_WHERE + "ddcolor_modelscope.pth, ddcolor_paper.pth or ddcolor_artistic.pth",
              builder="ddcolor:ddcolor_large"),
    ModelSpec("eccv16", params=32_236_011, working_size=256, weights=None,
              summary="Zhang et al. 2016, official architecture and checkpoint layout (plain softmax mean)",
              weights_hint=_ECCV16,
              builder="eccv16:eccv16"),
    ModelSpec("eccv16-annealed", params=32_236_011, working_size=256, weights=None,
              summary="eccv16 decoded with the paper's annealed mean (T = 0.38) instead of the official code's mean",
              weights_hint=_ECCV16,
              builder="eccv16:eccv16_annealed"),
    ModelSpec("iizuka2016", params=2_647_588, working_size=224, weights="iizuka2016.safetensors",
              summary="Iizuka et al. 2016 (Let there be Color!), 1/4 widths: shared low-level, mid-level, "
                      "224x224 global branch + pseudo-label scene head, fusion, sigmoid ab, MSE",
              builder="iizuka2016:iizuka2016"),
    ModelSpec("koalarization", params=2_790_652, working_size=224, weights="koalarization.safetensors",
              summary="Deep Koalarization (Baldassarre et al. 2017), 1/4 widths: encoder to H/8, "
                      "replicated global embedding (Iizuka-style branch trained here) fused by 1x1, MSE",
              builder="koalarization:koalarization"),
    ModelSpec("larsson2016", params=4_997_334, working_size=176, weights="larsson2016.safetensors",
              summary="Larsson et al. 2016, 1/4-width VGG-16 hypercolumns from scratch, sparse training, "
                      "Lab bins decoded by expectation",
              builder="larsson2016:larsson2016"),
    ModelSpec("larsson2016-hc", params=4_946_448, working_size=176, weights="larsson2016-hc.safetensors",
              summary="Larsson et al. 2016, 1/4-width VGG-16 hypercolumns from scratch, sparse training, "
                      "hue/chroma histograms: median chroma, circular-mean hue",
              builder="larsson2016:larsson2016_hc"),
    ModelSpec("lite_unet", params=4_975_368, working_size=224, weights="lite_unet.safetensors",
              backbone="efficientnet-lite0", rebalances=True,
              summary="U-Net decoder on an ImageNet-pretrained EfficientNet-Lite0 encoder (Apache-2.0 weights), "
                      "ab regression + rebalanced ab-bin classification heads, the bins' colour where they are sure",
              builder="lite_unet:lite_unet"),
    ModelSpec("semantic_unet", params=1_886_771, working_size=176, weights="semantic_unet.safetensors",
              summary="Multi-task U-Net with semantic guides (IEEE Access 2020), base width 16, "
                      "ab-bin classification result + ab regression + pseudo-label segmentation and scene heads",
              builder="semantic_unet:semantic_unet"),
    ModelSpec("siggraph17", params=34_187_027, working_size=256, weights=None, takes_hints=True,
              summary="Zhang et al. 2017, user-guided, official architecture and checkpoint layout",
              weights_hint="the official siggraph17-df00044c.pth of github.com/richzhang/colorization: "
                           "https://colorizers.s3.us-east-2.amazonaws.com/siggraph17-df00044c.pth",
              builder="siggraph17:siggraph17"),
    ModelSpec("temporal_lite", params=5_014_665, working_size=224, weights="temporal_lite.safetensors",
              temporal=True, backbone="efficientnet-lite0",
              summary="lite_unet (EfficientNet-Lite0 ImageNet encoder, U-Net decoder), frozen, with the previous "
                      "frame's ab as input (Thasarathan et al. 2019) to a temporal head that blends it in; trained on "
                      "its own colouring of shots with a flow-warped temporal loss (Lai et al. 2018)",
              builder="temporal_lite:temporal_lite"),
    ModelSpec("temporal_unet", params=308_402, working_size=176, weights="temporal_unet.safetensors",
              temporal=True,
              summary="Thasarathan et al. 2019, temporally coherent GAN: U-Net generator on L + previous "
                      "frame's ab, PatchGAN, L1 + perceptual + style + adversarial losses",
              builder="temporal_unet:temporal_unet"),
    ModelSpec("zhang2016", params=1_365_078, working_size=128, weights="zhang2016.safetensors",
              summary="Zhang et al. 2016, reduced width (1/4), ab-bin classification (262 in-gamut bins; the paper: "
                      "313), annealed mean",
              builder="zhang2016:zhang2016"),
    ModelSpec("zhang2016-full", params=32_222_278, working_size=224, weights=None,
              summary="Zhang et al. 2016 at the paper's widths; train it with `vidcolor train`",
              builder="zhang2016:zhang2016_full"),
)}
#: the model `vidcolor film.mp4` uses; "default" names it everywhere a model name is taken.
DEFAULT_MODEL = "lite_unet"


def get_model(name: str) -> ModelSpec:
    if name == "default":
        name = DEFAULT_MODEL
    try:
        return _MODELS[name]
    except KeyError:
        raise UnknownModel(f"unknown model {name!r}; valid names: {', '.join(list_models())}") from None


def list_models() -> list[str]:
    return sorted(_MODELS)


def shipped_dir() -> pathlib.Path:
    """The models/ folder of shipped weights: beside the package in a checkout, inside it once installed."""
    checkout = pathlib.Path(__file__).resolve().parents[2] / "models"
    if checkout.is_dir():
        return checkout
    return pathlib.Path(str(importlib.resources.files("vidcolor") / "shipped"))
