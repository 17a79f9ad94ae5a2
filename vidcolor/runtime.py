"""Runtime choices, in one place: which device, which precision, how big a batch."""

from __future__ import annotations

import contextlib
import dataclasses
import os

import torch

from .errors import InvalidInput


@dataclasses.dataclass(frozen=True)
class Runtime:
    device: str = "auto"
    #: "float32", "float16" or "bfloat16"; None means fp16 autocast on CUDA, fp32 on CPU.
    dtype: str | None = None
    batch: int = 8
    #: CPU threads for torch; None uses every core the process may run on.
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise InvalidInput(f"--batch {self.batch}: give at least 1 frame per model call")
        if self.threads is not None and self.threads < 1:
            raise InvalidInput(f"threads {self.threads}: give at least 1, or None for every core")

    @property
    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            dev = torch.device(self.device)
        except RuntimeError:
            raise InvalidInput(f"--device {self.device!r} is not a device; use auto, cpu or cuda[:N]") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise InvalidInput(f"--device {self.device}: no CUDA GPU is visible; use --device cpu")
        return dev

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        if self.dtype in (None, "auto"):
            return torch.float16 if self.torch_device.type == "cuda" else None
        if self.dtype == "float32":
            return None
        try:
            return {"float16": torch.float16, "bfloat16": torch.bfloat16}[self.dtype]
        except KeyError:
            raise InvalidInput(f"--dtype {self.dtype!r}: use float32, float16 or bfloat16") from None

    def autocast(self):
        dtype = self.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.torch_device.type, dtype=dtype)

    def configure_threads(self) -> None:
        if self.torch_device.type != "cpu":
            return
        n = self.threads or len(os.sched_getaffinity(0))
        # Leave no core idle for the model, but don't oversubscribe: decode and
        # encode threads run beside it and mostly sleep in C code.
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
