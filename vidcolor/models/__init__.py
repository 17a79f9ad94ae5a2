"""The model registry: one dict from name to how to build the model.

Every colorization network takes L (N,1,h,w, 0..100) at its working size and
offers ``forward`` (raw output, for training), ``decode`` (raw output to ab),
and ``loss`` (its paper's objective). The registry feeds the CLI's choices,
the README's table and the tests parametrized over every model.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from ..errors import UnknownModel


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[..., torch.nn.Module]
    #: short side of the luminance the network sees; frames keep their aspect.
    working_size: int
    #: learnable parameters of the built network (a test checks it), so listing models builds none.
    params: int
    #: file name under models/ of the shipped weights, or None.
    weights: str | None
    summary: str
    #: where users get weights when none ship (official checkpoints).
    weights_hint: str | None = None
    #: takes the previous coloured frame: frames must be given in order (``model.temporal``).
    temporal: bool = False
    #: takes user colour hints (points of ab) as extra inputs (``model.takes_hints``).
    takes_hints: bool = False
    #: the ImageNet encoder training starts from (`vidcolor.training.pretrained`), or None.
    backbone: str | None = None


_MODELS: dict[str, ModelSpec] = {}
#: the model `vidcolor film.mp4` uses; "default" names it everywhere a model name is taken.
DEFAULT_MODEL = "lite_unet"


def register_model(name: str, *, params: int, working_size: int, weights: str | None, summary: str,
                   weights_hint: str | None = None, temporal: bool = False, takes_hints: bool = False,
                   backbone: str | None = None):
    def wrap(build: Callable[..., torch.nn.Module]):
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = ModelSpec(name, build, working_size, params, weights, summary, weights_hint, temporal,
                                  takes_hints, backbone)
        return build

    return wrap


def get_model(name: str) -> ModelSpec:
    if name == "default":
        name = DEFAULT_MODEL
    try:
        return _MODELS[name]
    except KeyError:
        raise UnknownModel(f"unknown model {name!r}; valid names: {', '.join(list_models())}") from None


def list_models() -> list[str]:
    return sorted(_MODELS)


# Importing the network modules registers them.
from . import zhang2016  # noqa: E402,F401
from . import eccv16, siggraph17  # noqa: E402,F401
from . import cheng2015, iizuka2016, koalarization, larsson2016, semantic_unet  # noqa: E402,F401
from . import ddcolor  # noqa: E402,F401
from . import temporal_unet  # noqa: E402,F401
from . import lite_unet  # noqa: E402,F401
from . import temporal_lite  # noqa: E402,F401
