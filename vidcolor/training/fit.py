"""`vidcolor train`'s entry: the trainer a model needs, chosen from the registry's facts.

A per-frame model learns from single crops (`vidcolor.training.train`); a temporal
one, which takes the previous coloured frame (``ModelSpec.temporal``), from frame
pairs and its own colouring of shots (`vidcolor.training.train_temporal`), or,
on a pretrained encoder (``ModelSpec.backbone``: it extends a trained per-frame
model, `temporal_lite`), from its own colouring of shots with the per-frame
network frozen (`vidcolor.training.train_recurrent`). The choice reads the
registry and builds no network.
"""

from __future__ import annotations

import pathlib

from vidcolor.models import get_model
from vidcolor.runtime import Runtime
from vidcolor.training import train, train_recurrent, train_temporal
from vidcolor.training.train import TrainConfig


def fit(cfg: TrainConfig, runtime: Runtime = Runtime(), progress: bool = True) -> pathlib.Path:
    """Train ``cfg.model`` with its trainer; the path of the final weights."""
    spec = get_model(cfg.model)
    if spec.temporal:
        trainer = train_recurrent.train if spec.backbone is not None else train_temporal.train
    else:
        trainer = train.train
    return trainer(cfg, runtime, progress)
