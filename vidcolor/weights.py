"""Finding, loading and saving model weights.

Weights are read from safetensors; PyTorch pickles (users' official
checkpoints) only with ``weights_only=True``, which refuses arbitrary objects.
"""

from __future__ import annotations

import math
import os
import pathlib
import warnings

import safetensors.torch
import torch

from .atomic import atomic_output
from .errors import WeightsError
from .models import ModelSpec, get_model, shipped_dir
from .runtime import Runtime


def read_state_dict(path: pathlib.Path) -> dict[str, torch.Tensor]:
    path = pathlib.Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file; check the path given to --weights")
    try:
        if path.suffix == ".safetensors":
            return safetensors.torch.load_file(str(path))
        with warnings.catch_warnings():  # torch's remarks on a file it then refuses: the error says it all
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any parse failure means the same thing to the user
        raise WeightsError(f"{path}: not a readable weights file ({exc.__class__.__name__}); "
                           "pass a .safetensors or a PyTorch state_dict .pth") from None
    if isinstance(state, dict) and "params" in state and isinstance(state["params"], dict):
        state = state["params"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: holds no state_dict of tensors")
    return state


def optional_keys(model: torch.nn.Module, keys) -> set[str]:
    """The keys of ``model``'s state_dict a weights file may lack without harm.

    BatchNorm's ``num_batches_tracked`` counters (older checkpoints and
    converted ones have none; they do not affect eval), and keys under a
    model's ``optional_state_prefixes`` (parts used only by the official
    training, such as SIGGRAPH17's classification head).
    """
    prefixes = tuple(getattr(model, "optional_state_prefixes", ()))
    return {k for k in keys if k.endswith(".num_batches_tracked") or k == "num_batches_tracked"
            or (prefixes and k.startswith(prefixes))}


def load_into(model: torch.nn.Module, path: pathlib.Path, name: str) -> None:
    state = read_state_dict(path)
    own = model.state_dict()
    # Tolerated absences keep the model's own values; nothing else is tolerated.
    state = {**{k: own[k] for k in optional_keys(model, set(own) - set(state))}, **state}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                parts.append(f"{label}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''} ({len(keys)})")
        raise WeightsError(f"{path}: these are not weights of model {name!r}; " + "; ".join(parts))
    # A diverged training run saves NaN/inf: refused here, never painted as colour.
    bad = sorted(k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all())
    if bad:
        raise WeightsError(f"{path}: {len(bad)} tensors hold NaN or infinite values ({', '.join(bad[:3])}"
                           f"{' ...' if len(bad) > 3 else ''}); the training diverged: use an earlier checkpoint")
    model.load_state_dict(state, strict=True)


def save(model: torch.nn.Module, path: pathlib.Path, metadata: dict[str, str] | None = None) -> None:
    """Write atomically: a crash never leaves a half-written weights file."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_output(path) as tmp:
        safetensors.torch.save_file(state, str(tmp), metadata={k: str(v) for k, v in (metadata or {}).items()})


def weights_path(spec: ModelSpec, weights: str | os.PathLike | None) -> pathlib.Path:
    if weights is not None:
        return pathlib.Path(weights).expanduser()
    if spec.weights is None:
        where = spec.weights_hint or f"train some with `vidcolor train --model {spec.name}`"
        raise WeightsError(f"model {spec.name!r} ships no weights; pass --weights FILE ({where})")
    path = shipped_dir() / spec.weights
    if not path.is_file():
        raise WeightsError(f"{path}: the shipped weights of {spec.name!r} are missing; reinstall vidcolor")
    return path


def load_model(name: str, weights: str | os.PathLike | None = None,
               runtime: Runtime = Runtime()) -> torch.nn.Module:
    """The named model with its weights, in eval mode, on the runtime's device."""
    spec = get_model(name)
    model = spec.build()
    load_into(model, weights_path(spec, weights), name)
    model.eval().requires_grad_(False)
    return model.to(runtime.torch_device)


def read_metadata(path: pathlib.Path) -> dict[str, str]:
    """The metadata `vidcolor train` stores with the weights (empty for other files)."""
    if pathlib.Path(path).suffix != ".safetensors":
        return {}
    with safetensors.safe_open(str(path), "pt") as f:
        return f.metadata() or {}


#: the largest chroma_gain accepted from a file (`vidcolor train` writes 0..1).
MAX_CHROMA_GAIN = 10.0


def chroma_gain(path: pathlib.Path) -> float:
    """The calibration `vidcolor train` stores with the weights (1 when there is none)."""
    text = read_metadata(path).get("chroma_gain", "1")
    try:
        gain = float(text)
    except ValueError:
        gain = math.nan
    if not 0.0 <= gain <= MAX_CHROMA_GAIN:  # NaN fails too
        raise WeightsError(f"{path}: its metadata's chroma_gain {text!r} is not a number from 0 to "
                           f"{MAX_CHROMA_GAIN:g}; fix or remove it (vidcolor train writes 0..1)")
    return gain
